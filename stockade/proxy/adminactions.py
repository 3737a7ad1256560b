"""The admin actions: reload the policy now, purge a package from the cache.

Owns ``POST /_stockade/admin/reload`` and ``POST`` or ``DELETE
/_stockade/admin/cache/<ecosystem>/<name>[/<version>]`` (the ``admin`` route
group: an admin token unless ``auth.anonymous.admin``), and the functions the
web page's forms call, so both act the same way.

A reload runs the reloader's own path (as SIGHUP and the file watcher do) in the
process that received the request; with several worker processes it then asks
the supervisor to send SIGHUP to every other worker, each of which builds the
same files. Each worker publishes the outcome of every reload it makes under
``<storage>/refs/worker-reloads/`` (keyed by its slot), and the one asked waits
up to ``PEER_WAIT_S`` for every other slot's outcome newer than the request, so
the answer lists each worker's result, or names the ones that had not answered
(their results are then in their logs and ``stockade_policy_reloads_total``).

A purge is ``purge``'s; it is recorded in the decision log with who asked, and
every process drops its in-memory documents before its next metadata look-up
(``purge.Generation``, checked by the metadata cache's ``before_get`` hook this
module sets).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from stockade.policy.model import Decision, Ecosystem, PackageRef, Verdict
from stockade.policy.names import KINDS, valid
from stockade.proxy.admin import parse_ecosystem, split_path
from stockade.proxy.admission import Admission, caller, canonical
from stockade.proxy.errors import BadRequestError, ProxyError
from stockade.proxy.identity import Identity, identity_of
from stockade.proxy.purge import Generation, Purger, PurgeResult
from stockade.proxy.reloader import ReloadOutcome
from stockade.proxy.state import SERVICES, Services, services
from stockade.storage.backends import open_records
from stockade.storage.refs import RefStore

logger = logging.getLogger(__name__)

CLIENT = "stockade admin"  # the client purge records name
WORKER_RELOADS = "worker-reloads"  # the record namespace of each worker's last reload
PEER_WAIT_S = 30.0  # how long a reload's answer waits for the other workers' outcomes


class UnavailableError(ProxyError):
    """The action cannot be done by this server as it runs."""

    status = 409


@dataclass(frozen=True, slots=True)
class Peers:
    """The other worker processes of this server: how many, and how to reach them."""

    workers: int  # all of them, this one included
    reload_others: Callable[[], None]  # asks the supervisor to SIGHUP the others
    slot: int = 0  # this worker's number, 0 to workers - 1


PEERS = web.AppKey("peers", Peers)
GENERATION = web.AppKey("purge_generation", Generation)
OUTCOMES = web.AppKey("worker_reloads", RefStore)


def setup(app: web.Application) -> None:
    """Register the admin action routes and the purge-generation check."""
    app.router.add_post("/_stockade/admin/reload", reload_handler, name="admin:reload")
    for method in ("POST", "DELETE"):
        app.router.add_route(method, "/_stockade/admin/cache/{ecosystem}/{rest:.+}",
                             purge_handler, name=f"admin:purge:{method.lower()}")
    app.on_startup.append(_open_generation)  # after the services (cleanup_ctx) start
    app.on_startup.append(_publish_outcomes)


async def _open_generation(app: web.Application) -> None:
    """Check the purge generation before each metadata look-up (the documents in
    memory are all a purge elsewhere leaves behind: artifact hits stat their file,
    and other requests hold none), the re-decisions' own look-ups included."""
    if SERVICES not in app:
        return
    svc = app[SERVICES]
    generation = app[GENERATION] = Generation(svc.settings.storage.path)

    def check() -> None:
        if generation.changed():
            forget_documents(app)

    svc.admission.metacache.before_get = check
    reevaluating = _reevaluating(app)
    if reevaluating is not None:
        reevaluating.metacache.before_get = check


def _reevaluating(app: web.Application) -> Admission | None:
    """The offline admission re-deciding what was served (first worker only)."""
    from stockade.proxy.app import REEVALUATOR  # the key app owns

    reevaluator = app.get(REEVALUATOR)
    return None if reevaluator is None else reevaluator.admission


def forget_documents(app: web.Application) -> None:
    """Drop the documents this process holds in memory (a purge happened)."""
    svc = app[SERVICES]
    svc.admission.metacache.forget_all()
    svc.rendered.forget_all()
    reevaluating = _reevaluating(app)
    if reevaluating is not None:
        reevaluating.metacache.forget_all()
    logger.info("cache purged: in-memory metadata dropped in process %d", os.getpid())


# -- reload ------------------------------------------------------------------------

async def _publish_outcomes(app: web.Application) -> None:
    """With several workers, each reload's outcome is written where the others read
    it (not over read-only storage: the answer then cannot list the others)."""
    peers = app.get(PEERS)
    if SERVICES not in app or peers is None or peers.workers < 2:
        return
    svc = app[SERVICES]
    if svc.reloader is None or svc.read_only is not None:
        return
    outcomes = app[OUTCOMES] = RefStore(svc.settings.storage.path, WORKER_RELOADS)

    async def publish(outcome: ReloadOutcome) -> None:
        await outcomes.put(f"slot-{peers.slot}", {
            "slot": peers.slot, "pid": os.getpid(), "at": outcome.at.isoformat(),
            "reason": outcome.reason, "applied": outcome.applied,
            "revision": outcome.revision, "error": outcome.error})

    svc.reloader.on_outcome = publish


