"""Real npm and pnpm, as processes, installing through ``stockade serve``.

The upstream is a real registry server (Verdaccio, no uplinks) on 127.0.0.1,
into which the test publishes a small dependency tree with ``npm publish``:
scoped and unscoped names, semver ranges, a transitive dependency.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.npm_registry import Verdaccio, npm_env, run, tool

# npm, pnpm and yarn installs against Verdaccio: past pytest's 120 s default on a
# loaded two-core machine; the bound stops a hang, it does not time the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PACKAGES: list[tuple[dict[str, Any], dict[str, str]]] = [
    ({"name": "e2e-leaf", "version": "1.0.0"}, {}),
    ({"name": "e2e-leaf", "version": "1.1.0"}, {}),
    ({"name": "@e2e/scoped", "version": "1.0.0", "dependencies": {"e2e-leaf": "^1.0.0"}}, {}),
    ({"name": "e2e-mid", "version": "2.0.0",
      "dependencies": {"@e2e/scoped": "^1.0.0", "e2e-leaf": "~1.1.0"}}, {}),
    ({"name": "e2e-other", "version": "0.3.0"}, {}),
]
PROJECT = {"name": "e2e-project", "version": "1.0.0", "private": True,
           "dependencies": {"e2e-mid": "^2.0.0", "e2e-other": "0.3.0"}}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdaccio]:
    tool("verdaccio")
    root = tmp_path_factory.mktemp("verdaccio")
    server = Verdaccio(root / "server").start()
    try:
        for manifest, files in PACKAGES:
            manifest = {"main": "index.js", "license": "MIT", **manifest}
            body = f"module.exports = {json.dumps(manifest['name'])};\n"
            server.publish(root, manifest, {"index.js": body, **files})
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream(registry: Verdaccio) -> Verdaccio:
    if registry.proc is None:
        registry.start()
    return registry


def proxy_config(tmp_path: Path, registry: Verdaccio) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "data")},
        "pypi": {"upstreams": []}, "maven": {"upstreams": []},
        "npm": {"upstreams": [{"name": "npmjs", "url": registry.url, "retries": 0}],
                "cache": {"metadata_ttl_s": 1}},
    }


def project(tmp_path: Path, name: str, registry_url: str) -> tuple[Path, dict[str, str], Path]:
    """A project folder, an environment and a user config pointing npm at ``registry_url``."""
    work = tmp_path / name
    work.mkdir()
    (work / "package.json").write_text(json.dumps(PROJECT))
    env = npm_env(tmp_path / f"{name}-home")
    userconfig = tmp_path / f"{name}.npmrc"
    userconfig.write_text(f"registry={registry_url}\naudit=false\nfund=false\n")
    return work, env, userconfig


def npm(work: Path, env: dict[str, str], userconfig: Path, cache: Path, *args: str,
        check: bool = True) -> Any:
    return run([tool("npm"), *args, "--userconfig", str(userconfig), "--cache", str(cache),
                "--no-audit", "--no-fund"], work, env, check=check)


def installed(work: Path) -> dict[str, str]:
    found = {}
    for manifest in (work / "node_modules").glob("**/package.json"):
        data = json.loads(manifest.read_text())
        if isinstance(data, dict) and "name" in data and manifest.parent.name != "node_modules":
            found[data["name"]] = data["version"]
    return found


def test_npm_install_then_ci_from_cache_then_upstream_down(
    tmp_path: Path, upstream: Verdaccio, proxy_process: Any
) -> None:
    proxy = proxy_process(proxy_config(tmp_path, upstream))
    registry_url = f"{proxy.url}/npm/"
    work, env, userconfig = project(tmp_path, "first", registry_url)
    npm(work, env, userconfig, tmp_path / "cache1", "install")
    assert installed(work) == {"e2e-mid": "2.0.0", "e2e-other": "0.3.0",
                               "@e2e/scoped": "1.0.0", "e2e-leaf": "1.1.0"}
    lock = json.loads((work / "package-lock.json").read_text())
    resolved = [p["resolved"] for k, p in lock["packages"].items() if k]
    assert resolved and all(r.startswith(registry_url) for r in resolved), resolved
    assert any("/npm/@e2e/scoped/-/scoped-1.0.0.tgz" in r for r in resolved)
    fetched = len(upstream.tarball_gets())
    assert fetched >= 4

    # A second machine: fresh npm cache, the same lockfile: nothing new upstream.
    second = tmp_path / "second"
    second.mkdir()
    for name in ("package.json", "package-lock.json"):
        (second / name).write_text((work / name).read_text())
    npm(second, env, userconfig, tmp_path / "cache2", "ci")
    assert installed(second) == installed(work)
    assert len(upstream.tarball_gets()) == fetched

    # The upstream goes away: what was installed before installs again.
    upstream.stop()
    third = tmp_path / "third"
    third.mkdir()
    for name in ("package.json", "package-lock.json"):
        (third / name).write_text((work / name).read_text())
    npm(third, env, userconfig, tmp_path / "cache3", "ci")
    assert installed(third) == installed(work)
    fresh, fenv, fconfig = project(tmp_path, "fresh", registry_url)
    npm(fresh, fenv, fconfig, tmp_path / "cache4", "install")
    assert installed(fresh) == installed(work)


def _served_paths(log: Path) -> set[str]:
    """The paths of the access lines in the server's JSON log."""
    lines = (json.loads(line) for line in log.read_text().splitlines()
             if line.startswith("{"))
    return {line["path"] for line in lines if line.get("logger") == "stockade.access"}


