"""Building the aiohttp application from settings.

Owns the application's life: the services are opened in one cleanup context
(storage, caches, upstream sessions, the policy gate) and closed in reverse.
Nothing is module-global: two apps in one process share no state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from aiohttp import web

from stockade.config.model import Settings
from stockade.policy.engine import build_engine
from stockade.policy.file import load_policy
from stockade.policy.model import Ecosystem
from stockade.proxy import routes, ui
from stockade.proxy.admission import Admission, Workers
from stockade.proxy.affected import Reevaluator
from stockade.proxy.approvals_log import record_new, seen_path
from stockade.proxy.auth import ACCESS, TOKENS, AccessCheck, TokenWatcher
from stockade.proxy.budget import MemoryBudget
from stockade.proxy.bundlepull import BundlePuller
from stockade.proxy.checkpoint import key_from_env
from stockade.proxy.checksum_origins import NAMESPACE as CHECKSUM_ORIGINS
from stockade.proxy.checksum_origins import ChecksumOrigins
from stockade.proxy.decisionlog import DecisionLog
from stockade.proxy.dispatch import keep_routes
from stockade.proxy.firstseen import FirstSeen
from stockade.proxy.gate import Gate, PolicyEngine
from stockade.proxy.heaptrim import HeapTrim
from stockade.proxy.hotblobs import HotBlobs
from stockade.proxy.metacache import MetadataCache
from stockade.proxy.metadocs import MetadataRecords
from stockade.proxy.metrics import Metrics
from stockade.proxy.notify import Webhook
from stockade.proxy.osvsync import OsvSync, osv_age, state_path, sync_folder
from stockade.proxy.pipeline import Accel, ArtifactPipeline
from stockade.proxy.provenance.checker import PROVENANCE_REFS, ProvenanceChecker
from stockade.proxy.readonly import LoggedDecisions, ScratchRecords
from stockade.proxy.reloader import PolicyReloader
from stockade.proxy.rendered import RenderedCache
from stockade.proxy.renderslots import RenderSlots
from stockade.proxy.responses import make_middleware
from stockade.proxy.routes import ECOSYSTEMS
from stockade.proxy.served import FOLDER as SERVED_FOLDER
from stockade.proxy.served import ServedLog, recorder
from stockade.proxy.singleflight import FileLocks
from stockade.proxy.state import SERVICES, Services
from stockade.proxy.upstream import Upstream
from stockade.proxy.warmmemo import WarmMemo, make_warm_stage
from stockade.proxy.workers import worker_count
from stockade.storage.backends import open_records, open_store
from stockade.storage.protocol import BlobStore
from stockade.storage.readonly import read_only_reason
from stockade.storage.records import RecordStore
from stockade.storage.refs import RefStore
from stockade.storage.rehash import Rehasher
from stockade.storage.verify import BlobState

logger = logging.getLogger(__name__)

# The record stores under the storage path: the server writes them, and
# `stockade check` and `stockade audit` read them.
ARTIFACT_REFS = "artifacts"
METADATA_REFS = "metadata"
FIRST_SEEN_REFS = "firstseen"

EngineFactory = Callable[[Settings], PolicyEngine]
# The app's registry, there before startup (what serves the socket counts into it too).
METRICS = web.AppKey("metrics", Metrics)
# Re-decides what was served after each policy swap (tests wait on its passes).
REEVALUATOR = web.AppKey("reevaluator", Reevaluator)


def app_metrics(app: web.Application) -> Metrics:
    """The metrics of an application ``make_app`` built."""
    return app[METRICS]


def internal_namespaces(settings: Settings) -> dict[Ecosystem, tuple[str, ...]]:
    """Every internal namespace pattern, per ecosystem, from the upstreams."""
    return {
        eco: tuple(ns for u in getattr(settings, eco.value).upstreams for ns in u.namespaces)
        for eco in Ecosystem
    }


def replica_name(settings: Settings) -> str:
    """This replica's name: ``server.replica``, or the host name."""
    return settings.server.replica or socket.gethostname()


def decision_log_path(settings: Settings) -> Path:
    """Where refusals and audit hits are recorded (one hash chain per replica
    where replicas share object storage)."""
    if settings.policy.decision_log is not None:
        return settings.policy.decision_log
    if settings.storage.backend == "s3":
        return settings.storage.path / f"decisions-{replica_name(settings)}.jsonl"
    return settings.storage.path / "decisions.jsonl"


def fetch_locks(settings: Settings) -> FileLocks:
    """The lock files that keep worker processes (and servers on one host sharing
    the storage folder) from fetching the same thing at once."""
    return FileLocks(settings.storage.path / "locks")