async def _peer_outcomes(outcomes: RefStore, slots: list[int], since: datetime,
                         wait_s: float) -> dict[int, dict[str, Any]]:
    """The outcome of each of ``slots``' reloads made at or after ``since``, as they
    come, for at most ``wait_s``."""
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + wait_s
    pause = 0.02
    while True:
        for slot in slots:
            if slot in found:
                continue
            record = await outcomes.get(f"slot-{slot}")
            try:
                newer = record is not None and \
                    datetime.fromisoformat(str(record["at"])) >= since
            except (KeyError, ValueError):
                newer = False  # not a record this module wrote: not an answer
            if newer and record is not None:
                found[slot] = record
        if len(found) == len(slots) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def reload_policy(app: web.Application, reason: str, *,
                        wait_s: float = PEER_WAIT_S) -> tuple[bool, dict[str, Any]]:
    """Reload the policy now, here and in every other worker; (applied here, the
    answer, with each worker's result where it came within ``wait_s``).

    Raises:
        UnavailableError: the server has no reloader (not started).
    """
    reloader = app[SERVICES].reloader
    if reloader is None:
        raise UnavailableError("the policy reloader is not running")
    applied = await reloader.reload(reason)
    last = reloader.last
    assert last is not None
    peers = app.get(PEERS)
    workers: dict[str, Any] = {"total": 1, "this_process": os.getpid(), "others": "none"}
    if peers is not None and peers.workers > 1:
        since = datetime.now(UTC)
        peers.reload_others()
        workers = {"total": peers.workers, "this_process": os.getpid()}
        outcomes = app.get(OUTCOMES)
        others = [slot for slot in range(peers.workers) if slot != peers.slot]
        found = {} if outcomes is None else \
            await _peer_outcomes(outcomes, others, since, wait_s)
        workers["results"] = [
            {"slot": peers.slot, "pid": os.getpid(), "applied": applied,
             "revision": last.revision, "error": last.error},
            *({key: found[slot][key] for key in ("slot", "pid", "applied", "revision",
                                                  "error")}
              for slot in others if slot in found)]
        missing = [slot for slot in others if slot not in found]
        workers["all_applied"] = not missing and all(
            r["applied"] and r["revision"] == last.revision for r in workers["results"])
        workers["others"] = (
            ("every worker applied revision " + last.revision if workers["all_applied"]
             else "not every worker applied this revision: see each one's result")
            if not missing else
            f"workers {', '.join(map(str, missing))} were sent SIGHUP through the "
            f"supervisor but gave no result within {wait_s:g} s"
            + (" (read-only storage: results cannot be shared)" if outcomes is None else "")
            + "; their results are in their logs and in stockade_policy_reloads_total")
    answer = {"applied": applied, "revision": last.revision, "error": last.error,
              "reason": last.reason, "at": last.at.isoformat(), "workers": workers}
    if not applied:
        answer["note"] = f"the new policy was rejected; revision {last.revision} stays in " \
                         "force"
    return applied, answer


def _who(request: web.Request) -> str:
    found = caller(request)
    return found.identity or f"anonymous ({found.client})"


async def reload_handler(request: web.Request) -> web.Response:
    """``POST /_stockade/admin/reload``: 200 applied, 422 rejected (old one in force)."""
    applied, answer = await reload_policy(request.app, f"admin request by {_who(request)}")
    return web.json_response(answer, status=200 if applied else 422)


# -- purge -------------------------------------------------------------------------

def purger(svc: Services) -> Purger:
    """The purger over this server's storage."""
    from stockade.proxy.app import ARTIFACT_REFS, METADATA_REFS  # the names app owns

    root = svc.settings.storage.path
    return Purger(root, RefStore(root, METADATA_REFS),
                  open_records(svc.settings, svc.store, ARTIFACT_REFS), svc.store)


async def purge_package(request: web.Request, eco: Ecosystem, name: str,
                        version: str | None, who: Identity | None) -> PurgeResult:
    """Purge ``name`` (or one version), record it in the decision log, and drop this
    process's in-memory documents at once.

    Raises:
        BadRequestError: not a valid name of the ecosystem.
        UnavailableError: storage is served read-only.
    """
    svc = services(request)
    if not valid(eco, name):
        raise BadRequestError(f"{name!r} is not a valid {KINDS[eco]}")
    if svc.read_only is not None:
        raise UnavailableError(f"storage is served read-only ({svc.read_only}): nothing "
                               "can be purged")
    name = canonical(eco, name)
    result = await purger(svc).purge(eco, name, version)
    generation = request.app.get(GENERATION)
    if generation is not None:
        generation.changed()  # this process's own purge: dropped below, not twice
    forget_documents(request.app)
    found = caller(request)
    by = who.name if who is not None else f"anonymous ({found.client})"
    reason = f"{result.summary()}, by {by}"
    logger.info("%s", reason)
    await svc.gate.note(Verdict(Decision.ALLOW, "purge", reason),
                        PackageRef(eco, name, version), client=CLIENT,
                        request_id=found.request_id, identity=found.identity,
                        team=found.team)
    return result


async def purge_handler(request: web.Request) -> web.Response:
    """``POST|DELETE /_stockade/admin/cache/<ecosystem>/<name>[/<version>]``."""
    eco = parse_ecosystem(request.match_info["ecosystem"])
    name, version = split_path(eco, request.match_info["rest"])
    result = await purge_package(request, eco, name, version, identity_of(request))
    return web.json_response({**result.as_json(), "purged_by": _who(request),
                              "kept": "the artifact records (what was admitted, for the "
                                      "republished rule)"})
