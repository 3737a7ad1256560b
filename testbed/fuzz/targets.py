"""Fuzz targets: each pairs a strategy with a check of the properties that must hold.

Every check raises only on a broken property: an exception other than the
module's documented error, a render that does not parse again, a normalisation
that is not idempotent, a name accepted with characters no registry allows.
``tests/fuzz/test_targets.py`` runs each target a few hundred times in CI;
``python -m bench.fuzz`` runs them a million times each.
"""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from hypothesis import strategies as st
from yarl import URL

from stockade.config.load import ConfigError, load_settings
from stockade.policy import names
from stockade.policy.file import Policy, PolicyError, load_policy, parse_policy
from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.proxy.ecosystems import maven_layout as ml
from stockade.proxy.ecosystems import npm_documents as nd
from stockade.proxy.ecosystems import pypi_pages as pp
from stockade.proxy.responses import host_problem
from testbed.fuzz import more_targets as mt
from testbed.fuzz import mutations as m
from testbed.fuzz import strategies as s


@dataclass(frozen=True)
class Target:
    """One fuzz target: inputs drawn from ``strategy``, properties checked by ``check``.

    ``mutate(value, other, rng)``, where given, makes a new input from two drawn
    ones that ``strategy`` could have drawn too (``bench.fuzz`` mutates bytes and
    text by itself; objects need this to be fuzzed a million times).
    """

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    mutate: Callable[[Any, Any, random.Random], Any] | None = None


def clean(text: str) -> bool:
    """No whitespace and no control or other unprintable characters."""
    return all(c.isprintable() and not c.isspace() for c in text)


_scratch: Path | None = None


