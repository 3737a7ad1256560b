"""The web page's query strings and forms, fuzzed: never a 500, nothing unescaped.

The page runs on a thread's loop in front of a fake PyPI; each case is a real
HTTP request with the drawn fields URL- or form-encoded, as a browser sends them.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.fakes.policy import FakeEngine
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from tests.integration.ui_support import ADMIN, ui_app, ui_settings

PAGES = {
    "refusals": ("ecosystem", "rule", "team", "decision", "name", "since", "until", "before"),
    "explain": ("ecosystem", "name", "version"),
    "cache": ("name", "ecosystem", "min_size", "sort", "page"),
    "approve": ("ecosystem", "name", "until", "reason"),
}
MARKER = "<i>x</i>"
values = st.one_of(
    st.text(max_size=40), st.sampled_from(["pypi", "npm", "maven", "", "24h", "7d",
                                           "2026-01-31", "-1", "99999999999999999999",
                                           MARKER, "@scope/x", "a:b"]))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    root = tmp_path_factory.mktemp("ui-fuzz")
    index = FakePyPI()
    index.add_wheel("demo", "1.0")
    upstream = ThreadedServer(index.app).start()
    policy = root / "policy.yaml"  # a policy that reads approvals: the form is offered
    policy.write_text("rules: {typosquat: {approvals: approvals.yaml}}\n")
    settings_ = ui_settings(root, pypi_url=upstream.url("/simple/"),
                            policy={"file": str(policy), "reload_check_s": 0})
    server = ThreadedServer(lambda: ui_app(settings_, lambda _s: FakeEngine())).start()
    yield server
    server.stop()
    upstream.stop()


def fetch(request: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                database=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.function_scoped_fixture])


@FUZZ
@given(name=st.sampled_from(sorted(PAGES)), data=st.data())
def test_query_strings_never_answer_500(page: ThreadedServer, name: str,
                                        data: st.DataObject) -> None:
    fields = data.draw(st.fixed_dictionaries({}, optional=dict.fromkeys(PAGES[name], values)))
    url = page.url(f"/_stockade/ui/{name}?{urllib.parse.urlencode(fields)}")
    status, body = fetch(urllib.request.Request(url, headers=ADMIN))  # noqa: S310 (loopback)
    assert status < 500, body[:500]
    assert MARKER not in body  # whatever was sent back is escaped


@FUZZ
@given(fields=st.fixed_dictionaries({}, optional={
    "csrf": values, "ecosystem": values, "name": values, "until": values, "reason": values}))
def test_forms_never_answer_500(page: ThreadedServer, fields: dict[str, str]) -> None:
    status, form = fetch(urllib.request.Request(page.url("/_stockade/ui/approve"),  # noqa: S310 (loopback)
                                                headers=ADMIN))
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    sent = {"csrf": token.group(1), **fields}
    request = urllib.request.Request(  # noqa: S310 (loopback)
        page.url("/_stockade/ui/approve"), data=urllib.parse.urlencode(sent).encode(),
        headers={**ADMIN, "Origin": page.url("/").rstrip("/")}, method="POST")
    status, body = fetch(request)
    assert status < 500, body[:500]
    assert MARKER not in body
