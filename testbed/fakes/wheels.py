"""Building small, valid wheels and sdists in memory for tests."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import tarfile
import zipfile
from collections.abc import Sequence


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def metadata(name: str, version: str, requires: Sequence[str] = (),
             requires_python: str | None = None) -> bytes:
    """Core metadata (METADATA) for a distribution."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             f"Summary: test package {name}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    return ("\n".join(lines) + "\n").encode()


def build_wheel(name: str, version: str, requires: Sequence[str] = (),
                requires_python: str | None = None, payload_bytes: int = 0) -> tuple[str, bytes]:
    """A pure-Python wheel; returns (filename, bytes)."""
    dist = name.replace("-", "_").replace(".", "_").lower()
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{info}/METADATA": metadata(name, version, requires, requires_python),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: stockade-tests\n"
                         b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if payload_bytes:
        # Incompressible, so the wheel really is that large.
        files[f"{dist}/payload.bin"] = random.Random(name).randbytes(payload_bytes)  # noqa: S311
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items())
    record += f"{info}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data, zipfile.ZIP_STORED if path.endswith(".bin") else None)
        zf.writestr(f"{info}/RECORD", record)
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


def build_sdist(name: str, version: str) -> tuple[str, bytes]:
    """A minimal sdist (PKG-INFO only); returns (filename, bytes)."""
    dist = name.replace("-", "_").lower()
    root = f"{dist}-{version}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = metadata(name, version)
        member = tarfile.TarInfo(f"{root}/PKG-INFO")
        member.size = len(data)
        tf.addfile(member, io.BytesIO(data))
    return f"{root}.tar.gz", buf.getvalue()


def wheel_metadata(wheel: bytes) -> bytes:
    """The METADATA bytes inside a wheel (what PEP 658 serves)."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name)
