"""The ``stockade`` command: serve, and the operator's maintenance commands.

Owns argument parsing, logging set-up, printing and exit codes. The library
raises; only this module (and the policy subcommands it registers) prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from stockade import __version__
from stockade.config.load import ConfigError, load_settings
from stockade.config.model import Settings
from stockade.proxy import policy_cli
from stockade.proxy.app import make_app
from stockade.proxy.responses import JsonAccessLogger
from stockade.storage.backends import open_store
from stockade.storage.verify import verify_all

logger = logging.getLogger("stockade")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "stockade.access":
            try:
                return json.dumps({"level": record.levelname, "logger": record.name,
                                   **json.loads(message)})
            except ValueError:
                pass
        out: dict[str, Any] = {"level": record.levelname, "logger": record.name,
                               "message": message}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.logging.json_logs:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.logging.level)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("server", {})["port"] = args.port
    if getattr(args, "storage", None):
        overrides.setdefault("storage", {})["path"] = args.storage
    path = args.config or os.environ.get("STOCKADE_CONFIG")
    return load_settings(Path(path) if path else None, environ=os.environ, overrides=overrides)


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings)
    app = make_app(settings)
    logger.info("stockade %s listening on %s:%d, storing under %s", __version__,
                settings.server.host, settings.server.port, settings.storage.path)
    web.run_app(
        app, host=settings.server.host, port=settings.server.port,
        access_log_class=JsonAccessLogger,
        access_log=logging.getLogger("stockade.access") if settings.server.access_log else None,
        shutdown_timeout=settings.server.shutdown_timeout_s, print=None,
    )
    return 0


def _cache_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings)

    async def run() -> tuple[int, list[str]]:
        store = open_store(settings)
        await store.open()
        return await verify_all(store)

    checked, removed = asyncio.run(run())
    print(f"checked {checked} blobs, removed {len(removed)} that failed verification")
    for sha256 in removed:
        print(f"removed sha256:{sha256}")
    return 1 if removed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stockade", description="A caching proxy mirror that enforces supply-chain policy."
    )
    parser.add_argument("--version", action="version", version=f"stockade {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--storage", help="storage directory (default ./stockade-data)")
    serve.set_defaults(func=_serve)

    cache = sub.add_parser("cache", help="inspect and maintain the artifact cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    verify = cache_sub.add_parser(
        "verify", help="re-hash every stored blob and remove those that fail"
    )
    verify.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    verify.add_argument("--storage", help="storage directory")
    verify.set_defaults(func=_cache_verify)

    policy_cli.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stockade`` console script."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
