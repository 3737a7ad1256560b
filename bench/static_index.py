"""A static upstream for benchmarks: serves a directory tree as-is.

``<root>/simple/<name>/index.html`` and ``<root>/files/<filename>`` are served
(and ``<root>/npm/<name>.json`` as an npm packument, ``<root>/maven2/`` as a Maven
repository where it exists) with sendfile, the way a
plain web server would, and every request is counted
so a benchmark can ask how many times a path was fetched (``/_count?suffix=``).

    python -m bench.static_index --root DIR --port PORT
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

COUNTS = web.AppKey("counts", Counter)


def make_app(root: Path) -> web.Application:
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
        app.router.add_static("/maven2/", root / "maven2")
    app.router.add_get("/_count", counted)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.root), host="127.0.0.1", port=args.port, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
