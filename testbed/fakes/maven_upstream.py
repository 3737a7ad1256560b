"""A Maven repository on 127.0.0.1 serving a layout as Maven Central does.

Files come from a dict (path -> bytes) and, optionally, a folder in the
repository layout (a copy of ``~/.m2/repository``, say). Checksum files
(``.md5``, ``.sha1``, ``.sha256``, ``.sha512``) are published beside every file
unless a path's checksums are withheld; a file's digests go with it as
``X-Checksum-Sha1`` and ``X-Checksum-Md5`` headers, as Central sends them (other
algorithms, none, or raw values per path can be set); ``Last-Modified`` is sent;
every request is recorded; faults are injected per path.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from testbed.fakes.base import LoopbackRegistry
from testbed.fakes.streaming import send

ALGS = ("md5", "sha1", "sha256", "sha512")


def pom(group: str, artifact: str, version: str,
        dependencies: list[tuple[str, str, str]] | None = None) -> bytes:
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>" for g, a, v in dependencies or [])
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        f"<groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version><packaging>jar</packaging>"
        f"<dependencies>{deps}</dependencies></project>\n"
    ).encode()


def jar(name: str, payload_bytes: int = 0) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        archive.writestr(f"{name}.txt", name)
        if payload_bytes:
            archive.writestr("payload.bin", hashlib.shake_256(name.encode()).digest(payload_bytes))
    return raw.getvalue()


def metadata(group: str, artifact: str, versions: list[str]) -> bytes:
    listed = "".join(f"<version>{v}</version>" for v in versions)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<metadata><groupId>'
        f"{group}</groupId><artifactId>{artifact}</artifactId><versioning>"
        f"<latest>{versions[-1]}</latest><release>{versions[-1]}</release>"
        f"<versions>{listed}</versions><lastUpdated>20240101000000</lastUpdated>"
        "</versioning></metadata>\n"
    ).encode()


@dataclass
class FakeMaven(LoopbackRegistry):
    """The repository's files, faults and the requests it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    root: Path | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    no_checksums: set[str] = field(default_factory=set)  # paths published without any
    wrong_checksums: set[str] = field(default_factory=set)
    # path -> "truncate" | "reset" | "500" | "hang" | "slow"
    faults: dict[str, str] = field(default_factory=dict)
    last_modified: dict[str, str] = field(default_factory=dict)  # path -> HTTP date
    published: tuple[str, ...] = ALGS  # the checksum files published (Central: md5, sha1)
    # digests sent as X-Checksum-<Alg> headers with a file, as Central sends sha1 and
    # md5 (empty: none, so clients and proxies need the checksum files)
    checksum_headers: tuple[str, ...] = ("sha1", "md5")
    header_values: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # path -> raw
    server: TestServer | None = None

    def add(self, group: str, artifact: str, version: str, *,
            dependencies: list[tuple[str, str, str]] | None = None,
            payload_bytes: int = 0, extra: dict[str, bytes] | None = None) -> str:
        """Publish a pom and a jar; returns the version folder's path."""
        base = f"{group.replace('.', '/')}/{artifact}/{version}"
        self.files[f"{base}/{artifact}-{version}.pom"] = pom(group, artifact, version,
                                                             dependencies)
        self.files[f"{base}/{artifact}-{version}.jar"] = jar(f"{artifact}-{version}",
                                                             payload_bytes)
        for name, data in (extra or {}).items():
            self.files[f"{base}/{name}"] = data
        versions = sorted({p.split("/")[-2] for p in self.files
                           if p.startswith(f"{group.replace('.', '/')}/{artifact}/")
                           and not p.endswith("maven-metadata.xml")})
        self.files[f"{group.replace('.', '/')}/{artifact}/maven-metadata.xml"] = metadata(
            group, artifact, versions)
        return base

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/maven2/"))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_route("GET", "/maven2/{path:.+}", self._serve)
        return app

    def _read(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        if self.root is not None and ".." not in path:
            local = self.root / path
            if local.is_file():
                return local.read_bytes()
        return None

    def _date(self, path: str) -> str:
        return self.last_modified.get(path, "Mon, 01 Jan 2024 00:00:00 GMT")

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        for alg in ALGS:
            if path.endswith(f".{alg}"):
                base = path[: -len(alg) - 1]
                data = self._read(base)
                if data is None or base in self.no_checksums or alg not in self.published:
                    raise web.HTTPNotFound()
                digest = hashlib.new(alg, data).hexdigest()
                if base in self.wrong_checksums:
                    digest = hashlib.new(alg, data + b"x").hexdigest()
                return web.Response(text=digest, headers={"Last-Modified": self._date(base)})
        data = self._read(path)
        if data is None:
            raise web.HTTPNotFound()
        fault = self.faults.get(path)
        if fault == "500":
            raise web.HTTPInternalServerError()
        if fault == "hang":
            await asyncio.sleep(3600)
        headers = CIMultiDict({"Last-Modified": self._date(path),
                               "Content-Type": "application/octet-stream"})
        if path not in self.no_checksums:
            for alg in self.checksum_headers:
                digest = hashlib.new(alg, data + (b"x" if path in self.wrong_checksums
                                                  else b"")).hexdigest()
                headers[f"X-Checksum-{alg.capitalize()}"] = digest
        for name, values in self.header_values.get(path, {}).items():
            headers.popall(name, None)
            for value in values:
                headers.add(name, value)
        if request.headers.get("Range") == "bytes=0-0":
            return web.Response(status=206, body=data[:1], headers=headers)
        # "slow": sent in 64 KB steps 20 ms apart, so a burst arrives while it is fetched
        return await send(request, data, headers, None if fault == "slow" else fault,
                          delay_s=0.02 if fault == "slow" else 0.0)
