"""TLS on the listening side: the server's context, and putting new files in force.

Owns building the ``ssl.SSLContext`` from ``server.tls`` (TLS 1.2 and later
only; with ``client_ca`` a client must present a certificate that CA issued,
without it none is asked for) and reloading it when the certificate, key or CA
files change. The listening socket keeps one context for its whole life; that
context's server-name callback hands each new handshake the newest context, so
new connections get the new files and open connections keep theirs.
Multi-process serving calls ``TlsReloader`` once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from stockade.config.model import TlsSettings
from stockade.proxy.reloader import file_stamps

logger = logging.getLogger(__name__)


class TlsError(Exception):
    """The TLS files cannot be used; the message names the file."""

    def diagnostics(self) -> str:
        return f"TLS: {self}"


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """A server context for the files ``tls`` names.

    Raises:
        TlsError: a file is missing, unreadable, or the key does not match.
    """
    assert tls.cert is not None
    assert tls.key is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use certificate {tls.cert} with key {tls.key}: "
                       f"{getattr(exc, 'strerror', None) or exc}") from exc
    if tls.client_ca is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"cannot read client CAs from {tls.client_ca}: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsReloader:
    """The listening context, whose handshakes use the newest files' context."""

    def __init__(self, tls: TlsSettings) -> None:
        self._tls = tls
        self._check_s = tls.reload_check_s
        self._stamps = self._read_stamps()
        self.current = server_context(tls)
        # The socket's own context: the same files, and the callback that swaps in
        # ``current`` during each handshake (before the certificate is sent).
        self.context = server_context(tls)
        self.context.sni_callback = self._pick
        self._task: asyncio.Task[None] | None = None

    def _read_stamps(self) -> tuple[tuple[int, int, int] | None, ...]:
        return file_stamps((self._tls.cert, self._tls.key, self._tls.client_ca))

    def _pick(self, sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
              _ctx: ssl.SSLContext) -> None:
        sslobj.context = self.current
        return None

    def reload(self) -> bool:
        """Build a context from the files now; keep the old one if that fails."""
        stamps = self._read_stamps()
        try:
            context = server_context(self._tls)
        except TlsError as exc:
            self._stamps = stamps  # logged once per change, not every tick
            logger.error("TLS reload rejected, the certificate in force stays: %s", exc)
            return False
        self.current, self._stamps = context, stamps
        logger.info("TLS certificate %s reloaded", self._tls.cert)
        return True

    async def watch(self) -> None:
        """Reload whenever a file changes (a renewed certificate, a new CA bundle)."""
        while True:
            await asyncio.sleep(self._check_s)
            if await asyncio.to_thread(self._read_stamps) != self._stamps:
                await asyncio.to_thread(self.reload)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.watch(), name="tls-reloader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