def test_pnpm_install(tmp_path: Path, upstream: Verdaccio, proxy_process: Any) -> None:
    proxy = proxy_process(proxy_config(tmp_path, upstream))
    work, env, _ = project(tmp_path, "pnpm", f"{proxy.url}/npm/")
    (work / ".npmrc").write_text(f"registry={proxy.url}/npm/\n")
    run([tool("pnpm"), "install", "--store-dir", str(tmp_path / "store"),
         "--config.confirmModulesPurge=false"], work, env)
    mid = work / "node_modules" / "e2e-mid" / "package.json"
    assert json.loads(mid.read_text())["version"] == "2.0.0"
    assert (work / "node_modules" / ".pnpm" / "@e2e+scoped@1.0.0").is_dir()
    served = _served_paths(proxy.log_path)
    for path in ("/npm/e2e-mid", "/npm/@e2e/scoped/-/scoped-1.0.0.tgz",
                 "/npm/e2e-leaf/-/e2e-leaf-1.1.0.tgz"):
        assert path in served, path


def test_npm_view_and_ping(tmp_path: Path, upstream: Verdaccio, proxy_process: Any) -> None:
    proxy = proxy_process(proxy_config(tmp_path, upstream))
    work, env, userconfig = project(tmp_path, "view", f"{proxy.url}/npm/")
    out = npm(work, env, userconfig, tmp_path / "cache", "view", "@e2e/scoped", "--json")
    info = json.loads(out.stdout)
    assert info["name"] == "@e2e/scoped"
    assert info["dist"]["tarball"] == f"{proxy.url}/npm/@e2e/scoped/-/scoped-1.0.0.tgz"
    assert npm(work, env, userconfig, tmp_path / "cache", "ping").returncode == 0
    missing = npm(work, env, userconfig, tmp_path / "cache", "view", "e2e-absent", check=False)
    assert missing.returncode != 0
    assert "404" in missing.stderr


def test_yarn_berry_install(tmp_path: Path, upstream: Verdaccio, proxy_process: Any) -> None:
    proxy = proxy_process(proxy_config(tmp_path, upstream))
    work, env, _ = project(tmp_path, "yarn", f"{proxy.url}/npm/")
    (work / ".yarnrc.yml").write_text(
        f'npmRegistryServer: "{proxy.url}/npm/"\n'
        'unsafeHttpWhitelist: ["127.0.0.1"]\n'
        "nodeLinker: node-modules\n"
        "enableGlobalCache: false\n"
        "enableTelemetry: false\n"
        # Yarn 4.10+ holds back versions younger than a day; these were published just now.
        "npmMinimalAgeGate: 0\n"
    )
    (work / "yarn.lock").write_text("")
    env["YARN_ENABLE_IMMUTABLE_INSTALLS"] = "false"  # CI=true would forbid a new lockfile
    run([tool("yarn"), "install"], work, env)
    mid = work / "node_modules" / "e2e-mid" / "package.json"
    assert json.loads(mid.read_text())["version"] == "2.0.0"
    assert (work / "node_modules" / "@e2e" / "scoped" / "package.json").is_file()
    lock = (work / "yarn.lock").read_text()
    assert '"@e2e/scoped@npm:^1.0.0"' in lock
    served = _served_paths(proxy.log_path)
    # yarn builds the tarball URL itself, with the scope escaped
    assert ("/npm/@e2e%2fscoped/-/scoped-1.0.0.tgz" in served
            or "/npm/@e2e/scoped/-/scoped-1.0.0.tgz" in served), served


def test_npm_shows_refusals_and_resolves_around_a_refused_version(
    tmp_path: Path, upstream: Verdaccio, proxy_process: Any
) -> None:
    # First a lockfile resolved before the policy refused e2e-leaf 1.1.0.
    (tmp_path / "before").mkdir()
    plain = proxy_process(proxy_config(tmp_path / "before", upstream))
    work, env, userconfig = project(tmp_path, "locked", f"{plain.url}/npm/")
    npm(work, env, userconfig, tmp_path / "cache0", "install")
    lock = (work / "package-lock.json").read_text()
    plain.stop()

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  lists:\n    deny:\n"
        "      - {ecosystem: npm, name: e2e-other, reason: 'test: known bad', owner: e2e}\n"
        "      - {ecosystem: npm, name: e2e-leaf, versions: '1.1.0', reason: 'test: broken',"
        " owner: e2e}\n")
    proxy = proxy_process({**proxy_config(tmp_path, upstream), "policy": {"file": str(policy)}})
    registry_url = f"{proxy.url}/npm/"

    # A refused name: npm prints the reason from the JSON error body.
    fresh, fenv, fconfig = project(tmp_path, "refused", registry_url)
    result = npm(fresh, fenv, fconfig, tmp_path / "cache1", "install", check=False)
    assert result.returncode != 0
    assert "Blocked by stockade" in result.stderr
    assert "test: known bad" in result.stderr

    # The newest e2e-leaf is refused: ~1.1.0 has nothing left, ^1.0.0 resolves to 1.0.0.
    leaf, lenv, lconfig = project(tmp_path, "leaf", registry_url)
    (leaf / "package.json").write_text(json.dumps(
        {"name": "leaf-user", "version": "1.0.0", "dependencies": {"e2e-leaf": "^1.0.0"}}))
    npm(leaf, lenv, lconfig, tmp_path / "cache2", "install")
    assert installed(leaf) == {"e2e-leaf": "1.0.0"}

    # npm ci from the old lockfile asks for the refused tarball and shows why.
    ci = tmp_path / "ci"
    ci.mkdir()
    (ci / "package.json").write_text((work / "package.json").read_text())
    (ci / "package-lock.json").write_text(lock.replace(plain.url, proxy.url))
    result = npm(ci, env, userconfig, tmp_path / "cache3", "ci", "--registry", registry_url,
                 check=False)
    assert result.returncode != 0
    assert "Blocked by stockade" in result.stderr
