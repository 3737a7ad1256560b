"""Build ``Settings`` from a YAML file, the environment and command-line flags.

Precedence, lowest first: built-in defaults, the YAML file, ``STOCKADE__*``
environment variables, flags. Every failure is a ``ConfigError`` whose
sentence names the offending key path and value.

Environment variables use a double underscore between key levels, for example
``STOCKADE__SERVER__PORT=9000`` or ``STOCKADE__STORAGE__MAX_BYTES=10000000000``.
Values are parsed as YAML scalars, so ``true`` and ``10`` mean what they say.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stockade.config.model import Settings

ENV_PREFIX = "STOCKADE__"

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 3  # a hostile document's nesting is not walked (nor its recursion)
_SHOWN.maxstring = _SHOWN.maxother = 120
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 8


def shown(value: object) -> str:
    """``repr(value)`` bounded in depth and length, for an error naming a bad value
    read from outside (a deeply nested one would exhaust the recursion limit)."""
    return _SHOWN.repr(value)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` through libyaml where PyYAML was built with it.

    PyYAML's pure-Python scanner takes time quadratic in the nesting depth
    (3,000 nested ``[`` take seconds, a mutated policy file minutes); libyaml
    refuses deep nesting with a ``YAMLError`` at once.

    A document nested deeper than ``MAX_DEPTH`` is refused too (``TooDeepError``, a
    ``YAMLError``): no file of ours nests so, and such a value would exhaust the
    recursion limit later, in whatever validates or shows it.

    Raises:
        yaml.YAMLError, ValueError, RecursionError: as ``yaml.safe_load`` does.
    """
    loader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader either way
    except IndexError as exc:  # PyYAML's int constructor on an empty scalar: "!!int"
        raise ValueError(f"a tagged value is empty: {exc}") from exc
    _check_depth(data)
    return data


MAX_DEPTH = 64  # collections within collections a YAML document may hold


class TooDeepError(yaml.YAMLError):
    """Collections nested deeper than ``MAX_DEPTH``."""


def _check_depth(data: Any) -> None:
    """Raise ``TooDeepError`` past ``MAX_DEPTH`` levels (a walk without recursion;
    a collection YAML made shared, an alias, is walked once)."""
    seen: set[int] = set()
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, dict | list) or id(value) in seen:
            continue
        if depth > MAX_DEPTH:
            raise TooDeepError(f"collections nested more than {MAX_DEPTH} levels deep")
        seen.add(id(value))
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children)


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""

    def diagnostics(self) -> str:
        """The sentence shown to the operator."""
        return f"configuration error: {self}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    except ValueError as exc:  # PyYAML's scalar constructors: 2024-02-30, !!int x
        raise ConfigError(f"{path} has a value YAML cannot convert: {exc}") from exc
    except RecursionError as exc:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{path} nests collections too deeply to read") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


def _set_path(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        try:
            value = load_yaml(raw) if raw else raw
        except (yaml.YAMLError, RecursionError, ValueError):  # not YAML: the plain string
            value = raw
        _set_path(tree, keys, value)
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        lines.append(f"{where}: {err['msg']}{shown}")
    return f"invalid settings from {source}: " + "; ".join(lines)


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from a file, environment and flag overrides.

    Args:
        path: a YAML config file, or None for defaults only.
        environ: environment to read ``STOCKADE__*`` variables from.
        overrides: nested keys from flags, e.g. ``{"server": {"port": 9000}}``.

    Raises:
        ConfigError: the file is unreadable or invalid; the message names the key.
    """
    data: dict[str, Any] = _read_yaml(path) if path is not None else {}
    data = _merge(data, _env_overrides(environ or {}))
    data = _merge(data, overrides or {})
    source = str(path) if path is not None else "defaults"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc
    if path is not None and settings.policy.file is not None:
        policy_file = settings.policy.file
        if not policy_file.is_absolute():
            # A relative policy path is relative to the config file, so a config
            # directory can be moved as a whole.
            policy_file = path.parent / policy_file
            settings = settings.model_copy(
                update={"policy": settings.policy.model_copy(update={"file": policy_file})}
            )
    return settings
