"""Real npm and pip installing through ``stockade serve`` with ``attestations: require``.

The upstream is a server on 127.0.0.1 serving the real registries' metadata from
the shared fixtures (``../shared/fixtures/{npm,pypi}``: the attestations document of
@playwright/cli 0.1.1, PEP 740 provenance of sampleproject 4.0.0, the wrappy
packument, the poetry-core project page), with artifact URLs pointed at itself,
and the real artifact bytes those attestations sign. The bytes are fetched once
(``npm pack``, ``pip download``) into pytest's cache folder and checked against the
fixtures' published digests before use; where they cannot be fetched (no network)
the tests skip, saying so.

- an attested package installs: sigstore verifies its provenance under the pinned
  production trusted root;
- a package without attestations is refused, and the client prints why: npm from the
  tarball's 403, pip from the file download's 403. Its bytes are never fetched.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from testbed.fakes.threaded import ThreadedServer
from testbed.npm_registry import npm_env, run, tool
from tests.unit.proxy.provenance.shared import fixture

# real npm and pip processes against a real stockade process, with a sigstore
# verification: past pytest's 120 s default on a loaded two-core machine; the bound
# stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PLAYWRIGHT_TGZ = "playwright-cli-0.1.1.tgz"
PLAYWRIGHT_INTEGRITY = ("sha512-9k11ZfDwAfMVDDIuEVW1Wvs8SoDNXIY1dNQ+9C9/SS8ZmElkcxesu5eo"
                        "L7vNa96ntibUGaq1TM2qQoqvdl/I9g==")
SAMPLE_SDIST = "sampleproject-4.0.0.tar.gz"
SAMPLE_SHA256 = "0ace7980f82c5815ede4cd7bf9f6693684cec2ae47b9b7ade9add533b8627c6b"
FETCH_TIMEOUT_S = 300


# -- the real artifacts, fetched once ----------------------------------------------------

def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _fetch_once(folder: Path, filename: str, command: list[str], env: dict[str, str],
                matches: Any) -> bytes:
    """The file from the cache folder, else fetched by ``command`` into it; its digest
    checked against the fixture's. Skips when it cannot be had."""
    path = folder / filename
    if path.is_file() and matches(path.read_bytes()):
        return path.read_bytes()
    try:
        proc = subprocess.run(command, cwd=folder, env=env, capture_output=True,  # noqa: S603
                              text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the real {filename} could not be fetched ({exc}); these tests need "
                    "its bytes once, from the network, and then keep them in pytest's cache")
    if proc.returncode != 0 or not path.is_file():
        said = [line for line in proc.stderr.strip().splitlines()
                if line.strip() and "complete log" not in line]
        last = (said or [""])[-1][:200]
        pytest.skip(f"the real {filename} could not be fetched (`{' '.join(command[:4])}` "
                    f"exited {proc.returncode}: {last}); these tests need its bytes once, "
                    "from the network, and then keep them in pytest's cache")
    data = path.read_bytes()
    # a fetched file that is not the one the fixtures sign is a failure, not a skip
    assert matches(data), f"the fetched {filename} is not the file the fixtures sign"
    return data


@dataclass(frozen=True)
class Artifacts:
    playwright: bytes = b""  # empty: not needed by the test
    sampleproject: bytes = b""


@pytest.fixture(scope="module")
def cache_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Path:
    cache = getattr(request.config, "cache", None)  # None: pytest's cache is turned off
    if cache is None:
        return tmp_path_factory.mktemp("provenance-artifacts")
    return Path(cache.mkdir("stockade-provenance-artifacts"))


