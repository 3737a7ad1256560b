"""An in-process PyPI that speaks the Simple API as PyPI does.

Serves PEP 691 JSON or PEP 503 HTML by the Accept header (HTML when nothing
matches), PEP 700 keys, yanks, PEP 658/714 metadata files, ETag with 304,
files under blake2b paths as files.pythonhosted.org lays them out, and the
JSON API. Records every request and injects faults per filename.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from packaging.version import Version

from testbed.fakes.base import LoopbackRegistry
from testbed.fakes.streaming import send
from testbed.fakes.wheels import build_sdist, build_wheel, wheel_metadata

JSON_V1 = "application/vnd.pypi.simple.v1+json"


@dataclass
class Dist:
    """One file of a project on the fake index."""

    filename: str
    data: bytes
    version: str
    upload_time: str = "2024-01-02T03:04:05.123456Z"
    yanked: bool | str = False
    requires_python: str | None = None
    metadata: bytes | None = None
    provenance: bytes | None = None  # a PEP 740 provenance object, served as PyPI does
    published_sha256: str | None = None  # the page's digest, where it is not the data's

    @property
    def sha256(self) -> str:
        return self.published_sha256 or hashlib.sha256(self.data).hexdigest()

    @property
    def path(self) -> str:
        b2 = hashlib.blake2b(self.data, digest_size=32).hexdigest()
        return f"/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{self.filename}"


@dataclass
class FakePyPI(LoopbackRegistry):
    """The index's content, faults and the requests it saw."""

    projects: dict[str, list[Dist]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    # filename -> "truncate" | "reset" | "corrupt" | "500" | "slow" | "hang"
    faults: dict[str, str] = field(default_factory=dict)
    page_faults: dict[str, str] = field(default_factory=dict)
    foreign_links: dict[str, str] = field(default_factory=dict)
    serve_html_only: bool = False
    index_body: str | None = None  # served as the root index instead of the projects
    info: dict[str, dict[str, object]] = field(default_factory=dict)  # JSON API info fields
    server: TestServer | None = None

    def add_wheel(self, name: str, version: str, requires: Sequence[str] = (),
                  **kw: object) -> Dist:
        payload = int(kw.pop("payload_bytes", 0))  # type: ignore[call-overload]
        filename, data = build_wheel(name, version, requires, payload_bytes=payload)
        dist = Dist(filename, data, version, metadata=wheel_metadata(data), **kw)  # type: ignore[arg-type]
        self.projects.setdefault(_norm(name), []).append(dist)
        return dist

    def add_sdist(self, name: str, version: str, **kw: object) -> Dist:
        filename, data = build_sdist(name, version)
        dist = Dist(filename, data, version, **kw)  # type: ignore[arg-type]
        self.projects.setdefault(_norm(name), []).append(dist)
        return dist

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/simple/"))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/simple/", self._index)
        app.router.add_get("/simple/{name}/", self._project)
        app.router.add_get("/simple/{name}", self._redirect)
        app.router.add_get("/packages/{a}/{b}/{c}/{filename}", self._file)
        app.router.add_get("/pypi/{name}/json", self._json)
        app.router.add_get("/integrity/{name}/{version}/{filename}/provenance",
                           self._provenance)
        app.router.add_get("/pypi/{name}/{version}/json", self._json)
        app.middlewares.append(self._record)
        return app

    async def _index(self, request: web.Request) -> web.Response:
        if self.index_body is not None:
            return web.Response(text=self.index_body, content_type="text/html")
        if JSON_V1 in request.headers.get("Accept", "") and not self.serve_html_only:
            body = orjson.dumps({"meta": {"api-version": "1.1"},
                                 "projects": [{"name": n} for n in sorted(self.projects)]})
            return web.Response(body=body, content_type=JSON_V1)
        links = "".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(self.projects))
        return web.Response(text=f"<!DOCTYPE html><html><body>{links}</body></html>",
                            content_type="text/html")

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"/simple/{_norm(request.match_info['name'])}/")

    async def _project(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name != _norm(name):
            raise web.HTTPMovedPermanently(f"/simple/{_norm(name)}/")
        fault = self.page_faults.get(name)
        if fault == "500":
            raise web.HTTPInternalServerError()
        if fault == "hang":
            await asyncio.sleep(3600)
        dists = self.projects.get(name)
        if dists is None:
            raise web.HTTPNotFound()
        as_json = JSON_V1 in request.headers.get("Accept", "") and not self.serve_html_only
        body = self._render_json(name, dists) if as_json else self._render_html(name, dists)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        ctype = JSON_V1 if as_json else "text/html"
        return web.Response(body=body, headers={"Content-Type": ctype, "ETag": etag,
                                                "Vary": "Accept"})

    def _render_json(self, name: str, dists: list[Dist]) -> bytes:
        files = []
        for d in dists:
            meta = {"sha256": hashlib.sha256(d.metadata).hexdigest()} if d.metadata else False
            files.append({
                "filename": d.filename, "url": self._link(d),
                "hashes": {"sha256": d.sha256}, "requires-python": d.requires_python,
                "size": len(d.data), "upload-time": d.upload_time, "yanked": d.yanked,
                "core-metadata": meta, "data-dist-info-metadata": meta,
                **({"provenance": self._provenance_url(name, d)} if d.provenance else {}),
            })
        versions = sorted({d.version for d in dists})
        return orjson.dumps({"meta": {"api-version": "1.1", "_last-serial": 1}, "name": name,
                             "versions": versions, "files": files})

    def _render_html(self, name: str, dists: list[Dist]) -> bytes:
        rows = []
        for d in dists:
            attrs = f' href="{self._link(d)}#sha256={d.sha256}"'
            if d.requires_python:
                attrs += f' data-requires-python="{html.escape(d.requires_python)}"'
            if d.metadata:
                m = hashlib.sha256(d.metadata).hexdigest()
                attrs += f' data-dist-info-metadata="sha256={m}" data-core-metadata="sha256={m}"'
            if d.provenance:
                attrs += f' data-provenance="{self._provenance_url(name, d)}"'
            if d.yanked:
                reason = d.yanked if isinstance(d.yanked, str) else ""
                attrs += f' data-yanked="{html.escape(reason)}"'
            rows.append(f"<a{attrs}>{d.filename}</a><br/>")
        return ("<!DOCTYPE html><html><body>" + "\n".join(rows) + "</body></html>").encode()

    def _provenance_url(self, name: str, d: Dist) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/integrity/{name}/{d.version}/{d.filename}/provenance"))

    async def _provenance(self, request: web.Request) -> web.Response:
        dist = self._find(request.match_info["filename"])
        if dist is None or dist.provenance is None:
            return web.json_response({"message": "No provenance available"}, status=404)
        return web.Response(body=dist.provenance,
                            content_type="application/vnd.pypi.integrity.v1+json")

    def _link(self, d: Dist) -> str:
        return self.foreign_links.get(d.filename, f"../..{d.path}")

    def _find(self, filename: str) -> Dist | None:
        for dists in self.projects.values():
            for d in dists:
                if d.filename == filename:
                    return d
        return None

    async def _file(self, request: web.Request) -> web.StreamResponse:
        filename = request.match_info["filename"]
        is_meta = filename.endswith(".metadata")
        dist = self._find(filename.removesuffix(".metadata"))
        if dist is None or (is_meta and dist.metadata is None):
            raise web.HTTPNotFound()
        data = dist.metadata if is_meta else dist.data
        assert data is not None
        fault = None if is_meta else self.faults.get(filename)
        if fault == "500":
            raise web.HTTPInternalServerError()
        if fault == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return await send(request, data, {"Content-Type": "application/octet-stream"},
                          None if fault == "slow" else fault,
                          delay_s=0.02 if fault == "slow" else 0.0)

    async def _json(self, request: web.Request) -> web.Response:
        name = _norm(request.match_info["name"])
        dists = self.projects.get(name)
        if dists is None:
            raise web.HTTPNotFound()
        # as PyPI: the newest final release (a pre-release only where there is none)
        versions = [Version(d.version) for d in dists]
        finals = [v for v in versions if not v.is_prerelease]
        version = request.match_info.get("version") or str(max(finals or versions))
        base = str(request.url.origin())

        def entry(d: Dist) -> dict[str, object]:
            return {"filename": d.filename, "url": base + d.path,
                    "digests": {"sha256": d.sha256}, "size": len(d.data),
                    "packagetype": "bdist_wheel" if d.filename.endswith(".whl") else "sdist",
                    "upload_time_iso_8601": d.upload_time, "yanked": bool(d.yanked)}

        doc = {"info": {"name": name, "version": version, **self.info.get(name, {})},
               "urls": [entry(d) for d in dists if d.version == version],
               "releases": {v: [entry(d) for d in dists if d.version == v]
                            for v in sorted({d.version for d in dists})}}
        return web.json_response(doc)


def _norm(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()
