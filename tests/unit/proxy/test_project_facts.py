"""What a project is, read out of real registry documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from stockade.policy.model import ProjectFacts
from stockade.proxy.ecosystems import project_facts
from stockade.proxy.ecosystems.npm_documents import index
from tests.unit.proxy.provenance.shared import fixture

HERE = Path(__file__).resolve().parents[2] / "fixtures"


def test_npm_packument() -> None:
    body = fixture("npm/packuments/wrappy.full.json").read_bytes()
    facts = project_facts.npm(json.loads(body))
    assert facts == ProjectFacts(
        first_release=datetime(2014, 9, 18, 22, 59, 23, 410000, tzinfo=UTC), releases=3,
        owners=("isaacs",), summary="Callback wrapping utility",
        repository="git+https://github.com/npm/wrappy.git")
    # every version's facts carry it, read once for the document
    parsed = index(body, "wrappy", upstream="npmjs", internal=False)
    assert {f.project for f in parsed.facts.values()} == {facts}


def test_npm_without_created_takes_the_earliest_version() -> None:
    facts = project_facts.npm({"versions": {"1.0.0": {}, "2.0.0": {}},
                               "time": {"1.0.0": "2026-11-01T00:00:00Z",
                                        "2.0.0": "2026-11-20T00:00:00Z",
                                        "modified": "2026-11-20T00:00:00Z"},
                               "repository": "github:x/y", "maintainers": "nobody"})
    assert facts.first_release == datetime(2026, 11, 1, tzinfo=UTC)
    assert facts.releases == 2 and facts.owners == () and facts.repository == "github:x/y"


def test_pypi_json_page_and_html_page() -> None:
    page = json.loads((HERE / "pypi-simple-poetry-core.json").read_text())
    facts = project_facts.pypi((f.get("upload-time") for f in page["files"]),
                               len(page["versions"]))
    assert facts.first_release == datetime(2023, 1, 28, 10, 52, 52, 445537, tzinfo=UTC)
    assert facts.releases == 2
    # an HTML page gives no upload times: the age is unknown, not guessed
    assert project_facts.pypi([None, "2023-01-28T10:52:52Z"], 2).first_release is None


def test_pypi_json_api_summary_and_repository() -> None:
    data = json.loads(fixture("pypi/json-api/poetry-core-2.1.3.json").read_text())
    assert project_facts.pypi_json(data) == (
        "Poetry PEP 517 Build Backend", "https://github.com/python-poetry/poetry-core")
    assert project_facts.pypi_json({"info": {"summary": 3, "project_urls": {
        "Docs": "https://example.org/"}}}) == (None, None)