@pytest.fixture(scope="module")
def playwright_tgz(cache_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    home = tmp_path_factory.mktemp("fetch-home")
    return _fetch_once(
        cache_folder, PLAYWRIGHT_TGZ,
        [tool("npm"), "pack", "@playwright/cli@0.1.1", "--cache", str(home / "npm-cache"),
         "--fetch-retries", "1"],
        {**os.environ, "npm_config_update_notifier": "false"},
        lambda data: _sri(data) == PLAYWRIGHT_INTEGRITY)


@pytest.fixture(scope="module")
def sample_sdist(cache_folder: Path) -> bytes:
    return _fetch_once(
        cache_folder, SAMPLE_SDIST,
        [sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--no-binary",
         ":all:", "--disable-pip-version-check", "--no-cache-dir", "--retries", "1",
         "-d", ".", "sampleproject==4.0.0"],
        {k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        lambda data: hashlib.sha256(data).hexdigest() == SAMPLE_SHA256)


# -- the upstream: fixture metadata and the real bytes ------------------------------------

@dataclass
class Upstream:
    """npm under ``/npm/``, a PEP 691 index under ``/pypi/``; records every path asked."""

    artifacts: Artifacts
    asked: list[str] = field(default_factory=list)
    server: ThreadedServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return self.server.url(path)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path  # decoded: /npm/@playwright%2fcli is /npm/@playwright/cli
        self.asked.append(path)
        found = self._routes().get(path)
        if found is None:
            return web.json_response({"error": "not found"}, status=404)
        ctype, body = found
        return web.Response(body=body, content_type=ctype)

    def _routes(self) -> dict[str, tuple[str, bytes]]:
        json_type = "application/json"
        simple = "application/vnd.pypi.simple.v1+json"
        return {
            "/npm/@playwright/cli": (json_type, _json(self._playwright())),
            "/npm/-/npm/v1/attestations/@playwright/cli@0.1.1":
                (json_type, fixture("npm/attestations/playwright-cli-0.1.1.json").read_bytes()),
            "/npm/@playwright/cli/-/cli-0.1.1.tgz":
                ("application/octet-stream", self.artifacts.playwright),
            "/npm/-/npm/v1/keys": (json_type, fixture("npm/registry-keys.json").read_bytes()),
            "/npm/wrappy": (json_type, _json(self._wrappy())),
            "/pypi/simple/sampleproject/": (simple, _json(self._sampleproject())),
            f"/pypi/integrity/sampleproject/4.0.0/{SAMPLE_SDIST}/provenance":
                ("application/vnd.pypi.integrity.v1+json",
                 fixture(f"pypi/provenance/{SAMPLE_SDIST}.provenance.json").read_bytes()),
            f"/pypi/files/{SAMPLE_SDIST}": ("application/octet-stream",
                                            self.artifacts.sampleproject),
            "/pypi/simple/poetry-core/": (simple, _json(self._poetry_core())),
        }

    def _playwright(self) -> dict[str, Any]:
        """A packument for @playwright/cli 0.1.1 around the fixture's dist facts (its
        dependencies left out: the test installs this one package)."""
        manifest = {
            "name": "@playwright/cli", "version": "0.1.1", "license": "Apache-2.0",
            "repository": {"type": "git",
                           "url": "git+https://github.com/microsoft/playwright-cli.git"},
            "dist": {
                "integrity": PLAYWRIGHT_INTEGRITY,
                "tarball": self.url("/npm/@playwright/cli/-/cli-0.1.1.tgz"),
                "attestations": {
                    "url": self.url("/npm/-/npm/v1/attestations/@playwright%2fcli@0.1.1"),
                    "provenance": {"predicateType": "https://slsa.dev/provenance/v1"}},
            },
        }
        return {"_id": "@playwright/cli", "name": "@playwright/cli",
                "dist-tags": {"latest": "0.1.1"}, "versions": {"0.1.1": manifest},
                "time": {"created": "2026-01-20T00:00:00.000Z",
                         "modified": "2026-01-20T00:00:00.000Z",
                         "0.1.1": "2026-01-20T00:00:00.000Z"}}

    def _wrappy(self) -> dict[str, Any]:
        """The fixture packument, its tarballs pointed here."""
        doc: dict[str, Any] = json.loads(fixture("npm/packuments/wrappy.full.json").read_text())
        for version, manifest in doc["versions"].items():
            manifest["dist"]["tarball"] = self.url(f"/npm/wrappy/-/wrappy-{version}.tgz")
        return doc

    def _sampleproject(self) -> dict[str, Any]:
        """sampleproject's page as PyPI serves it: the sdist with its provenance URL."""
        return {
            "meta": {"api-version": "1.4", "_last-serial": 0}, "name": "sampleproject",
            "versions": ["4.0.0"],
            "files": [{
                "filename": SAMPLE_SDIST, "url": self.url(f"/pypi/files/{SAMPLE_SDIST}"),
                "hashes": {"sha256": SAMPLE_SHA256}, "requires-python": ">=3.9",
                "size": len(self.artifacts.sampleproject),
                "upload-time": "2024-06-11T00:00:00.000000Z", "yanked": False,
                "core-metadata": False, "data-dist-info-metadata": False,
                "provenance": self.url(
                    f"/pypi/integrity/sampleproject/4.0.0/{SAMPLE_SDIST}/provenance"),
            }],
        }

    def _poetry_core(self) -> dict[str, Any]:
        """The fixture page, pruned to 1.5.0 (whose files publish no provenance), its
        file URLs pointed here."""
        doc: dict[str, Any] = copy.deepcopy(
            json.loads(fixture("pypi/simple/poetry-core.json").read_text()))
        doc["files"] = [dict(f, url=self.url(f"/pypi/files/{f['filename']}"))
                        for f in doc["files"] if "-1.5.0" in f["filename"]]
        doc["versions"] = ["1.5.0"]
        assert doc["files"] and all(f["provenance"] is None for f in doc["files"])
        return doc


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _serve(artifacts: Artifacts) -> Iterator[Upstream]:
    fake = Upstream(artifacts)
    fake.server = ThreadedServer(fake.app).start()
    yield fake
    fake.server.stop()


@pytest.fixture
def npm_upstream(playwright_tgz: bytes) -> Iterator[Upstream]:
    yield from _serve(Artifacts(playwright=playwright_tgz))


@pytest.fixture
def pypi_upstream(sample_sdist: bytes) -> Iterator[Upstream]:
    yield from _serve(Artifacts(sampleproject=sample_sdist))


def _proxy(tmp_path: Path, upstream: Upstream, proxy_process: Any) -> Any:
    """``stockade serve`` before ``upstream``, requiring verified attestations."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  typosquat: {enabled: false}\n"
        "  provenance:\n    signatures: verify\n    attestations: require\n"
        f"    trusted_root: {fixture('sigstore/trusted_root.production.json')}\n"
        f"    npm_keys: {fixture('npm/registry-keys.json')}\n")
    return proxy_process({
        "storage": {"path": str(tmp_path / "data")},
        "npm": {"upstreams": [{"name": "npmjs", "url": upstream.url("/npm/"), "retries": 0}]},
        "pypi": {"upstreams": [{"name": "pypi", "url": upstream.url("/pypi/simple/"),
                                "retries": 0}]},
        "maven": {"upstreams": []},
        "policy": {"file": str(policy)},
    })


# -- npm ---------------------------------------------------------------------------------

def _npm_install(tmp_path: Path, registry: str, spec: str, name: str
                 ) -> subprocess.CompletedProcess[str]:
    work = tmp_path / name
    work.mkdir()
    (work / "package.json").write_text(json.dumps({"name": f"{name}-app", "version": "1.0.0",
                                                   "private": True}))
    userconfig = tmp_path / f"{name}.npmrc"
    userconfig.write_text(f"registry={registry}\naudit=false\nfund=false\n")
    return run([tool("npm"), "install", spec, "--ignore-scripts", "--no-audit", "--no-fund",
                "--userconfig", str(userconfig), "--cache", str(tmp_path / f"{name}-cache")],
               work, npm_env(tmp_path / f"{name}-home"), check=False)


def test_npm_installs_an_attested_package_and_refuses_one_without(
        tmp_path: Path, npm_upstream: Upstream, proxy_process: Any) -> None:
    upstream = npm_upstream
    proxy = _proxy(tmp_path, upstream, proxy_process)
    registry = f"{proxy.url}/npm/"

    result = _npm_install(tmp_path, registry, "@playwright/cli@0.1.1", "attested")
    assert result.returncode == 0, result.stdout + result.stderr
    installed = tmp_path / "attested" / "node_modules" / "@playwright" / "cli" / "package.json"
    assert json.loads(installed.read_text())["version"] == "0.1.1"
    assert "/npm/-/npm/v1/attestations/@playwright/cli@0.1.1" in upstream.asked
    metrics = proxy_metrics(proxy)
    assert 'ecosystem="npm",kind="attestation",result="verified"' in metrics

    result = _npm_install(tmp_path, registry, "wrappy", "unattested")
    assert result.returncode != 0, result.stdout
    assert ("Blocked by stockade: wrappy 1.0.2 has no provenance, and the policy requires "
            "it (attestations: require) (rule provenance)") in result.stderr, result.stderr
    assert not [p for p in upstream.asked if p.endswith(".tgz") and "wrappy" in p]


# -- pip ---------------------------------------------------------------------------------

def _pip_install(tmp_path: Path, index: str, spec: str, name: str
                 ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    # an sdist: built with this interpreter's setuptools, so no build dependency is
    # asked of the index (it serves only what the test put there)
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir",
         "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
         "--target", str(tmp_path / name), "--index-url", index, spec],
        capture_output=True, text=True, timeout=600, env=env, check=False)


def test_pip_installs_an_attested_package_and_refuses_one_without(
        tmp_path: Path, pypi_upstream: Upstream, proxy_process: Any) -> None:
    pytest.importorskip("setuptools", reason="the sdist is built without build isolation, "
                        "with this interpreter's setuptools")
    upstream = pypi_upstream
    proxy = _proxy(tmp_path, upstream, proxy_process)
    index = f"{proxy.url}/pypi/simple/"

    result = _pip_install(tmp_path, index, "sampleproject==4.0.0", "attested")
    assert result.returncode == 0, result.stdout + result.stderr
    assert list((tmp_path / "attested").glob("sampleproject-4.0.0.dist-info")), result.stdout
    assert f"/pypi/integrity/sampleproject/4.0.0/{SAMPLE_SDIST}/provenance" in upstream.asked
    assert 'ecosystem="pypi",kind="attestation",result="verified"' in proxy_metrics(proxy)

    result = _pip_install(tmp_path, index, "poetry-core==1.5.0", "unattested")
    assert result.returncode != 0, result.stdout
    out = result.stdout + result.stderr
    assert "403" in out, out
    assert ("Blocked by stockade: poetry-core 1.5.0 has no provenance, and the policy "
            "requires it (attestations: require) (rule provenance)") in out, out
    assert not [p for p in upstream.asked if p.startswith("/pypi/files/poetry_core")]


def proxy_metrics(proxy: Any) -> str:
    with urllib.request.urlopen(proxy.url + "/metrics", timeout=30) as resp:  # noqa: S310
        text: str = resp.read().decode()
    return "\n".join(line for line in text.splitlines()
                     if line.startswith("stockade_provenance_total{") and
                     not line.endswith(" 0.0"))
