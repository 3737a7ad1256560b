"""An in-process npm registry that answers as registry.npmjs.org does.

Serves full packuments (``Accept: application/json`` or none) and abbreviated
ones (``application/vnd.npm.install-v1+json``), scoped names as ``@scope%2fname``
and ``@scope/name``, tarballs at ``/<name>/-/<unscoped>-<version>.tgz`` with
``dist.integrity`` (SRI sha512) and ``dist.shasum``, ETag with 304, the keys,
attestations and bulk-advisory endpoints. Records every request and injects
faults per tarball or packument.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from testbed.fakes.base import LoopbackRegistry
from testbed.fakes.streaming import send

CORGI = "application/vnd.npm.install-v1+json"
_CORGI_KEYS = ("name", "version", "dependencies", "optionalDependencies", "devDependencies",
               "peerDependencies", "bin", "engines", "deprecated", "hasInstallScript", "dist")


def build_tarball(name: str, version: str, *, scripts: dict[str, str] | None = None,
                  dependencies: dict[str, str] | None = None, payload_bytes: int = 0,
                  extra: dict[str, Any] | None = None) -> tuple[bytes, dict[str, Any]]:
    """An npm package tarball (``package/package.json`` + ``index.js``) and its manifest."""
    manifest: dict[str, Any] = {"name": name, "version": version, "main": "index.js",
                                "license": "MIT", **(extra or {})}
    if scripts:
        manifest["scripts"] = scripts
    if dependencies:
        manifest["dependencies"] = dependencies
    files = {
        "package/package.json": json.dumps(manifest, indent=2).encode(),
        "package/index.js": f"module.exports = {json.dumps(name + '@' + version)};\n".encode(),
    }
    if payload_bytes:
        files["package/payload.bin"] = hashlib.shake_256(name.encode()).digest(payload_bytes)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 499162500
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), manifest


def integrity(data: bytes) -> str:
    """The SRI sha512 value the registry publishes."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class Published:
    name: str
    version: str
    data: bytes
    manifest: dict[str, Any]
    time: str


