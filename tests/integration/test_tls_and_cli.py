"""TLS failures refuse instead of downgrading; the cache verify command."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stockade.proxy.cli import main
from testbed.fakes.pypi_upstream import FakePyPI
from tests.conftest import ProxyFactory, settings_for


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


async def test_untrusted_certificate_is_refused(tmp_path: Path, make_proxy: ProxyFactory) -> None:
    index = FakePyPI()
    index.add_wheel("demo", "1.0")
    server = TestServer(index.app(), host="127.0.0.1", scheme="https")
    await server.start_server(ssl=_self_signed(tmp_path))
    try:
        url = str(server.make_url("/simple/"))
        assert url.startswith("https://")
        proxy = await make_proxy(settings_for(tmp_path, [{"name": "pypi", "url": url,
                                                          "retries": 0}]))
        resp = await proxy.get("/pypi/simple/demo/")
        assert resp.status == 502
        assert "TLS verification failed" in await resp.text()
        assert index.requests == []  # no request was sent over the unverified channel
    finally:
        await server.close()


async def test_cache_verify_command(tmp_path: Path, fake_pypi: FakePyPI,
                                    make_proxy: ProxyFactory,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    good = fake_pypi.add_wheel("good", "1.0")
    bad = fake_pypi.add_wheel("bad", "1.0")
    proxy = await make_proxy(upstream=fake_pypi)
    for name, dist in (("good", good), ("bad", bad)):
        resp = await proxy.get(f"/pypi/files/{name}/{dist.filename}")
        assert await resp.read() == dist.data
    blob = tmp_path / "data" / "blobs" / "sha256" / bad.sha256[:2] / bad.sha256
    blob.write_bytes(b"tampered")
    # The command runs its own event loop, as it does from a shell.
    code = await asyncio.to_thread(main, ["cache", "verify", "--storage", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert code == 1
    assert "checked 2 blobs, removed 1" in out
    assert f"sha256:{bad.sha256}" in out
    assert not blob.exists()
    assert hashlib.sha256(
        (tmp_path / "data" / "blobs" / "sha256" / good.sha256[:2] / good.sha256).read_bytes()
    ).hexdigest() == good.sha256


_TRUSTED_BY_ENV = '''
import asyncio, datetime, ipaddress, os, ssl, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

folder = Path(sys.argv[1])
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a private registry")])
now = datetime.datetime.now(datetime.UTC)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
(folder / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
(folder / "key.pem").write_bytes(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()))
os.environ["SSL_CERT_FILE"] = str(folder / "ca.pem")  # as an operator's environment

from aiohttp import web
from aiohttp.test_utils import TestServer
from stockade.config.model import UpstreamSettings
from stockade.proxy.metrics import Metrics
from stockade.proxy.upstream import Upstream

async def main() -> None:
    app = web.Application()
    app.router.add_get("/simple/", lambda _r: web.Response(text="private index"))
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(folder / "ca.pem", folder / "key.pem")
    server = TestServer(app, host="127.0.0.1", scheme="https")
    await server.start_server(ssl=served)
    up = Upstream(UpstreamSettings(name="private", url=str(server.make_url("/simple/")),
                                   retries=0), metrics=Metrics(), environ={})
    await up.start()
    try:
        async with up.get(up.url) as resp:
            print(resp.status, (await resp.read(1000)).decode())
    finally:
        await up.close()
        await server.close()

asyncio.run(main())
'''


async def test_an_upstream_signed_by_a_ca_in_ssl_cert_file_is_trusted(tmp_path: Path) -> None:
    """Upstreams verify with the system's store as the process found it at start, so
    an operator's ``SSL_CERT_FILE`` (a private CA) is trusted, as with any client."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TRUSTED_BY_ENV, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "200 private index"
