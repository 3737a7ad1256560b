"""pip and npm through ``https://`` to ``stockade serve`` with ``server.tls``.

A test CA (trustme) issues the server's certificate; pip is given the CA with
``--cert``, npm with ``cafile``. The running server is then handed a
certificate for another host, and one that has expired (it reloads them
without a restart): both clients refuse each.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from testbed.fakes.npm_upstream import FakeNpm
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from testbed.npm_registry import npm_env, run, tool
from tests.e2e.test_access_clients import pip

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture
def upstreams() -> Iterator[tuple[ThreadedServer, str]]:
    index = FakePyPI()
    index.add_wheel("tls-lib", "1.0")
    registry = FakeNpm()
    registry.publish("tls-leaf", "1.0.0")
    pypi = ThreadedServer(index.app).start()
    # the fake registry runs its own test server (it names its own URL), on a loop
    # of its own thread
    loop = ThreadedServer(web.Application).start()
    loop.call(registry.start())
    yield pypi, registry.url
    loop.call(registry.stop())
    loop.stop()
    pypi.stop()


def _install(leaf: trustme.LeafCert, folder: Path) -> None:
    """Write a certificate and key beside and rename them in, as renewal tools do."""
    (folder / "cert.tmp").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    (folder / "key.tmp").write_bytes(leaf.private_key_pem.bytes())
    (folder / "key.tmp").replace(folder / "key.pem")
    (folder / "cert.tmp").replace(folder / "cert.pem")


def _presented(port: int) -> bytes:
    """The certificate the server presents now (unverified: only to see which)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def _wait_for(port: int, leaf: trustme.LeafCert) -> None:
    want = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    deadline = time.monotonic() + 60
    while _presented(port) != want:
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.1)


def _npm(tmp_path: Path, name: str, registry: str, ca: Path) -> Any:
    work = tmp_path / name
    work.mkdir()
    (work / "package.json").write_text(json.dumps(
        {"name": "tls-project", "version": "1.0.0", "private": True,
         "dependencies": {"tls-leaf": "1.0.0"}}))
    userconfig = tmp_path / f"{name}.npmrc"
    userconfig.write_text(f"registry={registry}\ncafile={ca}\naudit=false\nfund=false\n"
                          "fetch-retries=0\n")
    return run([tool("npm"), "install", "--userconfig", str(userconfig), "--cache",
                str(tmp_path / f"{name}-cache"), "--no-audit", "--no-fund"], work,
               npm_env(tmp_path / f"{name}-home"), check=False)


def test_pip_and_npm_over_https_refuse_wrong_host_and_expired(
    tmp_path: Path, upstreams: tuple[ThreadedServer, str], proxy_process: Any,
) -> None:
    pypi, npm = upstreams
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    good = ca.issue_cert("127.0.0.1", "localhost")
    _install(good, tmp_path)
    proxy = proxy_process({
        "server": {"tls": {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem"),
                           "reload_check_s": 0.2}},
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": [{"name": "pypi", "url": pypi.url("/simple/"), "retries": 0}]},
        "npm": {"upstreams": [{"name": "npmjs", "url": npm, "retries": 0}]},
        "maven": {"upstreams": []},
    }, cafile=ca_file)
    assert proxy.url.startswith("https://")
    index = f"{proxy.url}/pypi/simple/"
    registry = f"{proxy.url}/npm/"

    ok = pip(tmp_path, index, "tls-lib", "pip-ok", "--cert", str(ca_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    untrusted = pip(tmp_path, index, "tls-lib", "pip-untrusted")  # without the test CA
    assert untrusted.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout + untrusted.stderr
    done = _npm(tmp_path, "npm-ok", registry, ca_file)
    assert done.returncode == 0, done.stdout + done.stderr
    # npm's tarball URLs are absolute https URLs back through the proxy
    lock = json.loads((tmp_path / "npm-ok" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/tls-leaf"]["resolved"].startswith(registry)

    elsewhere = ca.issue_cert("stockade.example.org")
    _install(elsewhere, tmp_path)
    _wait_for(proxy.port, elsewhere)
    wrong = pip(tmp_path, index, "tls-lib", "pip-host", "--cert", str(ca_file))
    assert wrong.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.stdout + wrong.stderr
    assert "mismatch" in wrong.stdout + wrong.stderr or "match" in wrong.stdout + wrong.stderr
    refused = _npm(tmp_path, "npm-host", registry, ca_file)
    assert refused.returncode != 0
    assert "ERR_TLS_CERT_ALTNAME_INVALID" in refused.stdout + refused.stderr

    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert("127.0.0.1", "localhost", not_before=now - datetime.timedelta(days=30),
                            not_after=now - datetime.timedelta(days=1))
    _install(expired, tmp_path)
    _wait_for(proxy.port, expired)
    old = pip(tmp_path, index, "tls-lib", "pip-expired", "--cert", str(ca_file))
    assert old.returncode != 0
    assert "certificate has expired" in old.stdout + old.stderr
    stale = _npm(tmp_path, "npm-expired", registry, ca_file)
    assert stale.returncode != 0
    assert "CERT_HAS_EXPIRED" in stale.stdout + stale.stderr
