"""TLS on the listening side: modern versions only, client certificates, reloading.

The application is stockade's own, served on 127.0.0.1 through the site the
server uses, with certificates from a test CA (trustme).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from stockade.config.model import TlsSettings
from stockade.proxy.app import make_app
from stockade.proxy.metrics import Metrics
from stockade.proxy.serving import ClientLimits, ConnectionGuard, GuardedSite
from stockade.proxy.tls import TlsError, TlsReloader, server_context
from tests.conftest import settings_for


def _write(leaf: trustme.LeafCert, cert: Path, key: Path) -> None:
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())


class Served:
    def __init__(self, reloader: TlsReloader, port: int) -> None:
        self.reloader = reloader
        self.port = port

    def handshake(self, context: ssl.SSLContext, host: str = "127.0.0.1") -> int:
        """The serial number of the certificate the server presents."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            from cryptography import x509
            return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def _serve(tmp_path: Path, tls: TlsSettings) -> AsyncIterator[Served]:
    reloader = TlsReloader(tls)
    app = make_app(settings_for(tmp_path, [{"name": "pypi", "url": "http://127.0.0.1:9/"}]),
                   environ={})
    runner = web.AppRunner(app)
    await runner.setup()
    guard = ConnectionGuard(ClientLimits(header_timeout_s=20, send_timeout_s=20,
                                         max_connections_per_client=None), Metrics())
    site = GuardedSite(runner, "127.0.0.1", 0, guard=guard, ssl_context=reloader.context)
    await site.start()
    await reloader.start()
    try:
        yield Served(reloader, site.port)
    finally:
        await reloader.close()
        await runner.cleanup()


@pytest.fixture
async def served(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[Served]:
    _write(ca.issue_cert("127.0.0.1", "localhost"), tmp_path / "cert.pem", tmp_path / "key.pem")
    tls = TlsSettings(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem", reload_check_s=0.05)
    async for s in _serve(tmp_path, tls):
        yield s


def _client(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_tls_12_and_later_only(served: Served, ca: trustme.CA) -> None:
    assert await asyncio.to_thread(served.handshake, _client(ca))
    old = _client(ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so this client can offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(served.handshake, old)
    for context in (served.reloader.context, served.reloader.current):
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    tls12 = _client(ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await asyncio.to_thread(served.handshake, tls12)


async def test_a_renewed_certificate_serves_new_connections(
    tmp_path: Path, served: Served, ca: trustme.CA,
) -> None:
    first = await asyncio.to_thread(served.handshake, _client(ca))
    renewed = ca.issue_cert("127.0.0.1", "localhost")
    # written beside and renamed in, as certificate tools do
    _write(renewed, tmp_path / "cert.new", tmp_path / "key.new")
    (tmp_path / "key.new").replace(tmp_path / "key.pem")
    (tmp_path / "cert.new").replace(tmp_path / "cert.pem")
    for _ in range(400):
        serial = await asyncio.to_thread(served.handshake, _client(ca))
        if serial != first:
            break
        await asyncio.sleep(0.05)
    assert serial != first
    # a broken file later keeps the certificate in force
    (tmp_path / "cert.pem").write_text("not a certificate")
    for _ in range(100):
        if served.reloader._stamps == served.reloader._read_stamps():
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(served.handshake, _client(ca)) == serial


async def test_client_certificates_when_client_ca_is_set(tmp_path: Path, ca: trustme.CA) -> None:
    clients = trustme.CA()
    clients.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    _write(ca.issue_cert("127.0.0.1"), tmp_path / "cert.pem", tmp_path / "key.pem")
    tls = TlsSettings(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem",
                      client_ca=tmp_path / "clients.pem")
    async for served in _serve(tmp_path, tls):
        # TLS 1.3 checks the client's certificate after the client's handshake ends:
        # the refusal is an alert or a closed connection at the first read
        anonymous = _client(ca)
        assert await asyncio.to_thread(_request, served.port, anonymous) == b""
        stranger = _client(ca)
        trustme.CA().issue_cert("someone").configure_cert(stranger)
        assert await asyncio.to_thread(_request, served.port, stranger) == b""
        member = _client(ca)
        clients.issue_cert("ci@example.com").configure_cert(member)
        assert b"200 OK" in await asyncio.to_thread(_request, served.port, member)


def _request(port: int, context: ssl.SSLContext) -> bytes:
    """The response to a request over TLS; b"" when the server refused the client."""
    out = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Connection: close\r\n\r\n")
            while chunk := tls.recv(65536):
                out += chunk
    except (ssl.SSLError, ConnectionError):
        return b""
    return out


def test_unusable_files_are_a_clear_error(tmp_path: Path, ca: trustme.CA) -> None:
    with pytest.raises(TlsError, match="cannot use certificate"):
        server_context(TlsSettings(cert=tmp_path / "missing.pem", key=tmp_path / "k.pem"))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "k1.pem"))
    ca.issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(tmp_path / "c2.pem"))
    with pytest.raises(TlsError, match="cannot use certificate"):
        server_context(TlsSettings(cert=tmp_path / "c2.pem", key=tmp_path / "k1.pem"))


async def test_a_replaced_client_ca_applies_without_restart(
    tmp_path: Path, ca: trustme.CA,
) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    old_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    _write(ca.issue_cert("127.0.0.1"), tmp_path / "cert.pem", tmp_path / "key.pem")
    tls = TlsSettings(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem",
                      client_ca=tmp_path / "clients.pem", reload_check_s=0.05)
    old_member, new_member = _client(ca), _client(ca)
    old_ca.issue_cert("old@example.com").configure_cert(old_member)
    new_ca.issue_cert("new@example.com").configure_cert(new_member)
    async for served in _serve(tmp_path, tls):
        assert b"200 OK" in await asyncio.to_thread(_request, served.port, old_member)
        assert await asyncio.to_thread(_request, served.port, new_member) == b""
        before = served.reloader.current
        # written beside and renamed in, as a secret mount or a CA tool does
        new_ca.cert_pem.write_to_path(str(tmp_path / "clients.new"))
        (tmp_path / "clients.new").replace(tmp_path / "clients.pem")
        for _ in range(400):  # the watcher builds a new context within a few checks
            if served.reloader.current is not before:
                break
            await asyncio.sleep(0.05)
        assert served.reloader.current is not before
        assert await asyncio.to_thread(_request, served.port, old_member) == b""
        assert b"200 OK" in await asyncio.to_thread(_request, served.port, new_member)
