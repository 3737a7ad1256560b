"""The inventory documents: package URLs per ecosystem, filters, and a valid CycloneDX SBOM."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from stockade.proxy.inventory import as_cyclonedx, as_json, collect, purl
from stockade.proxy.served import Served

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(("eco", "name", "version", "filename", "expected"), [
    ("pypi", "Flask_Login", "0.6.3", "Flask_Login-0.6.3-py3-none-any.whl",
     "pkg:pypi/flask-login@0.6.3?file_name=Flask_Login-0.6.3-py3-none-any.whl"),
    ("npm", "@acme/widget", "1.0.0", "widget-1.0.0.tgz", "pkg:npm/%40acme/widget@1.0.0"),
    ("npm", "left-pad", "1.3.0", "left-pad-1.3.0.tgz", "pkg:npm/left-pad@1.3.0"),
    ("maven", "org.acme:lib", "2.0", "lib-2.0.jar", "pkg:maven/org.acme/lib@2.0"),
    ("maven", "org.acme:lib", "2.0", "lib-2.0.pom", "pkg:maven/org.acme/lib@2.0?type=pom"),
])
def test_package_urls(eco: str, name: str, version: str, filename: str, expected: str) -> None:
    assert purl(eco, name, version, filename).to_string() == expected


def served(name: str, who: str | None, team: str | None, at: float = 1.77e9) -> Served:
    return Served(at, "npm", name, "1.0.0", f"{name}-1.0.0.tgz", name[0] * 64, "10.0.0.9",
                  who, team)


def test_filters_and_grouping() -> None:
    entries = [served("a", "alice", "payments"), served("a", "alice", "payments", 1.78e9),
               served("b", "bob", "search"), served("c", None, None)]
    assert [i.name for i in collect(entries, team="payments")] == ["a"]
    assert [i.name for i in collect(entries, identity="bob")] == ["b"]
    everything = as_json(collect(entries), since=SINCE, until=UNTIL, team=None)
    (a, _, c) = everything["artifacts"]
    assert a["fetched_by"] == [{"identity": "alice", "team": "payments", "client": "10.0.0.9",
                                "count": 2, "first": "2026-02-02T02:40:00Z",
                                "last": "2026-05-28T20:26:40Z"}]
    assert c["fetched_by"][0]["identity"] is None  # anonymous: the client address


def test_the_sbom_is_valid_cyclonedx_with_hashes_and_provenance() -> None:
    items = collect([served("a", "alice", "payments"), served("b", None, None)])
    items[0].provenance = [{"kind": "attestation", "result": "verified", "detail": ""}]
    text = as_cyclonedx(items, since=SINCE, until=UNTIL, team=None)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    assert [c["purl"] for c in doc["components"]] == ["pkg:npm/a@1.0.0", "pkg:npm/b@1.0.0"]
    assert doc["components"][0]["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    props = {p["name"]: p["value"] for p in doc["components"][0]["properties"]}
    assert props["stockade:provenance:attestation"] == "verified"
    assert props["stockade:fetched_by"].startswith("alice team=payments")
