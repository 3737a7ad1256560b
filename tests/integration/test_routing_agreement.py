"""The server and the commands route every name alike.

``stockade check`` and ``stockade audit`` run the admission path offline; the
server runs it over live upstreams. For generated names and namespace
configurations the upstream each picks must be the same, in every ecosystem.
"""

from __future__ import annotations

import asyncio
import json
import string
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.config.load import load_settings
from stockade.config.model import Settings
from stockade.policy.model import Ecosystem, PackageRef
from stockade.proxy.app import make_app, make_upstreams
from stockade.proxy.cli import main
from stockade.proxy.metrics import Metrics
from stockade.proxy.policy_cli import _offline
from stockade.proxy.routing import route
from testbed.fakes.maven_upstream import FakeMaven
from testbed.fakes.policy import FakeEngine

_WORD = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)


@st.composite
def _names(draw: st.DrawFn, eco: Ecosystem) -> str:
    parts = draw(st.lists(_WORD, min_size=1, max_size=3))
    if eco is Ecosystem.MAVEN:
        group = ".".join(parts)
        return f"{group}:{draw(_WORD)}"
    if eco is Ecosystem.NPM and draw(st.booleans()):
        return f"@{parts[0]}/{'-'.join(parts[1:]) or draw(_WORD)}"
    return "-".join(parts)


@st.composite
def _patterns(draw: st.DrawFn, eco: Ecosystem) -> list[str]:
    """Namespace patterns in the forms operators write them."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        word = draw(_WORD)
        forms = {
            Ecosystem.PYPI: [f"{word}-*", word, f"{word}*"],
            Ecosystem.NPM: [f"@{word}/*", f"{word}-*", word],
            Ecosystem.MAVEN: [f"{word}.*", f"com.{word}.*", f"{word}:*", f"{word}.*:*"],
        }[eco]
        out.append(draw(st.sampled_from(forms)))
    return out


def _settings(tmp_path: Path, eco: Ecosystem, patterns: list[str]) -> Settings:
    upstreams = [
        {"name": "public", "url": "http://127.0.0.1:9/public/"},
        {"name": "internal", "url": "http://127.0.0.1:9/internal/", "namespaces": patterns},
        {"name": "mirror", "url": "http://127.0.0.1:9/mirror/"},
    ]
    overrides: dict[str, Any] = {e.value: {"upstreams": []} for e in Ecosystem}
    overrides[eco.value] = {"upstreams": upstreams}
    overrides["storage"] = {"path": str(tmp_path / "data")}
    return load_settings(None, environ={}, overrides=overrides)


@pytest.mark.parametrize("eco", list(Ecosystem))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_and_server_pick_the_same_upstream(eco: Ecosystem, data: st.DataObject,
                                               tmp_path: Path) -> None:
    patterns = data.draw(_patterns(eco))
    name = data.draw(st.one_of(_names(eco), st.sampled_from(
        [p.replace("*", data.draw(_WORD)) for p in patterns])))
    config = _settings(tmp_path, eco, patterns)
    server = route(eco, name, make_upstreams(config, Metrics(), {})[eco]).owner.name
    facts = asyncio.run(_offline(config, FakeEngine()).facts(PackageRef(eco, name)))
    assert facts.upstream == server
    assert facts.internal == (server == "internal")


async def test_maven_internal_group_allowed_by_check_and_by_the_server(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    internal, public = FakeMaven(), FakeMaven()
    internal.add("com.acme", "lib", "1.0")
    await internal.start()
    await public.start()
    try:
        overrides: dict[str, Any] = {
            "storage": {"path": str(tmp_path / "data")},
            "pypi": {"upstreams": []}, "npm": {"upstreams": []},
            "maven": {"upstreams": [
                {"name": "internal", "url": internal.url, "namespaces": ["com.acme.*"]},
                {"name": "central", "url": public.url},
            ]},
        }
        config = load_settings(None, environ={}, overrides=overrides)
        config_file = tmp_path / "stockade.json"
        config_file.write_text(json.dumps(config.model_dump(mode="json", by_alias=True)))
        # the command, as a shell runs it
        code = await asyncio.to_thread(main, ["check", "maven", "com.acme:lib", "--json",
                                              "--config", str(config_file)])
        assert code == 0
        client: TestClient[Any, Any] = await aiohttp_client(make_app(config, environ={}))
        explained = await (await client.get("/_stockade/explain/maven/com.acme:lib")).json()
        assert explained["decision"]["decision"] == "allow"
        assert explained["facts"]["upstream"] == "internal"
        jar = await client.get("/maven/com/acme/lib/1.0/lib-1.0.jar")
        assert jar.status == 200
        assert public.requests == []  # the public repository was never asked
    finally:
        await internal.stop()
        await public.stop()
