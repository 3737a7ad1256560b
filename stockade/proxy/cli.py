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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from stockade import __version__
from stockade.config.load import ConfigError, load_settings
from stockade.config.model import Settings
from stockade.proxy import policy_cli, token_cli
from stockade.proxy.app import app_metrics, make_app
from stockade.proxy.responses import JsonAccessLogger
from stockade.proxy.serving import (
    ClientLimits,
    ConnectionGuard,
    StartupError,
    serve_until_stopped,
)
from stockade.proxy.tls import TlsError, TlsReloader
from stockade.storage.backends import open_store
from stockade.storage.verify import verify_all

logger = logging.getLogger("stockade")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, each with its ISO 8601 UTC ``time``.

    An access record carries its fields as a dict (``extra={"access": ...}``),
    so the line is encoded once.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _utc(record.created), "level": record.levelname,
                               "logger": record.name}
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _utc(created: float) -> str:
    """``2025-01-31T12:00:00.123Z``: milliseconds, UTC."""
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.removesuffix("+00:00") + "Z"


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
    try:
        asyncio.run(_run(settings))
    except (StartupError, TlsError) as exc:
        print(f"stockade: {exc.diagnostics()}", file=sys.stderr)
        return 2
    return 0


async def _run(settings: Settings) -> None:
    server = settings.server
    app = make_app(settings)
    runner = web.AppRunner(
        app, access_log_class=JsonAccessLogger,
        access_log=logging.getLogger("stockade.access") if server.access_log else None,
        shutdown_timeout=server.shutdown_timeout_s, keepalive_timeout=server.keepalive_timeout_s,
    )
    limits = ClientLimits(header_timeout_s=server.header_timeout_s,
                          send_timeout_s=server.send_timeout_s,
                          max_connections_per_client=server.max_connections_per_client)
    guard = ConnectionGuard(limits, app_metrics(app))

    tls = TlsReloader(server.tls) if server.tls.enabled else None
    scheme = "https" if tls is not None else "http"

    def listening(port: int) -> None:
        logger.info("stockade %s listening on %s://%s:%d, storing under %s", __version__,
                    scheme, server.host, port, settings.storage.path)

    if tls is not None:
        await tls.start()
    try:
        await serve_until_stopped(runner, server.host, server.port, guard=guard,
                                  shutdown_timeout_s=server.shutdown_timeout_s,
                                  on_listening=listening,
                                  ssl_context=tls.context if tls is not None else None)
    finally:
        if tls is not None:
            await tls.close()


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
    token_cli.add_subcommands(sub)
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
