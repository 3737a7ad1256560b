"""The admin reload with ``server.workers`` > 1: every worker reloads, not only the one
asked, and the answer lists each worker's result. Real ``stockade serve`` processes,
as in ``test_workers``."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from stockade.proxy.tokens import Role, create_token
from testbed.fakes.pypi_upstream import FakePyPI
from testbed.fakes.threaded import ThreadedServer
from tests.integration.test_workers import Served, _burst, _poll, _sum

# the fixtures of test_workers, used here by name
from tests.integration.test_workers import serve as serve
from tests.integration.test_workers import upstream as upstream

pytestmark = pytest.mark.timeout(600)  # multi-process start-ups on a busy machine


def test_an_admin_reload_reaches_every_worker(
    serve: Callable[..., Served],
    upstream: tuple[FakePyPI, ThreadedServer],
    tmp_path: Path,
) -> None:
    index, _ = upstream
    dist = index.add_wheel("demo", "1.0")
    tokens = tmp_path / "tokens.yaml"
    admin, _ = create_token(tokens, "ops", team=None, roles=[Role.ADMIN])
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"rules": {"lists": {"deny": []}}}))
    # no polling of the file: only the admin request can put the new policy in force
    served = serve(server={"workers": 2}, policy={"file": str(policy), "reload_check_s": 0},
                   auth={"tokens": str(tokens)})
    page = f"/pypi/files/demo/{dist.filename}"
    assert {s for s, _ in asyncio.run(_burst(served.url + page, 10))} == {200}

    policy.write_text(yaml.safe_dump({"rules": {"lists": {"deny": [
        {"ecosystem": "pypi", "name": "demo", "reason": "denied after start"}]}}}))
    request = urllib.request.Request(served.url + "/_stockade/admin/reload", method="POST",  # noqa: S310
                                     headers={"Authorization": f"Bearer {admin}"})
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
        answer = json.loads(resp.read())
    assert answer["applied"] is True
    workers = answer["workers"]
    assert workers["total"] == 2
    # the answer waited for the other worker and lists what each one did
    assert sorted(r["slot"] for r in workers["results"]) == [0, 1], workers
    assert len({r["pid"] for r in workers["results"]}) == 2
    assert all(r["applied"] and r["revision"] == answer["revision"]
               for r in workers["results"]), workers
    assert workers["all_applied"] is True
    # the one asked, then the other through the supervisor: once each
    _poll(lambda: _sum(served.metrics(), "stockade_policy_reloads_total",
                       result="applied") == 2)
    statuses = [s for s, _ in asyncio.run(_burst(served.url + page, 30))]
    assert statuses == [403] * 30
    assert len(served.served_by(page)) == 2  # and both workers refused

    # A broken file: rejected by both, each saying why, the old revision in force.
    policy.write_text("rules: [unclosed\n")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)  # noqa: S310
    assert refused.value.code == 422
    rejected = json.loads(refused.value.read())
    assert rejected["revision"] == answer["revision"]
    results = rejected["workers"]["results"]
    assert sorted(r["slot"] for r in results) == [0, 1], rejected
    assert not any(r["applied"] for r in results) and all(r["error"] for r in results)
    assert rejected["workers"]["all_applied"] is False
    assert served.stop() == 0
