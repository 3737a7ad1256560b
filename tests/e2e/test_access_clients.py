"""Real clients with tokens: pip, uv, npm, pnpm, yarn and mvn through ``stockade serve``.

Tokens are made with ``stockade token create``, and each client is given its
token the way its users configure it: pip and uv in the index URL, npm and
pnpm as ``_authToken`` in ``.npmrc``, yarn as ``npmAuthToken``, Maven as a
``<server>`` in settings.xml. Anonymous requests are refused for each route
group. A valid token installs; a wrong one gets a 401 the client prints; the
payments team's required tag refuses a package the tools team gets. At the
end no token appears in the log, the decision log, the metrics or a response.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from testbed.npm_registry import Verdaccio, npm_env, run, tool
from tests.e2e.conftest import stockade_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

WRONG = "stk_0badc0de_" + "x" * 43  # the form of a token, never issued


def make_token(tokens: Path, name: str, team: str | None = None, *roles: str) -> str:
    """A token from the real command, as an operator makes one."""
    cmd = [*stockade_command(), "token", "create", name, "--file", str(tokens)]
    if team:
        cmd += ["--team", team]
    for role in roles:
        cmd += ["--role", role]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)  # noqa: S603
    token = out.stdout.strip()
    assert token.startswith("stk_")
    assert token not in out.stderr
    return token


class Tokens:
    def __init__(self, root: Path) -> None:
        self.file = root / "tokens.yaml"
        self.tools = make_token(self.file, "tools-ci", "tools")
        self.payments = make_token(self.file, "pay-ci", "payments")
        self.metrics = make_token(self.file, "prom", None, "metrics")

    def all(self) -> list[str]:
        return [self.tools, self.payments, self.metrics, WRONG]


def team_policy(root: Path, ecosystem: str, reviewed: list[str]) -> Path:
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "rules": {"lists": {"allow": [
            {"ecosystem": ecosystem, "name": n, "reason": "reviewed", "tags": ["pci-reviewed"]}
            for n in reviewed]}},
        "teams": {"payments": {"required_tags": ["pci-reviewed"]}},
    }))
    return policy


def access_config(tmp_path: Path, tokens: Tokens, policy: Path) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "data")},
        "policy": {"file": str(policy)},
        "auth": {"tokens": str(tokens.file),
                 "anonymous": {"pypi": False, "npm": False, "maven": False,
                               "metrics": False, "explain": False}},
        "pypi": {"upstreams": []}, "npm": {"upstreams": []}, "maven": {"upstreams": []},
    }


def assert_no_secret(proxy: Any, tmp_path: Path, tokens: Tokens, *outputs: str) -> None:
    """No token, nor its secret part, in the log, decision log, metrics or outputs."""
    request = urllib.request.Request(proxy.url + "/metrics",  # noqa: S310
                                     headers={"Authorization": f"Bearer {tokens.metrics}"})
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
        metrics = resp.read().decode()
    assert "stockade_auth_refusals_total" in metrics
    decisions = tmp_path / "data" / "decisions.jsonl"
    texts = {"log": proxy.log_path.read_text(), "metrics": metrics,
             "decisions": decisions.read_text() if decisions.exists() else "",
             "tokens file": tokens.file.read_text()}
    texts.update({f"output {i}": o for i, o in enumerate(outputs)})
    for token in tokens.all():
        for where, text in texts.items():
            assert token not in text, where
            assert token.split("_", 2)[2] not in text, where


def access_records(proxy: Any) -> list[dict[str, Any]]:
    out = []
    for line in proxy.log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == "stockade.access":
            out.append(record)
    return out


# -- PyPI: pip and uv ------------------------------------------------------------------

@pytest.fixture
def pypi_upstream() -> Iterator[ThreadedServer]:
    index = FakePyPI()
    index.add_wheel("acc-lib", "1.0")
    index.add_wheel("acc-util", "1.0")
    server = ThreadedServer(index.app).start()
    yield server
    server.stop()


def _env(tmp_path: Path) -> dict[str, str]:
    # CA bundles from the environment would override pip's --cert (requests reads
    # REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE over the session's setting)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))
           and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["NETRC"] = str(tmp_path / "no-netrc")
    return env


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)  # noqa: S603
    return path / "bin" / "python"


def pip(tmp_path: Path, index: str, req: str, name: str,
        *extra: str) -> subprocess.CompletedProcess[str]:
    python = _venv(tmp_path / name)
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--isolated",
         "--no-input", "--no-cache-dir", "--disable-pip-version-check", "--index-url", index,
         *extra, req],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )


def uv(tmp_path: Path, index: str, req: str, name: str) -> subprocess.CompletedProcess[str]:
    found = Path(sys.executable).parent / "uv"
    if not found.exists():
        pytest.skip("uv is not installed (pip install '.[test]' installs it)")
    python = _venv(tmp_path / name)
    return subprocess.run(  # noqa: S603
        [str(found), "pip", "install", "--no-config", "--no-cache", "--python", str(python),
         "--index-url", index, req],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )


def test_pip_and_uv_with_tokens_and_teams(tmp_path: Path, pypi_upstream: ThreadedServer,
                                          proxy_process: Any) -> None:
    tokens = Tokens(tmp_path)
    config = access_config(tmp_path, tokens, team_policy(tmp_path, "pypi", ["acc-lib"]))
    config["pypi"] = {"upstreams": [{"name": "pypi", "url": pypi_upstream.url("/simple/"),
                                     "retries": 0}]}
    proxy = proxy_process(config)
    host = proxy.url.removeprefix("http://")

    def index(token: str) -> str:
        return f"http://__token__:{token}@{host}/pypi/simple/"

    outputs = []
    ok = pip(tmp_path, index(tokens.tools), "acc-util", "pip-ok")
    outputs.append(ok.stdout + ok.stderr)
    assert ok.returncode == 0, outputs[-1]
    wrong = pip(tmp_path, index(WRONG), "acc-util", "pip-wrong")
    outputs.append(wrong.stdout + wrong.stderr)
    assert wrong.returncode != 0
    assert "401" in outputs[-1], outputs[-1]
    # pip never prints why an index page failed (as with refusals, see the README);
    # with credentials it does print their 401, above
    anonymous = pip(tmp_path, f"{proxy.url}/pypi/simple/", "acc-util", "pip-anon")
    outputs.append(anonymous.stdout + anonymous.stderr)
    assert anonymous.returncode != 0
    assert any(r["path"] == "/pypi/simple/acc-util/" and r["status"] == 401
               and r["identity"] is None for r in access_records(proxy))
    # the payments team requires pci-reviewed: acc-util is refused, with the reason
    refused = pip(tmp_path, index(tokens.payments), "acc-util", "pip-pay")
    outputs.append(refused.stdout + refused.stderr)
    assert refused.returncode != 0
    assert "Blocked by stockade" in outputs[-1], outputs[-1]
    assert "pci-reviewed" in outputs[-1]
    reviewed = pip(tmp_path, index(tokens.payments), "acc-lib", "pip-pay-lib")
    outputs.append(reviewed.stdout + reviewed.stderr)
    assert reviewed.returncode == 0, outputs[-1]

    ok = uv(tmp_path, index(tokens.tools), "acc-util", "uv-ok")
    outputs.append(ok.stdout + ok.stderr)
    assert ok.returncode == 0, outputs[-1]
    wrong = uv(tmp_path, index(WRONG), "acc-util", "uv-wrong")
    outputs.append(wrong.stdout + wrong.stderr)
    assert wrong.returncode != 0
    assert "401" in outputs[-1], outputs[-1]
    refused = uv(tmp_path, index(tokens.payments), "acc-util", "uv-pay")
    outputs.append(refused.stdout + refused.stderr)
    assert refused.returncode != 0
    assert "Blocked by stockade" in outputs[-1] or "403" in outputs[-1], outputs[-1]

    records = access_records(proxy)
    assert any(r["identity"] == "tools-ci" and r["team"] == "tools" for r in records)
    assert any(r["identity"] == "pay-ci" and r["status"] == 403 for r in records)
    assert any(r["identity"] is None and r["status"] == 401 for r in records)
    decisions = (tmp_path / "data" / "decisions.jsonl").read_text()
    assert '"identity":"pay-ci"' in decisions
    assert '"team":"payments"' in decisions
    assert_no_secret(proxy, tmp_path, tokens, *outputs)


# -- npm, pnpm and yarn -------------------------------------------------------------------

NPM_PACKAGES = [{"name": "acc-leaf", "version": "1.0.0"},
                {"name": "acc-other", "version": "1.0.0"}]
NPM_PROJECT = {"name": "acc-project", "version": "1.0.0", "private": True,
               "dependencies": {"acc-leaf": "^1.0.0"}}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdaccio]:
    tool("verdaccio")
    root = tmp_path_factory.mktemp("verdaccio")
    server = Verdaccio(root / "server").start()
    try:
        for manifest in NPM_PACKAGES:
            manifest = {"main": "index.js", "license": "MIT", **manifest}
            server.publish(root, manifest, {"index.js": "module.exports = 1;\n"})
        yield server
    finally:
        server.stop()


def _npm_project(tmp_path: Path, name: str, deps: dict[str, str]) -> tuple[Path, dict[str, str]]:
    work = tmp_path / name
    work.mkdir()
    (work / "package.json").write_text(json.dumps({**NPM_PROJECT, "dependencies": deps}))
    return work, npm_env(tmp_path / f"{name}-home")


def _npmrc(path: Path, proxy_url: str, token: str) -> Path:
    registry = f"{proxy_url}/npm/"
    path.write_text(f"registry={registry}\n//{registry.split('://', 1)[1]}:_authToken={token}\n"
                    "audit=false\nfund=false\n")
    return path


def npm_install(tmp_path: Path, proxy_url: str, token: str, name: str,
                deps: dict[str, str]) -> subprocess.CompletedProcess[str]:
    work, env = _npm_project(tmp_path, name, deps)
    userconfig = _npmrc(tmp_path / f"{name}.npmrc", proxy_url, token)
    return run([tool("npm"), "install", "--userconfig", str(userconfig), "--cache",
                str(tmp_path / f"{name}-cache"), "--no-audit", "--no-fund"], work, env,
               check=False)


def test_npm_pnpm_yarn_with_tokens_and_teams(tmp_path: Path, registry: Verdaccio,
                                             proxy_process: Any) -> None:
    tokens = Tokens(tmp_path)
    config = access_config(tmp_path, tokens, team_policy(tmp_path, "npm", ["acc-leaf"]))
    config["npm"] = {"upstreams": [{"name": "npmjs", "url": registry.url, "retries": 0}]}
    proxy = proxy_process(config)
    outputs = []

    def out(proc: subprocess.CompletedProcess[str]) -> str:
        outputs.append(proc.stdout + proc.stderr)
        return outputs[-1]

    ok = npm_install(tmp_path, proxy.url, tokens.tools, "npm-ok", {"acc-other": "^1.0.0"})
    assert ok.returncode == 0, out(ok)
    wrong = npm_install(tmp_path, proxy.url, WRONG, "npm-wrong", {"acc-leaf": "^1.0.0"})
    assert wrong.returncode != 0
    assert "E401" in out(wrong), outputs[-1]
    refused = npm_install(tmp_path, proxy.url, tokens.payments, "npm-pay",
                          {"acc-other": "^1.0.0"})
    assert refused.returncode != 0
    assert "Blocked by stockade" in out(refused), outputs[-1]
    assert "pci-reviewed" in outputs[-1]
    reviewed = npm_install(tmp_path, proxy.url, tokens.payments, "npm-pay-ok",
                           {"acc-leaf": "^1.0.0"})
    assert reviewed.returncode == 0, out(reviewed)

    # pnpm reads the project's .npmrc
    for token, name in ((tokens.tools, "pnpm-ok"), (WRONG, "pnpm-wrong")):
        work, env = _npm_project(tmp_path, name, {"acc-other": "^1.0.0"})
        _npmrc(work / ".npmrc", proxy.url, token)
        proc = run([tool("pnpm"), "install", "--store-dir", str(tmp_path / f"{name}-store"),
                    "--config.confirmModulesPurge=false"], work, env, check=False)
        text = out(proc)
        if token == WRONG:
            assert proc.returncode != 0
            assert "401" in text, text
        else:
            assert proc.returncode == 0, text
            assert (work / "node_modules" / "acc-other" / "package.json").is_file()

    # yarn berry: npmAuthToken, sent with every request
    for token, name in ((tokens.tools, "yarn-ok"), (WRONG, "yarn-wrong")):
        work, env = _npm_project(tmp_path, name, {"acc-other": "^1.0.0"})
        (work / ".yarnrc.yml").write_text(
            f'npmRegistryServer: "{proxy.url}/npm/"\n'
            f'npmAuthToken: "{token}"\nnpmAlwaysAuth: true\n'
            'unsafeHttpWhitelist: ["127.0.0.1"]\nnodeLinker: node-modules\n'
            "enableGlobalCache: false\nenableTelemetry: false\nnpmMinimalAgeGate: 0\n")
        (work / "yarn.lock").write_text("")
        env["YARN_ENABLE_IMMUTABLE_INSTALLS"] = "false"
        proc = run([tool("yarn"), "install"], work, env, check=False)
        text = out(proc)
        if token == WRONG:
            assert proc.returncode != 0
            # YN0041 is how yarn reports a 401
            assert "YN0041" in text, text
            assert "Invalid authentication" in text
        else:
            assert proc.returncode == 0, text
    assert_no_secret(proxy, tmp_path, tokens, *outputs)


# -- Maven -------------------------------------------------------------------------------

def test_mvn_with_a_token_in_settings(tmp_path: Path, proxy_process: Any) -> None:
    from tests.e2e.test_maven_clients import _mvn, _project, mvn

    _mvn()
    from testbed.maven_repo import M2, proxy_config, repository

    server = ThreadedServer(repository(M2).app).start()
    try:
        tokens = Tokens(tmp_path)
        config = {**proxy_config(tmp_path, server),
                  "auth": access_config(tmp_path, tokens, tmp_path / "none")["auth"]}
        proxy = proxy_process(config)
        outputs = []
        for token, name in ((tokens.tools, "mvn-ok"), (WRONG, "mvn-wrong")):
            work = _project(tmp_path, name, proxy.url)
            settings = (work / "settings.xml").read_text()
            # Maven answers the 401's challenge with the mirror's <server> credentials
            (work / "settings.xml").write_text(settings.replace(
                "<mirrors>", "<servers><server><id>stockade</id><username>ci</username>"
                f"<password>{token}</password></server></servers><mirrors>"))
            result = mvn(work, tmp_path / f"{name}-m2")
            outputs.append(result.stdout + result.stderr)
            if token == WRONG:
                assert result.returncode != 0
                assert "401" in outputs[-1], outputs[-1][-4000:]
            else:
                assert result.returncode == 0, outputs[-1][-4000:]
        assert any(r["identity"] == "tools-ci" and r["path"].startswith("/maven/")
                   for r in access_records(proxy))
        assert_no_secret(proxy, tmp_path, tokens, *outputs)
    finally:
        server.stop()


# -- poetry ------------------------------------------------------------------------------

def test_poetry_with_http_basic_token(tmp_path: Path, pypi_upstream: ThreadedServer,
                                      proxy_process: Any) -> None:
    from tests.e2e.test_poetry_client import POETRY, _poetry, _project

    if not POETRY.exists():
        pytest.skip("poetry is not installed (.ci/setup-poetry.sh installs it)")
    tokens = Tokens(tmp_path)
    config = access_config(tmp_path, tokens, team_policy(tmp_path, "pypi", ["acc-lib"]))
    config["pypi"] = {"upstreams": [{"name": "pypi", "url": pypi_upstream.url("/simple/"),
                                     "retries": 0}]}
    proxy = proxy_process(config)
    simple = f"{proxy.url}/pypi/simple/"
    outputs = []
    for token, name in ((tokens.tools, "poetry-ok"), (WRONG, "poetry-wrong"),
                        (tokens.payments, "poetry-pay")):
        app = _project(tmp_path, name, simple, "acc-util")
        home = tmp_path / f"{name}-home"
        # a config of its own per project, so each run has only its own token
        added = _poetry(app, home, "source", "add", "--priority=primary", "stockade", simple)
        assert added.returncode == 0, added.stdout + added.stderr
        auth = _poetry(app, home, "config", "http-basic.stockade", "__token__", token)
        assert auth.returncode == 0, auth.stdout + auth.stderr
        installed = _poetry(app, home, "install")
        outputs.append(installed.stdout + installed.stderr)
        if name == "poetry-ok":
            assert installed.returncode == 0, outputs[-1]
        elif name == "poetry-wrong":  # poetry's words for a 401 on its source
            assert installed.returncode != 0
            assert "Authorization error accessing" in outputs[-1], outputs[-1]
        else:  # payments requires pci-reviewed: refused at the download, with the reason
            assert installed.returncode != 0
            assert "Blocked by stockade" in outputs[-1], outputs[-1]
            assert "pci-reviewed" in outputs[-1]
    assert_no_secret(proxy, tmp_path, tokens, *outputs)


# -- Gradle ------------------------------------------------------------------------------

GRADLE_BUILD = """apply plugin: 'java'
repositories {{ maven {{
  url '{url}/maven/'
  credentials {{ username 'ci'; password '{token}' }}
}} }}
dependencies {{ compile 'org.e2e:lib:1.0' }}
task resolveAll {{
  doLast {{ configurations.compile.resolve().each {{ println 'RESOLVED ' + it.name }} }}
}}
"""


def test_gradle_with_credentials(tmp_path: Path, proxy_process: Any) -> None:
    from tests.e2e.test_gradle_client import _gradle

    _gradle()
    from testbed.maven_repo import proxy_config, repository

    server = ThreadedServer(repository().app).start()
    try:
        tokens = Tokens(tmp_path)
        policy = team_policy(tmp_path, "maven", ["org.e2e:lib"])  # not org.e2e:util
        config = {**proxy_config(tmp_path, server),
                  **{k: v for k, v in access_config(tmp_path, tokens, policy).items()
                     if k in ("auth", "policy")}}
        proxy = proxy_process(config)
        outputs = {}
        for token, name in ((tokens.tools, "gradle-ok"), (WRONG, "gradle-wrong"),
                            (tokens.payments, "gradle-pay")):
            work = tmp_path / name
            work.mkdir()
            (work / "settings.gradle").write_text(f"rootProject.name = '{name}'\n")
            (work / "build.gradle").write_text(GRADLE_BUILD.format(url=proxy.url, token=token))
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("GRADLE_", "JAVA_TOOL_OPTIONS", "MAVEN_"))}
            result = subprocess.run(  # noqa: S603
                [_gradle(), "--no-daemon", "--console=plain", "-g", str(work / "gradle-home"),
                 "resolveAll"], cwd=work, capture_output=True, text=True, timeout=600,
                env=env, check=False)
            outputs[name] = result.stdout + result.stderr
            if name == "gradle-ok":
                assert result.returncode == 0, outputs[name][-4000:]
                assert "RESOLVED util-1.0.jar" in outputs[name]
            else:
                assert result.returncode != 0
        assert "401" in outputs["gradle-wrong"], outputs["gradle-wrong"][-4000:]
        # payments requires pci-reviewed: lib is, its dependency util is not
        assert "Blocked by stockade" in outputs["gradle-pay"], outputs["gradle-pay"][-4000:]
        assert "util" in outputs["gradle-pay"]
        assert_no_secret(proxy, tmp_path, tokens, *outputs.values())
    finally:
        server.stop()
