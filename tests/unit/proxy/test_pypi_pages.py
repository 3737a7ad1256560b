from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.config.model import UpstreamSettings
from stockade.policy.model import Ecosystem
from stockade.proxy.ecosystems import pypi_pages as pages
from stockade.proxy.errors import NotFoundError
from stockade.proxy.routing import route

FIXTURE = Path(__file__).parents[2] / "fixtures" / "pypi-simple-poetry-core.json"


def test_real_pypi_page_round_trips_through_both_formats() -> None:
    body = FIXTURE.read_bytes()
    page = pages.parse_project(body, pages.JSON_V1, "https://pypi.org/simple/poetry-core/",
                               "poetry-core")
    original = orjson.loads(body)
    assert len(page.files) == len(original["files"])
    first = original["files"][0]
    entry = page.file(first["filename"])
    assert entry is not None and entry.hashes == first["hashes"]
    again = pages.parse_project(pages.render_html(page), "text/html", "", "poetry-core")
    assert [f.filename for f in again.files] == [f.filename for f in page.files]
    # HTML carries one hash per link: the sha256.
    assert [f.hashes for f in again.files] == [{"sha256": f.hashes["sha256"]} for f in page.files]
    assert [f.requires_python for f in again.files] == [f.requires_python for f in page.files]
    assert [f.core_metadata for f in again.files] == [f.core_metadata for f in page.files]
    rendered = orjson.loads(pages.render_json(page))
    assert [f["filename"] for f in rendered["files"]] == [f["filename"] for f in original["files"]]


def test_html_attributes_are_escaped() -> None:
    page = pages.ProjectPage("x", (pages.FileEntry(
        "x-1.0.tar.gz", "../../files/x/x-1.0.tar.gz", {"sha256": "a" * 64},
        requires_python='>=3.8,<"4"', yanked="bad <script>"),))
    html = pages.render_html(page).decode()
    assert 'data-requires-python="&gt;=3.8,&lt;&quot;4&quot;"' in html
    assert 'data-yanked="bad &lt;script&gt;"' in html


def test_hostile_json_is_an_error_not_a_crash() -> None:
    with pytest.raises(pages.PageError):
        pages.parse_project(b"{", pages.JSON_V1, "", "x")
    with pytest.raises(pages.PageError):
        pages.parse_project(b'{"files": 3}', pages.JSON_V1, "", "x")
    page = pages.parse_project(b'{"files": [1, {"filename": 2}, {"url": "u"}]}',
                               pages.JSON_V1, "", "x")
    assert page.files == ()


@pytest.mark.parametrize(
    ("filename", "version"),
    [("pkg-1.0-py3-none-any.whl", "1.0"), ("pkg-2.0rc1.tar.gz", "2.0rc1"),
     ("Pkg_Name-1.2.3.zip", "1.2.3"), ("weird.exe", None)],
)
def test_version_of(filename: str, version: str | None) -> None:
    assert pages.version_of(filename) == version


@given(st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?", fullmatch=True))
def test_normalisation_is_idempotent(name: str) -> None:
    once = pages.normalize(name)
    assert pages.normalize(once) == once
    assert pages.valid_name(once)


@pytest.mark.parametrize("name", ["", "-x", "x-", "a b", "a/b", "..", "x" * 201])
def test_invalid_names(name: str) -> None:
    assert not pages.valid_name(name)


@pytest.mark.parametrize("filename", ["../x.whl", "a/b.whl", ".x", "x\\y.whl", ""])
def test_invalid_filenames(filename: str) -> None:
    assert not pages.valid_filename(filename)


def _up(name: str, *namespaces: str) -> UpstreamSettings:
    return UpstreamSettings(name=name, url=f"https://{name}.example/simple/",
                            namespaces=namespaces)


class _U:
    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings


def test_routing_internal_namespace_wins() -> None:
    ups = [_U(_up("public")), _U(_up("internal", "acme-*", "exact-name"))]
    assert route(Ecosystem.PYPI, "acme-tools", ups).owner.settings.name == "internal"
    assert route(Ecosystem.PYPI, "exact-name", ups).owner.settings.name == "internal"
    assert route(Ecosystem.PYPI, "requests", ups).owner.settings.name == "public"


def test_routing_without_public_upstream() -> None:
    with pytest.raises(NotFoundError):
        route(Ecosystem.PYPI, "requests", [_U(_up("internal", "acme-*"))])