@dataclass
class FakeNpm(LoopbackRegistry):
    """The registry's content, faults and the requests it saw."""

    packages: dict[str, dict[str, Published]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    # tarball file name -> "truncate" | "reset" | "corrupt" | "500" | "hang" | "no-integrity"
    faults: dict[str, str] = field(default_factory=dict)
    packument_faults: dict[str, str] = field(default_factory=dict)  # name -> "500" | "hang"
    foreign_tarballs: dict[str, str] = field(default_factory=dict)  # file name -> URL
    advisories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (name, version) -> dist fields replacing the generated ones (real signatures and
    # integrity from captured packuments; None removes a field)
    dist_overrides: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    attestation_docs: dict[str, Any] = field(default_factory=dict)  # "name@version" -> body
    keys_doc: dict[str, Any] | None = None  # the /-/npm/v1/keys body (a placeholder if None)
    audit_bodies: list[dict[str, Any]] = field(default_factory=list)
    # name -> time.created (default 2020-01-01), and top-level packument fields
    # (description, maintainers, repository) of the full document
    created: dict[str, str] = field(default_factory=dict)
    project_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    server: TestServer | None = None

    def publish(self, name: str, version: str, *, time: str = "2024-01-02T03:04:05.000Z",
                **kw: Any) -> Published:
        data, manifest = build_tarball(name, version, **kw)
        pub = Published(name, version, data, manifest, time)
        self.packages.setdefault(name, {})[version] = pub
        return pub

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/"))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/-/npm/v1/keys", self._keys)
        app.router.add_get("/-/npm/v1/attestations/{spec}", self._attestations)
        app.router.add_post("/-/npm/v1/security/advisories/bulk", self._bulk)
        app.router.add_get("/{scope:@[^/]+}/{name}/-/{file}", self._tarball)
        app.router.add_get("/{name}/-/{file}", self._tarball)
        app.router.add_get("/{scope:@[^/]+}/{name}", self._packument)
        app.router.add_get("/{name}", self._packument)
        return app

    def _name(self, request: web.Request) -> str:
        scope = request.match_info.get("scope")
        name = unquote(request.match_info["name"])
        return f"{scope}/{name}" if scope else name

    def document(self, name: str, base: str, *, abbreviated: bool) -> dict[str, Any]:
        """The packument as the registry writes it."""
        versions: dict[str, Any] = {}
        times = {"created": self.created.get(name, "2020-01-01T00:00:00.000Z")}
        for version, pub in self.packages[name].items():
            file = f"{name.rpartition('/')[2]}-{version}.tgz"
            dist: dict[str, Any] = {
                "tarball": self.foreign_tarballs.get(file, f"{base}{name}/-/{file}"),
                "shasum": hashlib.sha1(pub.data).hexdigest(),  # noqa: S324 (npm's field)
                "integrity": integrity(pub.data),
                "signatures": [{"keyid": "SHA256:fake", "sig": "MEUCIQ=="}],
                "attestations": {"url": f"{base}-/npm/v1/attestations/{name}@{version}",
                                 "provenance": {"predicateType": "https://slsa.dev/provenance/v1"}},
            }
            for key, value in self.dist_overrides.get((name, version), {}).items():
                if value is None:
                    dist.pop(key, None)
                else:
                    dist[key] = value
            if self.faults.get(file) == "no-integrity":
                dist.pop("shasum")
                dist.pop("integrity")
            full = {**pub.manifest, "_id": f"{name}@{version}", "dist": dist}
            if abbreviated:
                full = {k: full[k] for k in _CORGI_KEYS if k in full}
                if any(s in pub.manifest.get("scripts", {}) for s in ("preinstall", "install",
                                                                        "postinstall")):
                    full["hasInstallScript"] = True
            versions[version] = full
            times[version] = pub.time
        times["modified"] = max(times.values())
        latest = max(self.packages[name].values(), key=lambda p: p.time).version
        if abbreviated:
            return {"name": name, "modified": times["modified"], "dist-tags": {"latest": latest},
                    "versions": versions}
        return {"_id": name, "_rev": "1-abc", "name": name, "dist-tags": {"latest": latest},
                "versions": versions, "time": times, "readme": "# " + name,
                **self.project_fields.get(name, {})}

    async def _packument(self, request: web.Request) -> web.StreamResponse:
        name = self._name(request)
        fault = self.packument_faults.get(name)
        if fault == "500":
            raise web.HTTPInternalServerError()
        if fault == "hang":
            await asyncio.sleep(3600)
        if name not in self.packages:
            return web.json_response({"error": "Not found"}, status=404)
        abbreviated = CORGI in request.headers.get("Accept", "")
        body = orjson.dumps(self.document(name, self.url, abbreviated=abbreviated))
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        ctype = CORGI if abbreviated else "application/json"
        return web.Response(body=body, headers={"Content-Type": ctype, "ETag": etag})

    async def _tarball(self, request: web.Request) -> web.StreamResponse:
        name, file = self._name(request), request.match_info["file"]
        pub = next((p for v, p in self.packages.get(name, {}).items()
                    if file == f"{name.rpartition('/')[2]}-{v}.tgz"), None)
        if pub is None:
            raise web.HTTPNotFound()
        data, fault = pub.data, self.faults.get(file)
        if fault == "500":
            raise web.HTTPInternalServerError()
        if fault == "hang":
            await asyncio.sleep(3600)
        if fault == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return await send(request, data, {"Content-Type": "application/octet-stream"}, fault)

    async def _keys(self, request: web.Request) -> web.Response:
        if self.keys_doc is not None:
            return web.json_response(self.keys_doc)
        return web.json_response({"keys": [{"expires": None, "keyid": "SHA256:fake",
                                            "keytype": "ecdsa-sha2-nistp256",
                                            "scheme": "ecdsa-sha2-nistp256", "key": "MFkw"}]})

    async def _attestations(self, request: web.Request) -> web.Response:
        spec = unquote(request.match_info["spec"])
        name, _, version = spec.rpartition("@")
        if version not in self.packages.get(name, {}):
            return web.json_response({"error": "not found"}, status=404)
        if spec in self.attestation_docs:
            return web.json_response(self.attestation_docs[spec])
        return web.json_response({"attestations": [
            {"predicateType": "https://slsa.dev/provenance/v1", "bundle": {"spec": spec}}]})

    async def _bulk(self, request: web.Request) -> web.Response:
        query = await request.json()
        self.audit_bodies.append(query)
        return web.json_response({k: v for k, v in self.advisories.items() if k in query})
