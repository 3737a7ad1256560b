"""A static upstream for benchmarks: serves a directory tree as-is.

``<root>/simple/<name>/index.html`` and ``<root>/files/<filename>`` are served
(and ``<root>/npm/<name>.json`` as an npm packument, ``<root>/maven2/`` as a Maven
repository where it exists) with sendfile, the way a
plain web server would, and every request is counted
so a benchmark can ask how many times a path was fetched (``/_count?suffix=``).
A Maven file goes out with the checksum files beside it as ``X-Checksum-<Alg>``
headers, as Maven Central sends its ``.sha1`` and ``.md5`` (``--checksum-headers``
names the algorithms; empty: none, for the checksum-file path).

    python -m bench.static_index --root DIR --port PORT [--checksum-headers sha1,md5]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

COUNTS = web.AppKey("counts", Counter)


CENTRAL_HEADERS = ("sha1", "md5")
_CHECKSUMS = (".md5", ".sha1", ".sha256", ".sha512")


def make_app(root: Path, checksum_headers: tuple[str, ...] = CENTRAL_HEADERS
             ) -> web.Application:
    app = web.Application()
    app[COUNTS] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/_count":
            request.app[COUNTS][request.path] += 1
        response: web.StreamResponse = await handler(request)
        return response

    async def page(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = root / "simple" / name / "index.html"
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "text/html"})

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(root / "simple" / "index.html",
                                headers={"Content-Type": "text/html"})

    async def packument(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = root / "npm" / f"{name}.json"
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "application/json"})

    async def maven(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = root / "maven2" / rel
        if any(part in ("", ".", "..") for part in rel.split("/")) or not path.is_file():
            raise web.HTTPNotFound()
        headers = {}
        if not rel.endswith(_CHECKSUMS):
            for alg in checksum_headers:
                beside = path.with_name(f"{path.name}.{alg}")
                if beside.is_file():
                    headers[f"X-Checksum-{alg.capitalize()}"] = beside.read_text().split()[0]
        return web.FileResponse(path, headers=headers)

    async def counted(request: web.Request) -> web.Response:
        suffix = request.query.get("suffix", "")
        total = sum(n for p, n in request.app[COUNTS].items() if p.endswith(suffix))
        return web.json_response({"count": total})

    app.middlewares.append(count)
    app.router.add_get("/simple/", index)
    app.router.add_get("/simple/{name}/", page)
    app.router.add_static("/files/", root / "files")
    app.router.add_get("/npm/{name}", packument)
    if (root / "maven2").is_dir():
        app.router.add_get("/maven2/{path:.+}", maven)
    app.router.add_get("/_count", counted)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--checksum-headers", default=",".join(CENTRAL_HEADERS),
                        help="checksum files sent as X-Checksum-<Alg> headers with a Maven "
                        "file (comma-separated; empty: none)")
    args = parser.parse_args()
    headers = tuple(a for a in args.checksum_headers.split(",") if a)
    web.run_app(make_app(args.root, headers), host="127.0.0.1", port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
