"""Telling someone: signed webhook notifications, retried, never in a client's way.

Owns ``notify.webhook``: each notification is a JSON body POSTed to ``url``
with ``X-Stockade-Signature: sha256=<hex HMAC-SHA256 of the body>`` under the
secret from ``secret_env``, ``X-Stockade-Event`` and a ``X-Stockade-Delivery``
id that stays the same across retries (so a receiver can drop repeats). A
failure (no connection, a timeout, a status other than 2xx) is retried with
exponential back-off up to ``max_attempts``. ``send`` only queues: a slow or
failing receiver never slows serving; past ``max_queue`` waiting notifications,
new ones are dropped and counted. What to notify is ``affected``'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from stockade.config.model import UpstreamSettings, WebhookSettings
from stockade.proxy.errors import UpstreamError
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream

logger = logging.getLogger(__name__)

SIGNATURE = "X-Stockade-Signature"
_MAX_ANSWER_BYTES = 64 * 1024


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhook:
    """A queue of notifications and the task that delivers them, in order."""

    def __init__(self, settings: WebhookSettings, metrics: Metrics,
                 environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._metrics = metrics
        secret = environ.get(settings.secret_env) if settings.secret_env else None
        if settings.secret_env and not secret:
            logger.warning("$%s is not set: webhook notifications go unsigned",
                           settings.secret_env)
        self._secret = secret.encode() if secret else None
        self._upstream = Upstream(
            UpstreamSettings(name="webhook", url=settings.url, retries=0,
                             connect_timeout_s=settings.timeout_s,
                             read_timeout_s=settings.timeout_s, unreachable_retry_s=0),
            metrics=metrics, environ=environ)
        self._queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue(settings.max_queue)
        self._task: asyncio.Task[None] | None = None

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Queue one notification; never waits."""
        body = orjson.dumps({"event": event, **payload}, option=orjson.OPT_SORT_KEYS)
        try:
            self._queue.put_nowait((event, str(uuid.uuid4()), body))
        except asyncio.QueueFull:
            self._metrics.notifications.labels("dropped").inc()
            logger.error("webhook queue full: a %s notification was dropped", event)

    async def start(self) -> None:
        await self._upstream.start()
        self._task = asyncio.create_task(self._run(), name="webhook")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._upstream.close()

    async def idle(self) -> None:
        """Wait until every queued notification was delivered or given up."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            event, delivery, body = await self._queue.get()
            try:
                await self._deliver(event, delivery, body)
            finally:
                self._queue.task_done()

    async def _deliver(self, event: str, delivery: str, body: bytes) -> None:
        headers = {"X-Stockade-Event": event, "X-Stockade-Delivery": delivery}
        if self._secret is not None:
            headers[SIGNATURE] = sign(self._secret, body)
        s = self._settings
        for attempt in range(1, s.max_attempts + 1):
            try:
                status, _, _ = await self._upstream.post(
                    s.url, body, content_type="application/json",
                    max_bytes=_MAX_ANSWER_BYTES, headers=headers)
                if 200 <= status < 300:
                    self._metrics.notifications.labels("delivered").inc()
                    return
                problem = f"HTTP {status}"
            except UpstreamError as exc:
                problem = str(exc)
            if attempt == s.max_attempts:
                break
            self._metrics.notifications.labels("retried").inc()
            delay = min(s.retry_max_s, s.retry_base_s * 2 ** (attempt - 1))
            logger.warning("webhook %s delivery %s failed (%s); retry %d in %.1fs",
                           event, delivery, problem, attempt, delay)
            await asyncio.sleep(delay)
        self._metrics.notifications.labels("failed").inc()
        logger.error("webhook %s delivery %s given up after %d attempts: %s", event,
                     delivery, s.max_attempts, problem)