def scratch() -> Path:
    """A folder of this process for files the checks write (removed at exit)."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="stockade-fuzz-"))
        (_scratch / "osv").mkdir()
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


# --- names and paths ---------------------------------------------------------------

def check_pypi_name(name: str) -> None:
    norm = pp.normalize(name)
    assert pp.normalize(norm) == norm, "normalize is not idempotent"
    if pp.valid_name(name):
        assert clean(name) and name.isascii(), "a name with odd characters is valid"
        assert pp.valid_name(norm), "the normal form of a valid name is invalid"
    if pp.valid_filename(name):
        assert clean(name) and name.isascii() and "/" not in name and "\\" not in name
    pp.version_of(name)


def check_npm_name(name: str) -> None:
    if nd.valid_name(name):
        assert clean(name), "a name with whitespace or control characters is valid"
        escaped = nd.escape(name)
        assert "/" not in escaped
        assert names.normalize(Ecosystem.NPM, escaped) == name.lower()
    if nd.valid_version(name):
        assert clean(name) and "/" not in name
        assert clean(nd.tarball_filename("x", name))


def check_policy_name(name: str) -> None:
    for eco in Ecosystem:
        norm = names.normalize(eco, name)
        assert names.normalize(eco, norm) == norm, f"{eco} normalize is not idempotent"
        if names.valid(eco, name):
            # npm's check normalises first, which strips; the others take the name as is.
            assert clean(name.strip() if eco is Ecosystem.NPM else name), f"{eco}: odd name"
            assert clean(norm), f"{eco}: a valid name normalises to one with odd characters"
            assert names.valid(eco, norm), f"{eco}: the normal form of a valid name is invalid"
    names.split_npm(name)


@st.composite
def _maven_paths(draw: st.DrawFn) -> str:
    group = draw(st.lists(s.near(st.sampled_from(["com", "org", "example", "x_y"])),
                          min_size=1, max_size=3))
    artifact = draw(s.near(st.sampled_from(["demo", "a", "lib-core"])))
    version = draw(s.near(st.sampled_from(["1.0", "2.3.4-SNAPSHOT", "1.0-beta"])))
    tail = draw(st.sampled_from([
        f"{artifact}-{version}.jar", f"{artifact}-{version}.pom.sha1",
        f"{artifact}-{version.removesuffix('-SNAPSHOT')}-20240101.120000-1.jar",
        "maven-metadata.xml", "maven-metadata.xml.sha512", f"{artifact}-{version}-sources.jar.md5",
    ]))
    segments = [*group, artifact, version, tail]
    if tail.startswith("maven-metadata") and draw(st.booleans()):
        segments = [*group, artifact, tail]
    path = "/".join(segments)
    return draw(st.sampled_from(["", "/"])) + path + draw(st.sampled_from(["", "/"]))


def check_maven_path(raw: str) -> None:
    try:
        path = ml.parse_path(raw)
    except ml.LayoutError:
        return
    for segment in path.segments:
        assert clean(segment), f"segment {segment!r} has whitespace or control characters"
        assert segment not in (".", "..")
    again = ml.parse_path(path.path + (f".{path.checksum}" if path.checksum else ""))
    assert again == path, "the parsed path does not parse to itself"
    path.coordinates, path.metadata_name(), path.is_snapshot


# --- PyPI pages --------------------------------------------------------------------

BASE = "https://pypi.example/simple/demo/"


def check_pypi_page(case: tuple[bytes, str, str]) -> None:
    body, ctype, name = case
    try:
        page = pp.parse_project(body, ctype, BASE, name)
    except pp.PageError:
        return
    from_json = pp.parse_project(pp.render_json(page), pp.JSON_V1, BASE, name)
    assert [f.filename for f in from_json.files] == [f.filename for f in page.files]
    from_html = pp.parse_project(pp.render_html(page), pp.TEXT_HTML, BASE, name)
    if all(pp.valid_filename(f.filename) and f.url for f in page.files):
        # HTML has no file without an href, and names a file by its link's text.
        assert [f.filename for f in from_html.files] == [f.filename for f in page.files]
    for entry in page.files:
        pp.version_of(entry.filename)


@st.composite
def _sane_pages(draw: st.DrawFn) -> pp.ProjectPage:
    files = []
    for filename in draw(st.lists(s.file_names, max_size=4, unique=True)):
        core = draw(st.one_of(st.booleans(), s.hex_digests.map(lambda h: {"sha256": h})))
        files.append(pp.FileEntry(
            filename=filename, url=f"https://files.example/p/{filename}",
            hashes={"sha256": draw(s.hex_digests)},
            requires_python=draw(st.one_of(st.none(), st.text(
                alphabet="<>=!~.,0123456789* ", min_size=1, max_size=12).filter(str.strip))),
            yanked=draw(st.one_of(st.booleans(), st.text(min_size=1, max_size=20))),
            core_metadata=core,
            provenance=draw(st.one_of(st.none(), st.just(f"https://files.example/{filename}.p"))),
            gpg_sig=draw(st.one_of(st.none(), st.booleans())),
        ))
    status = draw(st.one_of(st.none(), st.sampled_from(["active", "archived"]).map(
        lambda v: {"status": v})))
    return pp.ProjectPage(name="demo", files=tuple(files), status=status)


def _html_view(entry: pp.FileEntry) -> tuple[Any, ...]:
    return (entry.filename, entry.url, entry.hashes, entry.requires_python, entry.yanked,
            entry.core_metadata, entry.provenance, entry.gpg_sig)


def check_pypi_roundtrip(page: pp.ProjectPage) -> None:
    from_json = pp.parse_project(pp.render_json(page), pp.JSON_V1, BASE, "demo")
    assert from_json.files == page.files, "PEP 691 JSON does not round-trip"
    assert from_json.status == page.status
    from_html = pp.parse_project(pp.render_html(page), pp.TEXT_HTML, BASE, "demo")
    assert [_html_view(f) for f in from_html.files] == [_html_view(f) for f in page.files], (
        "PEP 503 HTML does not round-trip")
    assert from_html.status == page.status


def check_pypi_index(case: tuple[bytes, str]) -> None:
    body, ctype = case
    try:
        found = pp.parse_index(body, ctype)
    except pp.PageError:
        return
    assert all(isinstance(n, str) for n in found)
    rendered = pp.render_index(found, pp.JSON_V1)
    assert pp.parse_index(rendered, pp.JSON_V1) == found, "the JSON index does not round-trip"
    pp.parse_index(pp.render_index(found, pp.TEXT_HTML), pp.TEXT_HTML)


def check_accept(accept: str) -> None:
    assert pp.negotiate(accept) in (pp.TEXT_HTML, pp.HTML_V1, pp.JSON_V1)


def check_host(host: str) -> None:
    """A Host the middleware lets through makes an origin a handler can print."""
    if host_problem(host) is not None:
        return
    origin = str(URL.build(scheme="http", authority=host).origin())
    assert clean(origin), f"Host {host!r} gives origin {origin!r}"


# --- npm packuments ----------------------------------------------------------------

@st.composite
def _packument_cases(draw: st.DrawFn) -> tuple[bytes, str, frozenset[str], bool, str]:
    name = draw(st.one_of(st.just("demo"), st.just("@acme/x"), s.npm_names))
    body = draw(s.json_body(s.packuments(name)))
    hidden = frozenset(draw(st.lists(s.versions, max_size=2)))
    spec = draw(st.one_of(s.versions, st.sampled_from(["latest", "next", "__proto__"])))
    return body, name, hidden, draw(st.booleans()), spec


NPM_BASE = "http://proxy.example:8080/npm/"


def check_packument(case: tuple[bytes, str, frozenset[str], bool, str]) -> None:
    body, name, hidden, abbreviated, spec = case
    try:
        nd.index(body, name, upstream="npmjs", internal=False)
    except nd.PackumentError:
        try:
            nd.render_body(body, name, abbreviated=abbreviated, hidden=hidden, base=NPM_BASE,
                           hosts=frozenset({"registry.example"}))
        except nd.PackumentError:
            return
        raise AssertionError("render_body accepts what index refuses") from None
    out = nd.render_body(body, name, abbreviated=abbreviated, hidden=hidden, base=NPM_BASE,
                         hosts=frozenset({"registry.example"}))
    doc = orjson.loads(out)
    kept = doc["versions"]
    assert not set(kept) & hidden, "a hidden version is served"
    for manifest in kept.values():
        assert manifest["dist"]["tarball"].startswith(NPM_BASE + name + "/-/")
    assert set(doc["dist-tags"].values()) <= set(kept), "a dist-tag points at a dropped version"
    nd.parse(out, name)
    if not abbreviated:
        # A few specs: each call parses the whole document again.
        for wanted in (spec, *list(doc["dist-tags"])[:3], *list(kept)[:3]):
            nd.manifest_of(out, wanted)


# --- maven-metadata.xml ------------------------------------------------------------

def check_maven_metadata(case: tuple[bytes, frozenset[str]]) -> None:
    body, hidden = case
    try:
        doc = ml.parse_metadata(body)
    except ml.MetadataError:
        return
    out = ml.render(doc, hidden=hidden)
    again = ml.parse_metadata(out)
    if doc.is_artifact_level:
        assert again.is_artifact_level
        assert set(again.versions) == {v for v in doc.versions if v not in hidden and v.strip()}
        assert again.group_id == (doc.group_id or None)
    merged = ml.merge([doc, again])
    ml.parse_metadata(ml.render(merged))


@st.composite
def _sane_metadata(draw: st.DrawFn) -> ml.Metadata:
    vers = draw(st.lists(st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}(-SNAPSHOT|-rc[0-9])?",
                                       fullmatch=True), max_size=6, unique=True))
    return ml.Metadata("com.example", "demo", None, vers,
                       draw(st.one_of(st.none(), st.just("20240101000000"))))


def check_maven_roundtrip(doc: ml.Metadata) -> None:
    again = ml.parse_metadata(ml.render(doc))
    assert sorted(again.versions) == sorted(doc.versions), "versions do not round-trip"
    assert (again.group_id, again.artifact_id, again.last_updated) == (
        doc.group_id, doc.artifact_id, doc.last_updated)


# --- policy and config files -------------------------------------------------------

_REFS = [PackageRef(eco, name, version) for eco, name in (
    (Ecosystem.PYPI, "x"), (Ecosystem.NPM, "@acme/x"), (Ecosystem.MAVEN, "com.acme:x"))
    for version in (None, "1.0.0")]
_FACTS = [Facts(), Facts(upstream="u", internal=True),
          Facts(upstream="u", published_at=datetime(2024, 6, 1, tzinfo=UTC),
                has_install_script=True, is_sdist=True, license="GPL-3.0-only"),
          Facts(upstream="u", published_at=datetime(2024, 6, 1), license="(")]


def _decide_with(policy: Policy) -> None:
    """A policy that loads must decide: every rule on a few names and facts."""
    for rule in policy.rules:
        for ref in _REFS:
            for facts in _FACTS:
                rule.evaluate(ref, facts)


def check_policy_file(data: bytes) -> None:
    folder = scratch()
    path = folder / "policy.yaml"
    path.write_bytes(data)
    try:
        policy = load_policy(path)
    except PolicyError:
        return
    _decide_with(policy)


def check_policy_text(text: str) -> None:
    try:
        policy = parse_policy(text, base_dir=scratch())
    except PolicyError:
        return
    _decide_with(policy)


def check_config_file(case: tuple[bytes, dict[str, str]]) -> None:
    data, environ = case
    path = scratch() / "stockade.yaml"
    path.write_bytes(data)
    try:
        settings = load_settings(path, environ=environ)
    except ConfigError:
        return
    for eco in Ecosystem:
        for upstream in getattr(settings, eco.value).upstreams:
            # What the proxy does with an accepted URL at start-up must work.
            parts = urlsplit(upstream.url)
            assert parts.hostname and parts.port != -1
            assert clean(upstream.url)
            URL(upstream.url).origin()


TARGETS = {t.name: t for t in (
    Target("pypi_name", st.one_of(s.pypi_names, s.near(s.file_names)), check_pypi_name),
    Target("npm_name", st.one_of(s.npm_names, s.versions), check_npm_name),
    Target("policy_name", st.one_of(s.pypi_names, s.npm_names, s.maven_names), check_policy_name),
    Target("maven_path", st.one_of(_maven_paths(), s.mutated(_maven_paths()), s.any_text),
           check_maven_path),
    Target("pypi_page", st.tuples(
        st.one_of(s.json_body(s.pep691_pages), s.html_pages()),
        st.sampled_from([pp.JSON_V1, pp.TEXT_HTML, "application/json; charset=utf-8",
                         pp.HTML_V1, ""]), st.sampled_from(["demo", "x"])), check_pypi_page),
    Target("pypi_roundtrip", _sane_pages(), check_pypi_roundtrip, m.mutate_page),
    Target("pypi_index", st.tuples(
        st.one_of(s.json_body(st.fixed_dictionaries({"projects": s.maybe(st.lists(
            st.fixed_dictionaries({"name": s.maybe(s.pypi_names)}), max_size=4))})),
            s.html_pages()),
        st.sampled_from([pp.JSON_V1, pp.TEXT_HTML, ""])), check_pypi_index),
    Target("accept", s.accept_values, check_accept),
    Target("host", s.hosts, check_host),
    Target("packument", _packument_cases(), check_packument),
    Target("maven_metadata", st.tuples(s.maven_metadata(), st.frozensets(s.versions, max_size=2)),
           check_maven_metadata),
    Target("maven_roundtrip", _sane_metadata(), check_maven_roundtrip, m.mutate_metadata),
    Target("policy_file", s.yaml_files(s.policy_docs, s.policy_slots), check_policy_file),
    Target("policy_text", st.one_of(s.any_text, s.special_text), check_policy_text),
    Target("config_file", st.tuples(s.yaml_files(s.config_docs, s.config_slots), s.environs),
           check_config_file),
    Target("tokens_file", mt.tokens_files, mt.check_tokens_file),
    Target("approvals_file", mt.approvals_files, mt.check_approvals_file),
    Target("authorization", mt.authorizations, mt.check_authorization),
    Target("forwarded", mt.forwarded, mt.check_forwarded),
)}
