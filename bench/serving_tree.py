"""The static upstream tree ``bench.serving`` measures: generated, so it runs anywhere.

Writes, under one root, what ``bench.static_index`` serves: a PEP 503 tree
(``simple/`` and ``files/``), npm packuments (``npm/<name>.json``, their tarballs in
``files/``) and a Maven repository layout (``maven2/``, a ``.sha1`` and ``.sha256``
beside each file). Wheels, tarballs and jars hold random bytes, so their sizes are
what goes over the wire. Every file is dated 2020: the age rules of the default policy
let them through.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

_OLD = 1_580_000_000  # 2020-01-26: older than any cooldown
_LINKS = 40  # files on the simple page
_VERSIONS = 40  # versions in the packument
PROJECT = "stockade-bench-small"
BIG_PROJECT = "stockade-bench-big"
PACKAGE = "stockade-bench-pkg"
HUGE = "stockade-bench-huge"  # a packument of about 20 MB
_HUGE_VERSIONS = 4000
CORGI = "application/vnd.npm.install-v1+json"
GROUP = "org.stockadebench"


@dataclass(frozen=True)
class Case:
    """One row of the table: a path on the upstream (and nginx) and on stockade.

    A ``static`` case compares stockade with nginx serving the same bytes as a
    file: the bench saves stockade's answer under nginx's ``/static/`` as
    ``upstream_path`` names it. ``headers`` go with every request of the case.
    """

    label: str
    upstream_path: str
    stockade_path: str
    size: int  # bytes of the body (of a static case: the upstream's document)
    headers: tuple[tuple[str, str], ...] = ()
    static: bool = False


def _zip(rng: random.Random, entry: str, payload: int) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        archive.writestr(entry, rng.randbytes(payload))
    return raw.getvalue()


def _tgz(rng: random.Random, name: str, payload: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for member, data in (
            ("package/package.json", json.dumps({"name": name, "version": "1.0.0"}).encode()),
            ("package/data.bin", rng.randbytes(payload)),
        ):
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(data), _OLD
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=_OLD)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _wheels(root: Path, rng: random.Random) -> None:
    for project, payload in ((PROJECT, 21_500), (BIG_PROJECT, 1_000_000)):
        links = []
        for i in range(_LINKS):
            dist = project.replace("-", "_")
            filename = f"{dist}-1.0.{i}-py3-none-any.whl"
            data = _zip(rng, f"{dist}/data.bin", payload) if i == 0 else b""
            if data:
                _write(root / "files" / filename, data)
            digest = hashlib.sha256(data or filename.encode()).hexdigest()
            links.append(f'<a href="../../files/{filename}#sha256={digest}">{filename}</a><br/>')
        page = "<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n"
        _write(root / "simple" / project / "index.html", page.encode())
    index = "".join(f'<a href="{p}/">{p}</a><br/>\n' for p in (PROJECT, BIG_PROJECT))
    _write(root / "simple" / "index.html", f"<html><body>\n{index}</body></html>\n".encode())


def _packument(root: Path, rng: random.Random, upstream: str) -> None:
    tarball = _tgz(rng, PACKAGE, 26_400)
    _write(root / "files" / f"{PACKAGE}-1.0.0.tgz", tarball)
    versions, times = {}, {"created": "2020-01-01T00:00:00.000Z",
                           "modified": "2020-06-01T00:00:00.000Z"}
    for i in range(_VERSIONS):
        version = f"1.0.{i}"
        data = tarball if i == 0 else version.encode()
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        versions[version] = {
            "name": PACKAGE, "version": version, "description": "A stockade bench package",
            "main": "index.js", "license": "MIT",
            "dependencies": {"left-pad": "^1.3.0"},
            "dist": {"tarball": f"{upstream}files/{PACKAGE}-{version}.tgz",
                     "shasum": hashlib.sha1(data).hexdigest(),  # noqa: S324 (npm's field)
                     "integrity": integrity},
        }
        times[version] = f"2020-01-{1 + i % 28:02d}T00:00:00.000Z"
    doc = {"_id": PACKAGE, "name": PACKAGE, "dist-tags": {"latest": f"1.0.{_VERSIONS - 1}"},
           "versions": versions, "time": times, "license": "MIT"}
    _write(root / "npm" / f"{PACKAGE}.json", json.dumps(doc, indent=1).encode())


def _huge(root: Path, upstream: str) -> None:
    """A packument of about 20 MB: thousands of versions with long descriptions."""
    rng = random.Random(21)
    versions, times = {}, {"created": "2020-01-01T00:00:00.000Z",
                           "modified": "2020-06-01T00:00:00.000Z"}
    for i in range(_HUGE_VERSIONS):
        version = f"1.{i // 100}.{i % 100}"
        data = version.encode()
        versions[version] = {
            "name": HUGE, "version": version, "license": "MIT", "main": "index.js",
            "description": rng.randbytes(2200).hex(),  # compresses about 2:1, as hex does
            "dependencies": {f"dep-{j}": f"^{j}.0.0" for j in range(20)},
            "dist": {"tarball": f"{upstream}files/{HUGE}-{version}.tgz",
                     "shasum": hashlib.sha1(data).hexdigest(),  # noqa: S324 (npm's field)
                     "integrity": "sha512-"
                     + base64.b64encode(hashlib.sha512(data).digest()).decode()},
        }
        times[version] = f"2020-01-{1 + i % 28:02d}T00:00:00.000Z"
    doc = {"_id": HUGE, "name": HUGE, "dist-tags": {"latest": f"1.{(_HUGE_VERSIONS - 1) // 100}."
                                                    f"{(_HUGE_VERSIONS - 1) % 100}"},
           "versions": versions, "time": times, "license": "MIT"}
    _write(root / "npm" / f"{HUGE}.json", json.dumps(doc).encode())


def _maven(root: Path, rng: random.Random) -> None:
    group = GROUP.replace(".", "/")
    for artifact, payload in (("small", 25_800), ("big", 1_000_000)):
        base = root / "maven2" / group / artifact / "1.0"
        files = {
            f"{artifact}-1.0.jar": _zip(rng, "data.bin", payload),
            f"{artifact}-1.0.pom": (
                '<?xml version="1.0"?>\n<project><modelVersion>4.0.0</modelVersion>'
                f"<groupId>{GROUP}</groupId><artifactId>{artifact}</artifactId>"
                "<version>1.0</version></project>\n").encode(),
        }
        for name, data in files.items():
            _write(base / name, data)
            for alg in ("sha1", "sha256"):
                digest = hashlib.new(alg, data).hexdigest()
                _write(base / f"{name}.{alg}", digest.encode())


def build(root: Path, upstream: str, *, huge: bool = True) -> list[Case]:
    """Write the tree under ``root`` (``upstream``: the static server's base URL, for the
    packument's tarball URLs); the cases of the table, in its order (with ``huge``,
    the 20 MB packument's four forms too)."""
    rng = random.Random(20)
    _wheels(root, rng)
    _packument(root, rng, upstream)
    _maven(root, rng)
    if huge:
        _huge(root, upstream)
    for folder, _, names in os.walk(root):
        for name in names:
            os.utime(Path(folder) / name, (_OLD, _OLD))
    small = f"{PROJECT.replace('-', '_')}-1.0.0-py3-none-any.whl"
    big = f"{BIG_PROJECT.replace('-', '_')}-1.0.0-py3-none-any.whl"
    tgz = f"{PACKAGE}-1.0.0.tgz"
    group = GROUP.replace(".", "/")
    cases = [
        ("22 KB wheel", f"/files/{small}", f"/pypi/files/{PROJECT}/{small}"),
        ("27 KB npm tarball", f"/files/{tgz}", f"/npm/{PACKAGE}/-/{tgz}"),
        ("26 KB Maven jar", f"/maven2/{group}/small/1.0/small-1.0.jar",
         f"/maven/{group}/small/1.0/small-1.0.jar"),
        ("~1 MB wheel", f"/files/{big}", f"/pypi/files/{BIG_PROJECT}/{big}"),
        ("~1 MB Maven jar", f"/maven2/{group}/big/1.0/big-1.0.jar",
         f"/maven/{group}/big/1.0/big-1.0.jar"),
        ("simple page", f"/simple/{PROJECT}/", f"/pypi/simple/{PROJECT}/"),
        ("packument, full", f"/npm/{PACKAGE}", f"/npm/{PACKAGE}"),
    ]
    found = [Case(label, up, mine, _local(root, up).stat().st_size) for label, up, mine in cases]
    if huge:
        size = _local(root, f"/npm/{HUGE}").stat().st_size
        gzip_ = ("Accept-Encoding", "gzip")
        for label, name, headers in (
                ("20 MB packument", "full.json", ()),
                ("20 MB packument, gzip", "full.json.gz", (gzip_,)),
                ("20 MB abbreviated", "corgi.json", (("Accept", CORGI),)),
                ("20 MB abbreviated, gzip", "corgi.json.gz", (("Accept", CORGI), gzip_))):
            found.append(Case(label, f"/static/{name}", f"/npm/{HUGE}", size,
                              headers=headers, static=True))
    return found


def _local(root: Path, path: str) -> Path:
    """The file the static upstream serves at ``path``."""
    if path.startswith("/simple/"):
        return root / path.strip("/") / "index.html"
    if path.startswith("/npm/"):
        return root / f"{path.strip('/')}.json"
    return root / path.lstrip("/")