def render_processes(settings: Settings) -> int:
    """Render pool processes per worker: about one per core for the whole server."""
    return max(1, min(4, worker_count(None)) // worker_count(settings.server.workers))


def load_engine(settings: Settings) -> PolicyEngine:
    """The policy engine for the configured policy file (or the default policy).

    Raises:
        stockade.policy errors: the policy file is invalid.
    """
    policy = None
    if settings.policy.file is not None:
        policy = load_policy(settings.policy.file, internal=internal_namespaces(settings))
        for warning in policy.warnings:
            logger.warning("policy %s: %s", settings.policy.file, warning)
    return build_engine(policy, internal=internal_namespaces(settings))


def hot_blobs(settings: Settings, budget: MemoryBudget | None = None) -> HotBlobs | None:
    """The memory cache of small verified blobs, unless ``server.memory_blobs`` is off."""
    memory = settings.server.memory_blobs
    if not memory.max_bytes:
        return None
    return HotBlobs(memory.max_bytes, memory.max_blob_bytes, budget)


def accel(settings: Settings) -> Accel | None:
    """Front-server mode, where ``server.accel_redirect`` asks for it."""
    front = settings.server.accel_redirect
    return None if front is None else Accel(settings.storage.path, front.prefix)


async def _spool_folder(root: Path) -> Path | None:
    """Where large upstream bodies are spooled: ``<root>/tmp``, on the storage's disk,
    as the blob writers' spools are (the system's temporary folder may be a tmpfs,
    holding a 20 MB document in memory); None, the system's, where it cannot be made."""
    folder = root / "tmp"
    try:
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("large upstream bodies spool in the temporary folder: %s: %s",
                       folder, exc.strerror or exc)
        return None
    return folder


def make_upstreams(
    settings: Settings, metrics: Metrics, environ: Mapping[str, str]
) -> dict[Ecosystem, tuple[Upstream, ...]]:
    """Every configured upstream, per ecosystem (not started: no session is open);
    with ``server.offline`` none of them is ever contacted."""
    return {
        eco: tuple(Upstream(u, metrics=metrics, environ=environ,
                            offline=settings.server.offline)
                   for u in getattr(settings, eco.value).upstreams)
        for eco in Ecosystem
    }


def make_admission(
    settings: Settings, gate: Gate, metrics: Metrics, upstreams: Mapping[Ecosystem,
    tuple[Upstream, ...]], *, offline: bool = False, workers: Workers | None = None,
    first_seen: RecordStore | None = None, read_only_storage: bool = False,
    scratch: Path | None = None, budget: MemoryBudget | None = None,
) -> Admission:
    """The admission path over the records under ``storage.path`` (first-seen
    times from ``first_seen`` where given: the records replicas share).
    Over read-only storage, metadata fetched while serving is kept under
    ``scratch`` (a private temporary folder) where given.

    ``offline`` admission asks no upstream and records nothing: it decides on
    the metadata and first-seen times the server stored (``check``, ``audit``).
    A server with ``server.offline`` asks no upstream either, but records.
    """
    root = settings.storage.path
    metadata_refs: MetadataRecords = RefStore(root, METADATA_REFS, read_only=read_only_storage)
    if read_only_storage and scratch is not None:
        metadata_refs = ScratchRecords(RefStore(root, METADATA_REFS, read_only=True),
                                       RefStore(scratch, METADATA_REFS))
    metacache = MetadataCache(
        metadata_refs, metrics,
        max_doc_bytes=settings.storage.max_metadata_bytes,
        offline=offline or settings.server.offline,
        negative_ttl_s={eco: getattr(settings, eco.value).cache.negative_ttl_s
                        for eco in Ecosystem},
        locks=None if offline else fetch_locks(settings),
        budget=budget,
    )
    seen = FirstSeen(first_seen or RefStore(root, FIRST_SEEN_REFS), read_only=offline)
    # Built for every app (a reloaded policy may gain a provenance rule); it loads
    # trust material only when a rule asks for a check.
    provenance = ProvenanceChecker(RefStore(root, PROVENANCE_REFS, read_only=read_only_storage),
                                   metrics,
                                   read_only=offline)
    return Admission(settings, gate=gate, upstreams=upstreams, metacache=metacache,
                     first_seen=seen, ecosystems=ECOSYSTEMS, workers=workers,
                     provenance=provenance, budget=budget)


async def storage_read_only(settings: Settings) -> str | None:
    """Why the filesystem storage, which exists, cannot be written (it is then
    served read-only), or None. Logs the mode once."""
    if settings.storage.backend != "filesystem":
        return None
    reason = await asyncio.to_thread(read_only_reason, settings.storage.path)
    if reason is not None:
        logger.warning("storage at %s cannot be written (%s): serving it read-only; what "
                       "is cached is served, anything else answers 503",
                       settings.storage.path, reason)
    return reason


async def open_decisions(settings: Settings, metrics: Metrics, environ: Mapping[str, str],
                         revision: Callable[[], str]) -> DecisionLog | LoggedDecisions:
    """The opened decision log, or log lines where its folder cannot be written."""
    path = decision_log_path(settings)
    reason = await asyncio.to_thread(read_only_reason, path.parent)
    decisions: DecisionLog | LoggedDecisions
    if reason is not None:
        decisions = LoggedDecisions(path, reason, revision=revision)
    else:
        decisions = DecisionLog(
            path, revision=revision, metrics=metrics,
            key=key_from_env(settings.policy.decision_log_key_env, environ))
    await decisions.open()
    return decisions


def make_rehasher(settings: Settings, store: BlobStore, metrics: Metrics) -> Rehasher:
    """The scheduled re-hash of blobs too large to hash on every read."""
    def counted(state: BlobState) -> None:
        result = "ok" if state is BlobState.INTACT else "mismatch"
        metrics.blob_verifications.labels("schedule", result).inc()

    storage = settings.storage
    return Rehasher(store, min_bytes=storage.verify_on_read_max_bytes,
                    interval_s=storage.rehash_interval_s,
                    max_bytes_per_s=storage.rehash_max_bytes_per_s, on_checked=counted)


def warm_memo_of(app: web.Application) -> WarmMemo | None:
    """The application's warm memo, once its services are up and where it has one."""
    svc = app.get(SERVICES)
    return None if svc is None else svc.warm


def warm_memo(settings: Settings, admission: Admission,
              pipeline: ArtifactPipeline, budget: MemoryBudget | None = None) -> WarmMemo | None:
    """The warm-hit memo, unless ``server.warm_memo_s`` is 0."""
    validity = settings.server.warm_memo_s
    if validity <= 0:
        return None
    return WarmMemo(admission.gate, admission.metacache, pipeline, validity_s=validity,
                    budget=budget)


def make_app(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    engine_factory: EngineFactory = load_engine,
    lead: bool = True,
) -> web.Application:
    """The stockade application for ``settings``. ``lead``: this process runs the duties
    done once per server, not once per worker (re-deciding what was served, its
    notifications, the scheduled OSV sync); of several workers, only the first."""
    metrics = Metrics()
    tokens = TokenWatcher(settings.auth.tokens, check_s=settings.auth.reload_check_s)
    access = AccessCheck(settings.auth, tokens, metrics)
    app = web.Application(
        client_max_size=settings.server.client_max_size_bytes,
        middlewares=[make_middleware(metrics, access=access,
                                     stage=make_warm_stage(warm_memo_of))],
    )
    app[ACCESS] = access
    keep_routes(app)
    app[METRICS] = metrics
    app[TOKENS] = tokens
    app.cleanup_ctx.append(tokens.lifecycle)
    env = dict(os.environ if environ is None else environ)
    app.cleanup_ctx.append(_services(settings, metrics, env, engine_factory, lead))
    app.on_cleanup.append(_flush_counts)
    routes.setup(app)
    if settings.ui.enabled:
        ui.setup(app, settings, decision_log=decision_log_path(settings),
                 artifacts=ARTIFACT_REFS, environ=env)
    return app


async def _flush_counts(app: web.Application) -> None:
    """The last requests' counts, written before the process ends."""
    app[METRICS].tally.flush()


async def _start_osv_sync(settings: Settings, metrics: Metrics, environ: Mapping[str, str]
                          ) -> tuple[OsvSync, asyncio.Task[None]] | None:
    """With ``osv.interval``, the server syncs the OSV exports itself; the reloader
    then puts them in force."""
    if settings.osv.interval is None:
        return None
    folder = await asyncio.to_thread(sync_folder, settings)
    if folder is None:
        logger.error("osv.interval is set but there is no folder to sync to "
                     "(osv.path, or a folder in the policy's rules.osv.paths)")
        return None
    sync = OsvSync(settings.osv, folder, state=state_path(settings), metrics=metrics,
                   environ=environ)
    await sync.__aenter__()
    return sync, asyncio.create_task(sync.run(), name="osv-sync")


async def _stop_osv_sync(sync: OsvSync, task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await sync.__aexit__()


def _services(
    settings: Settings, metrics: Metrics, environ: Mapping[str, str],
    engine_factory: EngineFactory, lead: bool,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        # A signed bundle, where configured, replaces the policy file once applied.
        factory, puller = engine_factory, None
        if settings.policy.bundle is not None:
            puller = BundlePuller(settings, metrics, engine_factory)
            factory = puller.factory()
        # The policy first: if it cannot be loaded, nothing has been opened yet.
        engine = factory(settings)
        root = settings.storage.path
        read_only = await storage_read_only(settings)
        decisions = await open_decisions(settings, metrics, environ, lambda: gate.revision)
        gate = Gate(engine, metrics, decisions)
        if lead:  # the approvals in force at start, recorded once per server
            await record_new(gate, None, engine, seen_path(settings))
        store = open_store(settings, environ, read_only=read_only)
        await store.open()
        # what this process's in-memory caches hold together
        budget = MemoryBudget(settings.server.memory_budget_bytes)
        trim = HeapTrim(budget)  # what the caches shed goes back to the system
        trim.watch()  # and what the process grew by otherwise
        pipeline = ArtifactPipeline(
            store, open_records(settings, store, ARTIFACT_REFS), metrics,
            max_artifact_bytes=settings.storage.max_artifact_bytes,
            verify_on_read_max_bytes=settings.storage.verify_on_read_max_bytes,
            hot=hot_blobs(settings, budget), accel=accel(settings),
            locks=fetch_locks(settings),
            verify_on_read_trust_s=settings.storage.verify_on_read_trust_s,
            read_only=read_only, budget=budget,
        )
        rehasher = make_rehasher(settings, store, metrics)
        rendered_root, private = root / "rendered", None
        if read_only is not None:  # derived and fetched files: a private temporary folder
            private = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="stockade-rendered-"))
            rendered_root = private / "rendered"
        locks = root / "locks" if private is None else private / "locks"
        rendered = RenderedCache(
            rendered_root, workers=render_processes(settings),
            slots=RenderSlots(locks, settings.server.render_slots), budget=budget)
        await rendered.open()
        upstreams = make_upstreams(settings, metrics, environ)
        reads = RenderSlots(locks, 2 * settings.server.render_slots, kind="read")
        spools = await _spool_folder(Path(root) if private is None else private)
        for group in upstreams.values():
            for upstream in group:
                upstream.bound_reads(reads, spools)
                await upstream.start()
        admission = make_admission(settings, gate, metrics, upstreams, workers=rendered,
                                   first_seen=open_records(settings, store, FIRST_SEEN_REFS),
                                   read_only_storage=read_only is not None, scratch=private,
                                   budget=budget)
        provenance = admission.provenance
        assert provenance is not None
        app[SERVICES] = Services(
            settings=settings, metrics=metrics, store=store, admission=admission,
            pipeline=pipeline, rendered=rendered, provenance=provenance, bundle=puller,
            read_only=read_only,
            checksum_origins=ChecksumOrigins(RefStore(
                root, CHECKSUM_ORIGINS, read_only=read_only is not None)),
            warm=warm_memo(settings, admission, pipeline, budget),
        )
        metrics.storage_bytes.set(store.total_bytes)
        reloader = PolicyReloader(settings, gate, metrics, factory)
        await reloader.start()
        app[SERVICES].reloader = reloader
        if puller is not None:
            await puller.start(gate)
        metrics.osv_age.set_function(lambda: osv_age(gate.engine))
        # over read-only storage each record is logged on stockade.served instead
        served = ServedLog(root / SERVED_FOLDER if read_only is None else None, metrics,
                           retention_days=settings.served.retention_days)
        await served.open()
        pipeline.on_served = recorder(served)
        hook = settings.notify.webhook
        webhook = None if hook is None or not lead else Webhook(hook, metrics, environ)
        if webhook is not None:
            await webhook.start()
        reevaluator, offline, syncing = None, None, None
        if lead:  # the other workers' decisions and served records are in the same files
            # Re-deciding what was served reads only what the server stored.
            # its documents, read after each policy swap, share this worker's budget
            offline = make_admission(settings, Gate(engine, Metrics()), Metrics(), upstreams,
                                     offline=True,
                                     first_seen=open_records(settings, store, FIRST_SEEN_REFS),
                                     budget=budget)
            reevaluator = Reevaluator(
                offline, root / SERVED_FOLDER, metrics, sink=decisions, webhook=webhook,
                window_s=hook.window if hook else 30 * 86400.0,
                max_artifacts=settings.notify.max_artifacts)
            gate.on_swap(reevaluator.changed)
            await reevaluator.start()
            app[REEVALUATOR] = reevaluator
            syncing = await _start_osv_sync(settings, metrics, environ)
        rehasher.start()
        try:
            yield
        finally:
            await rehasher.close()
            if syncing is not None:
                await _stop_osv_sync(*syncing)
            if reevaluator is not None:
                await reevaluator.close()
            if offline is not None:
                await offline.metacache.close()
            if webhook is not None:
                await webhook.close()
            await served.close()
            if puller is not None:
                await puller.close()
            await reloader.close()
            await provenance.close()
            await pipeline.close()
            await trim.close()
            await rendered.close()
            await decisions.close()
            await admission.metacache.close()
            if private is not None:
                await asyncio.to_thread(shutil.rmtree, private, ignore_errors=True)
            for group in upstreams.values():
                for upstream in group:
                    await upstream.close()
            await store.close()

    return context
