"""Access tokens: the file of hashed secrets, and checking a presented token.

Owns the tokens file (YAML, written by ``stockade token create|revoke``, read by
the server and reloaded when it changes) and the token format. A token is
``stk_<id>_<secret>``: the id (8 hex digits) names the entry and is not secret;
the secret is 32 random bytes. The file keeps only the sha256 of the secret,
never the secret: a salted, slow KDF (scrypt) buys nothing for a 256-bit random
value nobody can guess, and sha256 keeps checking a request's token cheap. The
stored and presented hashes are compared in constant time.

```yaml
tokens:
  - {id: 1a2b3c4d, name: ci-payments, team: payments, roles: [client],
     sha256: "<hex of sha256(secret)>", created: "2026-01-31T12:00:00Z"}
```

What a token may do (its roles) is ``auth``'s business.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from stockade.config.load import ConfigError, load_yaml

PREFIX = "stk_"
# \Z, not $: "$" also matches before a final newline.
_TOKEN = re.compile(r"^stk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


class Role(enum.StrEnum):
    """What a token may be used for."""

    CLIENT = "client"  # the registry routes (pip, npm, Maven...)
    ADMIN = "admin"  # everything, including the admin API and a private explain
    METRICS = "metrics"  # /metrics


class TokenFileError(ConfigError):
    """The tokens file cannot be used; the message names the entry and the key."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One token as the file keeps it: who it is, and the hash of its secret."""

    id: str
    name: str
    team: str | None
    roles: frozenset[Role]
    sha256: str
    created: str = ""

    def as_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.team is not None:
            out["team"] = self.team
        out["roles"] = sorted(r.value for r in self.roles)
        out["sha256"] = self.sha256
        if self.created:
            out["created"] = self.created
        return out


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh token: ``(token, id, sha256 of its secret)``."""
    token_id = secrets.token_hex(4)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return f"{PREFIX}{token_id}_{secret}", token_id, _digest(secret)


def looks_like_token(text: str) -> bool:
    """True when ``text`` has the form of a token (whether or not it is valid)."""
    return _TOKEN.match(text) is not None


class Tokens:
    """The entries of one tokens file, looked up by id."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self._by_id: dict[str, TokenEntry] = {e.id: e for e in entries}

    @property
    def entries(self) -> tuple[TokenEntry, ...]:
        return tuple(self._by_id.values())

    def check(self, token: str) -> TokenEntry | None:
        """The entry ``token`` belongs to; None when it is malformed, unknown or revoked.

        The hash comparison takes the same time whether it matches or not.
        """
        match = _TOKEN.match(token)
        if match is None:
            return None
        entry = self._by_id.get(match.group(1))
        presented = _digest(match.group(2))
        stored = entry.sha256 if entry is not None else "0" * 64
        return entry if hmac.compare_digest(presented, stored) and entry else None


def parse_tokens(text: str, source: str) -> Tokens:
    """The tokens a file's ``text`` holds.

    Raises:
        TokenFileError: invalid YAML, an unknown key, a bad or repeated entry.
    """
    try:
        raw = load_yaml(text) if text.strip() else {}
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise TokenFileError(f"{source}: not valid YAML: {exc}") from exc
    raw = raw or {}
    if not isinstance(raw, Mapping) or set(raw) - {"tokens"}:
        raise TokenFileError(f"{source}: expected a mapping with one key, 'tokens'")
    items = raw.get("tokens") or []
    if not isinstance(items, list):
        raise TokenFileError(f"{source}: tokens: expected a list")
    entries: dict[str, TokenEntry] = {}
    for i, item in enumerate(items):
        entry = _entry(item, f"{source}: tokens.{i}")
        if entry.id in entries:
            raise TokenFileError(f"{source}: tokens.{i}.id: {entry.id!r} is repeated")
        entries[entry.id] = entry
    return Tokens(entries.values())


_KEYS = {"id", "name", "team", "roles", "sha256", "created"}


def _entry(item: Any, where: str) -> TokenEntry:
    if not isinstance(item, Mapping):
        raise TokenFileError(f"{where}: expected a mapping")
    unknown = sorted(set(item) - _KEYS, key=str)  # YAML keys may be numbers, dates...
    if unknown:
        raise TokenFileError(f"{where}: unknown key {unknown[0]!r}")
    token_id, name, team = item.get("id"), item.get("name"), item.get("team")
    digest, roles = item.get("sha256"), item.get("roles", [Role.CLIENT.value])
    if not isinstance(token_id, str) or not re.fullmatch(r"[0-9a-f]{8}", token_id):
        raise TokenFileError(f"{where}.id: expected 8 hex digits (got {token_id!r})")
    if not isinstance(name, str) or not _NAME.match(name):
        raise TokenFileError(f"{where}.name: expected a name of letters, digits and "
                             f"_.@- (got {name!r})")
    if team is not None and (not isinstance(team, str) or not _NAME.match(team)):
        raise TokenFileError(f"{where}.team: expected a team name (got {team!r})")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise TokenFileError(f"{where}.sha256: expected 64 hex digits")
    if not isinstance(roles, list) or not roles:
        raise TokenFileError(f"{where}.roles: expected a list of roles")
    try:
        parsed = frozenset(Role(r) for r in roles)
    except ValueError as exc:
        raise TokenFileError(f"{where}.roles: {exc} (one of "
                             f"{', '.join(r.value for r in Role)})") from exc
    return TokenEntry(token_id, name, team, parsed, digest, str(item.get("created") or ""))


def load_tokens(path: Path) -> Tokens:
    """The tokens file at ``path``; a file that does not exist holds no tokens.

    Raises:
        TokenFileError: the file cannot be read or is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Tokens()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"{path}: cannot read the tokens file: {exc}") from exc
    return parse_tokens(text, str(path))


def save_tokens(path: Path, tokens: Tokens) -> None:
    """Write the tokens file atomically (a server reading it sees the old or the new
    file, never a half), readable by its owner only."""
    body = yaml.safe_dump({"tokens": [e.as_yaml() for e in tokens.entries]},
                          sort_keys=False, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# stockade access tokens: sha256 of each secret, never the secret\n")
            fh.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_token(path: Path, name: str, *, team: str | None,
                 roles: Iterable[Role]) -> tuple[str, TokenEntry]:
    """Add a token to the file at ``path``; returns the token (shown once) and its entry.

    Raises:
        TokenFileError: a bad name or team, or the file is invalid.
    """
    if not _NAME.match(name):
        raise TokenFileError(f"token name {name!r}: letters, digits and _.@- only")
    if team is not None and not _NAME.match(team):
        raise TokenFileError(f"team {team!r}: letters, digits and _.@- only")
    tokens = load_tokens(path)
    token, token_id, digest = new_token()
    while any(e.id == token_id for e in tokens.entries):
        token, token_id, digest = new_token()
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    entry = TokenEntry(token_id, name, team, frozenset(roles) or frozenset({Role.CLIENT}),
                       digest, stamp)
    save_tokens(path, Tokens((*tokens.entries, entry)))
    return token, entry


def revoke_token(path: Path, which: str) -> list[TokenEntry]:
    """Remove the tokens whose id or name is ``which``; returns those removed.

    Raises:
        TokenFileError: the file is invalid.
    """
    tokens = load_tokens(path)
    removed = [e for e in tokens.entries if which in (e.id, e.name)]
    if removed:
        save_tokens(path, Tokens(e for e in tokens.entries if e not in removed))
    return removed
