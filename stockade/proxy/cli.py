"""The ``stockade`` command: serve, and the operator's maintenance commands.

Owns argument parsing, logging set-up, printing and exit codes. The library
raises; only this module (and the policy subcommands it registers) prints.
"""

from __future__ import annotations

import gc

# The imports below make a hundred thousand objects and more (modules, classes, pydantic
# schemas) and next to no garbage: the collector's passes over them while they are made
# cost about a tenth of the import's time, on every start. It runs again once they are
# in, with what they made frozen (as the supervisor and each worker freeze what they
# hold before serving, ``workers.settle_gc``): its first young pass would otherwise
# scan all of it, some 40 ms.
_COLLECTING = gc.isenabled()
gc.disable()
try:
    import argparse
    import asyncio
    import contextlib
    import logging
    import os
    import ssl
    import sys
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path
    from typing import Any

    from aiohttp import web

    from stockade import __version__
    from stockade.config.load import ConfigError, load_settings
    from stockade.config.model import Settings
    from stockade.proxy import indexes
    from stockade.proxy.accesslog import BufferedLineHandler, JsonAccessLogger, JsonFormatter
    from stockade.proxy.adminactions import PEERS, Peers
    from stockade.proxy.app import (
        EngineFactory,
        app_metrics,
        load_engine,
        make_app,
        warm_memo_of,
    )
    from stockade.proxy.clientcounts import SharedClientCounts, SharedConnectionGuard
    from stockade.proxy.fastpath import FastPath
    from stockade.proxy.gate import PolicyEngine
    from stockade.proxy.listening import Listener, bind, serve_worker
    from stockade.proxy.provenance.checker import import_verifiers
    from stockade.proxy.reloader import file_stamps
    from stockade.proxy.rendered import bound_heap
    from stockade.proxy.serving import (
        ClientLimits,
        ConnectionGuard,
        StartupError,
        serve_until_stopped,
    )
    from stockade.proxy.tls import TlsError, TlsReloader
    from stockade.proxy.workers import Channel, Supervisor, settle_gc, worker_count
finally:
    if _COLLECTING:
        gc.freeze()
        gc.enable()

logger = logging.getLogger("stockade")


# (the tests' name for it)
_JsonFormatter = JsonFormatter


def _setup_logging(settings: Settings) -> None:
    # lines written together, not one write and flush each (see BufferedLineHandler)
    handler = BufferedLineHandler(sys.stderr)
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
    # Before any thread allocates: a thread that allocated before keeps a heap of
    # its own for life, beside the one every later thread shares.
    bound_heap()
    count = worker_count(settings.server.workers)
    # a first start: the typosquat index files built by child processes, so that no
    # serving process holds the build's objects; then mapped as on any later start
    indexes.build_when_missing()
    try:
        if count == 1:
            asyncio.run(_run(settings))
        else:
            _supervise(settings, count)
    except (StartupError, TlsError) as exc:
        print(f"stockade: {exc.diagnostics()}", file=sys.stderr)
        return 2
    return 0


def _engine_and_verifiers(settings: Settings) -> PolicyEngine:
    """The policy engine; with a provenance rule, its verifiers' libraries imported
    too, at start rather than during the first request that needs them."""
    engine = load_engine(settings)
    import_verifiers(engine)
    return engine


class _Prebuilt:
    """The policy engine the supervisor built before forking, handed to the workers of
    the first start instead of each reading the policy (and its OSV data) again.

    A worker takes it once, as its engine at start, and only while the policy file and
    every file the engine read are as they were when it was built (else it reads the
    policy as before); its reloads always read anew. Once every worker of the first
    start listens the supervisor drops it: a worker started again later reads the
    policy in force then.
    """

    def __init__(self, settings: Settings, engine: PolicyEngine,
                 stamps: tuple[tuple[int, int, int] | None, ...]) -> None:
        self._settings = settings
        self._engine: PolicyEngine | None = engine
        self._stamps = stamps

    @classmethod
    def load(cls, settings: Settings) -> _Prebuilt:
        """The engine for ``settings``, and what its files were as it read them."""
        before = file_stamps((settings.policy.file,))
        engine = _engine_and_verifiers(settings)
        stamps = _stamps(settings, engine)
        return cls(settings, engine, stamps if stamps[:1] == before else ())

    def factory(self, settings: Settings) -> PolicyEngine:
        """An engine factory: the prebuilt engine at its first call, where it stands."""
        engine, self._engine = self._engine, None
        if engine is not None and settings is self._settings \
                and _stamps(settings, engine) == self._stamps:
            return engine
        return _engine_and_verifiers(settings)

    def drop(self) -> None:
        self._engine = None


def _stamps(settings: Settings, engine: PolicyEngine) -> tuple[tuple[int, int, int] | None, ...]:
    # what the reloader watches: the policy file and the files its rules read
    return file_stamps((settings.policy.file, *getattr(engine, "sources", ())))


