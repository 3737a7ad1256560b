"""A policy bundle: the policy and everything it reads, in one deterministic archive.

Owns the archive format and packing and unpacking it. A bundle is a gzipped tar
holding ``manifest.json`` (format, the sha256 of every other member),
``policy.yaml`` (the policy file with its file references rewritten to point
inside the bundle, and the config's internal namespaces merged into
``internal_names``), ``osv/<n>/`` (a snapshot of each ``rules.osv.paths``
entry) and ``files/`` (the provenance trust material: ``trusted_root``,
``npm_keys``, ``pgp_keys``; and the typosquat approvals file,
``rules.typosquat.approvals``, so a replica honours the approvals made where the
bundle was built). The typosquat ``protected`` names travel inside the policy
itself. Packing the same inputs twice gives the same bytes: members
sorted, times, owners and modes fixed, gzip without a time stamp.

Signing the archive into a TUF repository is ``stockade.fleet.tufrepo``'s job;
pulling it on a replica is ``stockade.proxy.bundlepull``'s.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from stockade.config.load import load_yaml
from stockade.policy.file import PolicyError, parse_policy
from stockade.policy.model import Ecosystem

FORMAT = 1
POLICY = "policy.yaml"
MANIFEST = "manifest.json"
# Bounds on what unpacking accepts: a bundle is policy and intel, not a disk filler.
MAX_MEMBERS = 100_000
MAX_UNPACKED_BYTES = 2 * 1024**3


class BundleError(ValueError):
    """A bundle that cannot be built or used; the message says why."""


@dataclass(frozen=True, slots=True)
class BuiltBundle:
    """What ``build_bundle`` wrote."""

    path: Path
    sha256: str
    length: int
    members: int


def _policy_raw(policy_path: Path) -> dict[str, Any]:
    try:
        raw = load_yaml(policy_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:
        raise BundleError(f"{policy_path}: cannot read the policy: {exc}") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{policy_path}: the policy is not a mapping")
    return raw


def _tree(source: Path) -> Iterator[tuple[str, Path]]:
    """(relative name, file) of a path the OSV loader reads: a file, or a folder's
    ``*.json`` and ``*.zip`` files."""
    if source.is_file():
        yield source.name, source
        return
    if not source.is_dir():
        raise BundleError(f"rules.osv.paths: {source}: no such file or folder")
    for child in sorted(source.rglob("*")):
        if child.is_file() and child.suffix in (".json", ".zip"):
            yield child.relative_to(source).as_posix(), child


def _collect(policy_path: Path, internal: dict[Ecosystem, tuple[str, ...]]
             ) -> tuple[dict[str, Any], dict[str, Path]]:
    """The rewritten policy document and the files to pack (bundle name -> source)."""
    raw = _policy_raw(policy_path)
    base = policy_path.parent
    files: dict[str, Path] = {}

    def resolve(value: object, where: str) -> Path:
        if not isinstance(value, str):
            raise BundleError(f"{where}: not a path: {value!r}")
        path = Path(value)
        return path if path.is_absolute() else base / path

    rules = raw.get("rules")
    if isinstance(rules, dict):
        osv = rules.get("osv")
        if isinstance(osv, dict) and isinstance(osv.get("paths"), list):
            rewritten = []
            for i, entry in enumerate(osv["paths"]):
                source = resolve(entry, f"rules.osv.paths.{i}")
                for name, path in _tree(source):
                    files[f"osv/{i}/{name}"] = path
                rewritten.append(f"osv/{i}")
            osv["paths"] = rewritten
        prov = rules.get("provenance")
        if isinstance(prov, dict):
            for key in ("trusted_root", "npm_keys"):
                if prov.get(key) is not None:
                    path = resolve(prov[key], f"rules.provenance.{key}")
                    prov[key] = f"files/{key}-{path.name}"
                    files[prov[key]] = path
            for i, group in enumerate(prov.get("pgp_keys") or ()):
                if isinstance(group, dict) and isinstance(group.get("keys"), list):
                    names = []
                    for j, key in enumerate(group["keys"]):
                        path = resolve(key, f"rules.provenance.pgp_keys.{i}.keys.{j}")
                        names.append(f"files/pgp-{i}-{j}-{path.name}")
                        files[names[-1]] = path
                    group["keys"] = names
        squat = rules.get("typosquat")
        if isinstance(squat, dict) and squat.get("approvals") is not None:
            path = resolve(squat["approvals"], "rules.typosquat.approvals")
            # Always inside the bundle: a replica never reads an approvals file of its own.
            squat["approvals"] = f"files/approvals-{path.name}"
            if path.exists():  # none yet: the bundle carries none either
                files[squat["approvals"]] = path
    declared = raw.get("internal_names")
    merged: dict[str, list[str]] = {}
    if isinstance(declared, dict):
        merged = {str(k): [str(p) for p in v] for k, v in declared.items()
                  if isinstance(v, list)}
    for eco, patterns in internal.items():
        have = merged.setdefault(eco.value, [])
        have.extend(p for p in patterns if p not in have)
    if any(merged.values()):
        raw["internal_names"] = {k: v for k, v in sorted(merged.items()) if v}
    return raw, files


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def build_bundle(policy_path: Path, out: Path, *,
                 internal: dict[Ecosystem, tuple[str, ...]] | None = None) -> BuiltBundle:
    """Pack the policy at ``policy_path`` and what it reads into ``out``.

    The packed policy is loaded once from an unpacked copy before ``out`` is
    written, so a bundle that would not load on a replica is never built.

    Raises:
        BundleError: the policy or a file it names cannot be read, or the packed
            policy does not load.
    """
    document, files = _collect(policy_path, internal or {})
    contents: dict[str, bytes] = {}
    for name, source in sorted(files.items()):
        try:
            contents[name] = source.read_bytes()
        except OSError as exc:
            raise BundleError(f"{source}: cannot read: {exc.strerror}") from exc
    contents[POLICY] = yaml.safe_dump(document, sort_keys=True, allow_unicode=True).encode()
    manifest = {"format": FORMAT,
                "files": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(contents.items())}}
    contents[MANIFEST] = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(contents):
            _member(tar, name, contents[name])
    data = buffer.getvalue()
    with tempfile.TemporaryDirectory(prefix="stockade-bundle-") as tmp:
        unpacked = Path(tmp) / "b"
        unpack_bytes(data, unpacked)
        check_policy(unpacked)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, out)
    return BuiltBundle(out, hashlib.sha256(data).hexdigest(), len(data), len(contents))


def check_policy(folder: Path) -> None:
    """Load the policy of an unpacked bundle once, as a replica will.

    Raises:
        BundleError: it does not load.
    """
    try:
        parse_policy((folder / POLICY).read_text(encoding="utf-8"), base_dir=folder,
                     source=f"bundle {POLICY}")
    except (PolicyError, OSError) as exc:
        text = exc.diagnostics() if isinstance(exc, PolicyError) else str(exc)
        raise BundleError(f"the bundled policy does not load: {text}") from exc


def unpack_bytes(data: bytes, dest: Path) -> None:
    """Unpack a bundle archive into the new folder ``dest``, checking its manifest."""
    with tempfile.TemporaryFile() as spool:
        spool.write(data)
        spool.seek(0)
        _unpack(spool, dest)


def unpack(archive: Path, dest: Path) -> None:
    """Unpack the bundle ``archive`` into the new folder ``dest``.

    Only regular files are taken (no links, devices or absolute or ``..``
    names), every member must be in the manifest with its sha256, and every
    manifest entry present; on any failure ``dest`` is removed.

    Raises:
        BundleError: not a bundle, or one whose contents do not match its manifest.
    """
    with archive.open("rb") as handle:
        _unpack(handle, dest)


def _unpack(handle: Any, dest: Path) -> None:
    dest.mkdir(parents=True)
    try:
        _extract(handle, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _extract(handle: Any, dest: Path) -> None:
    digests: dict[str, str] = {}
    total = 0
    try:
        with tarfile.open(fileobj=handle, mode="r:gz") as tar:
            for count, info in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise BundleError(f"more than {MAX_MEMBERS} members")
                parts = Path(info.name).parts
                if not info.isfile() or info.name.startswith("/") or ".." in parts:
                    raise BundleError(f"member {info.name!r} is not a plain relative file")
                total += info.size
                if total > MAX_UNPACKED_BYTES:
                    raise BundleError(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                source = tar.extractfile(info)
                assert source is not None  # a regular file
                target = dest / info.name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with target.open("xb") as out:
                    while chunk := source.read(1024 * 1024):
                        digest.update(chunk)
                        out.write(chunk)
                digests[info.name] = digest.hexdigest()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, FileExistsError) as exc:
        raise BundleError(f"not a readable bundle archive: {exc}") from exc
    _check_manifest(dest, digests)


def _check_manifest(dest: Path, digests: dict[str, str]) -> None:
    if digests.pop(MANIFEST, None) is None:
        raise BundleError("the bundle has no manifest.json")
    try:
        manifest = orjson.loads((dest / MANIFEST).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BundleError("the bundle has no readable manifest.json") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"not a bundle of format {FORMAT}")
    listed = manifest.get("files")
    if listed != digests:
        raise BundleError("the bundle's files do not match its manifest")
    if POLICY not in digests:
        raise BundleError(f"the bundle has no {POLICY}")
