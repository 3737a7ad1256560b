"""A static Maven upstream for benchmarks: a repository layout served as-is.

Serves ``--root`` (a repository layout such as ``/usr/share/maven-repo``) plus a few
generated artifacts under ``/maven2/``, with checksum files beside every file (all
four, or those ``--checksums`` names: ``sha1,md5`` as Maven Central publishes).

    python -m bench.maven_static --root DIR --port PORT [--checksums md5,sha1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

from testbed.fakes.maven_upstream import ALGS, FakeMaven


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--checksums", default=",".join(ALGS))
    args = parser.parse_args()
    repo = FakeMaven(root=args.root, published=tuple(args.checksums.split(",")))
    repo.add("org.e2e", "util", "1.0")
    repo.add("org.e2e", "lib", "1.0", dependencies=[("org.e2e", "util", "1.0")])
    app = repo.app()

    async def count(request: web.Request) -> web.Response:
        suffix = request.query.get("suffix", "")
        return web.json_response({"count": repo.count(suffix)})

    app.router.add_get("/_count", count)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