def _runner(settings: Settings, counts: SharedClientCounts | None = None,
            worker: int = 0, peers: Peers | None = None,
            engine_factory: EngineFactory = _engine_and_verifiers,
            ) -> tuple[web.AppRunner, ConnectionGuard]:
    server = settings.server
    app = make_app(settings, lead=worker == 0, engine_factory=engine_factory)
    if peers is not None:  # an admin reload reaches the other workers through it
        app[PEERS] = peers
    runner = web.AppRunner(
        app, access_log_class=JsonAccessLogger,
        access_log=logging.getLogger("stockade.access") if server.access_log else None,
        shutdown_timeout=server.shutdown_timeout_s, keepalive_timeout=server.keepalive_timeout_s,
    )
    limits = ClientLimits(header_timeout_s=server.header_timeout_s,
                          send_timeout_s=server.send_timeout_s,
                          max_connections_per_client=server.max_connections_per_client)
    guard = (SharedConnectionGuard(limits, app_metrics(app), counts, worker)
             if counts is not None  # one worker of several: a client's limit spans them all
             else ConnectionGuard(limits, app_metrics(app)))
    if server.fast_path:
        guard.fast = FastPath(app, memo_of=warm_memo_of, metrics=app_metrics(app))
    return runner, guard



def _listening(settings: Settings, port: int, workers: int = 1) -> None:
    server = settings.server
    scheme = "https" if server.tls.enabled else "http"
    processes = f" ({workers} worker processes)" if workers > 1 else ""
    logger.info("stockade %s listening on %s://%s:%d%s, storing under %s", __version__,
                scheme, server.host, port, processes, settings.storage.path)


@contextlib.asynccontextmanager
async def _tls(settings: Settings) -> AsyncIterator[ssl.SSLContext | None]:
    """The listening TLS context, its files watched for as long as it serves."""
    if not settings.server.tls.enabled:
        yield None
        return
    tls = TlsReloader(settings.server.tls)
    await tls.start()
    try:
        yield tls.context
    finally:
        await tls.close()


async def _run(settings: Settings) -> None:
    server = settings.server
    runner, guard = _runner(settings)

    def listening(port: int) -> None:
        settle_gc()  # as each of several workers does once it serves
        _listening(settings, port)

    async with _tls(settings) as context:
        await serve_until_stopped(runner, server.host, server.port, guard=guard,
                                  shutdown_timeout_s=server.shutdown_timeout_s,
                                  on_listening=listening, ssl_context=context)


def _supervise(settings: Settings, count: int) -> None:
    """``server.workers`` > 1: bind once, fork the workers, keep them running."""
    server = settings.server
    if server.tls.enabled:  # a bad certificate is one line from the supervisor, not N
        TlsReloader(server.tls)
    listener = bind(server.host, server.port)
    counts = SharedClientCounts(count)
    # Built once here, the policy's large parts (the typosquat name indexes, memoised
    # by the rule) are inherited by every worker, copy-on-write, instead of each
    # worker loading its own; frozen, the collector never writes to their pages.
    # with a provenance rule, its verifiers' libraries too, for the same reason; and
    # the engine itself is the first workers' (``_Prebuilt``)
    prebuilt = _Prebuilt.load(settings)
    gc.freeze()

    def listening() -> None:
        prebuilt.drop()
        _listening(settings, listener.port, count)

    def work(shared: Listener, channel: Channel) -> None:
        async def run() -> None:
            runner, guard = _runner(settings, counts, channel.slot,
                                    Peers(count, channel.reload_others, channel.slot),
                                    engine_factory=prebuilt.factory)
            async with _tls(settings) as context:
                await serve_worker(runner, shared, guard=guard, ready=channel.ready,
                                   shutdown_timeout_s=server.shutdown_timeout_s,
                                   ssl_context=context)
        try:
            asyncio.run(run())
        except ConfigError as exc:  # the policy file broke after the supervisor read it
            raise StartupError(exc.diagnostics()) from exc
        except TlsError as exc:
            raise StartupError(exc.diagnostics()) from exc

    Supervisor(count, listener, work, shutdown_timeout_s=server.shutdown_timeout_s,
               on_listening=listening,
               on_exit=counts.forget).run()


def _cache_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings)
    from stockade.proxy import cache_cli  # not imported by `serve`: see _parser

    return cache_cli.verify(settings)


def _index_build(args: argparse.Namespace) -> int:
    where = Path(args.into) if args.into else indexes.folder()
    if where is None:
        print("stockade: STOCKADE_INDEX_CACHE is empty: name a folder with --into",
              file=sys.stderr)
        return 2
    try:
        written = indexes.build(where)
    except OSError as exc:
        print(f"stockade: index files not written in {where}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _parser(*, serve_only: bool = False) -> argparse.ArgumentParser:
    """The command's parser; with ``serve_only``, without the maintenance commands,
    whose modules a serving process (each worker) would otherwise hold, some 1 MiB."""
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
    if serve_only:
        return parser

    cache = sub.add_parser("cache", help="inspect and maintain the artifact cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    verify = cache_sub.add_parser(
        "verify", help="re-hash every stored blob and remove those that fail"
    )
    verify.add_argument("--config", help="YAML config file (or $STOCKADE_CONFIG)")
    verify.add_argument("--storage", help="storage directory")
    verify.set_defaults(func=_cache_verify)

    index = sub.add_parser("index", help="the typosquat index files")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    index_build = index_sub.add_parser(
        "build", help="build the index files of the installed lists and print their paths")
    index_build.add_argument(
        "--into", help="the folder to write them in (default: the index cache folder, "
        "$STOCKADE_INDEX_CACHE or $XDG_CACHE_HOME/stockade)")
    index_build.set_defaults(func=_index_build)

    from stockade.proxy import fleet_cli, policy_cli, token_cli

    policy_cli.add_subcommands(sub)
    fleet_cli.add_subcommands(sub)
    token_cli.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stockade`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(serve_only=list(argv[:1]) == ["serve"]).parse_args(argv)
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
