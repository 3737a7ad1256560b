"""PyPI: the Simple Repository API, its files and the JSON API, through policy.

Owns turning ``/pypi/...`` requests into package references, the upstream's
pages into filtered and rewritten ones, and each file request into an
``ArtifactSource`` with the digest the upstream's page published. Routing,
deciding and fetching metadata are the admission path's; fetching, caching and
verifying files the shared pipeline's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urljoin

import orjson
from aiohttp import web
from packaging.version import InvalidVersion, Version

from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.policy.rules.provenance import ReleaseProvenance, provenance_history
from stockade.policy.times import timestamp
from stockade.proxy.admission import ITEM_BYTES, Admission, Caller, caller
from stockade.proxy.ecosystems import project_facts, pypi_provenance, pypi_summary
from stockade.proxy.ecosystems import pypi_pages as pages
from stockade.proxy.ecosystems.base import Documents, json_object
from stockade.proxy.errors import (
    BadRequestError,
    IntegrityError,
    NotFoundError,
    RefusedError,
    UpstreamError,
)
from stockade.proxy.metadocs import CachedDoc, CacheResult
from stockade.proxy.origin import origin
from stockade.proxy.pipeline import ArtifactSource
from stockade.proxy.responses import IMMUTABLE
from stockade.proxy.routing import Route
from stockade.proxy.state import services
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest, DigestError

logger = logging.getLogger(__name__)

ECO = Ecosystem.PYPI
PREFIX = "/pypi"
_VERIFIABLE = ("sha256", "sha512", "blake2b_256", "sha1", "md5")
_OFFLOAD_BYTES = 256 * 1024  # parse larger pages off the event loop

def setup(app: web.Application) -> None:
    """Register the PyPI routes on ``app``."""
    app.router.add_get(f"{PREFIX}/simple/", index, name="pypi:index")
    app.router.add_get(f"{PREFIX}/simple/{{name}}/", project, name="pypi:project")
    app.router.add_get(f"{PREFIX}/simple/{{name}}", project, name="pypi:project-noslash")
    app.router.add_get(f"{PREFIX}/files/{{name}}/{{filename}}", file, name="pypi:artifact")
    app.router.add_get(f"{PREFIX}/provenance/{{name}}/{{filename}}", provenance,
                       name="pypi:provenance")
    app.router.add_get(f"{PREFIX}/pypi/{{name}}/json", json_api, name="pypi:json")
    app.router.add_get(f"{PREFIX}/pypi/{{name}}/json/", json_api, name="pypi:json-slash")
    app.router.add_get(f"{PREFIX}/pypi/{{name}}/{{version}}/json", json_api,
                       name="pypi:json-version")
    app.router.add_get(
        f"{PREFIX}/pypi/{{name}}/{{version}}/json/", json_api, name="pypi:json-version-slash"
    )


def _name(request: web.Request) -> str:
    raw = request.match_info["name"]
    if not pages.valid_name(raw):
        raise BadRequestError(f"{raw!r} is not a valid Python project name")
    return pages.normalize(raw)


@dataclass(frozen=True, slots=True)
class Project:
    """A project page as parsed once per document version: its files and versions."""

    page: pages.ProjectPage
    facts: dict[str, Facts]


async def _project(adm: Documents, upstream: Upstream, name: str,
                   doc: CachedDoc | None = None) -> tuple[Project, CachedDoc]:
    """The upstream's project page (``doc``, if fetched already), parsed, with foreign
    links dropped."""
    if doc is None:
        doc = await adm.document(ECO, upstream, page_url(upstream.url, name),
                                 accept=pages.UPSTREAM_ACCEPT)

    async def parse() -> Project:
        return await _parse(doc, name, upstream)

    project = await adm.parsed(doc, "pypi-page", parse,
                               lambda p: ITEM_BYTES * len(p.page.files))
    # a look-alike's summary and repository: one more fetch, only for those
    facts = await pypi_summary.summarized(adm, upstream, name,
                                          json_base(upstream) + f"{quote(name)}/json", doc,
                                          project.facts)
    return (project if facts is project.facts else Project(project.page, facts)), doc


async def _parse(doc: CachedDoc, name: str, upstream: Upstream) -> Project:
    def work() -> Project:
        page = pages.parse_project(doc.body, doc.content_type, doc.url, name)

        def link(entry: pages.FileEntry) -> str | None:
            resolved = upstream.resolve(entry.url, doc.url)
            if resolved is None or not pages.valid_filename(entry.filename):
                logger.warning("dropping %s of %s: link outside upstream %s",
                               entry.filename, name, upstream.name)
            return resolved if pages.valid_filename(entry.filename) else None

        page = pages.rewrite_files(page, link)
        return Project(page, version_facts(page, upstream))

    try:
        if len(doc.body) > _OFFLOAD_BYTES:
            return await asyncio.to_thread(work)
        return work()
    except pages.PageError as exc:
        raise UpstreamError(
            f"upstream {upstream.name} sent an unreadable page for {name}: {exc}",
            upstream=upstream.name,
        ) from exc


async def versions(adm: Documents, upstreams: Route[Upstream], name: str) -> dict[str, Facts]:
    """Every version's facts from the project page (for the admission path)."""
    project, _ = await _project(adm, upstreams.owner, name)
    return project.facts


@functools.lru_cache(maxsize=16384)  # pure, and urljoin is slow: asked every request
def page_url(upstream_url: str, name: str) -> str:
    """Where an upstream index serves ``name``'s project page."""
    return urljoin(upstream_url, f"{quote(name)}/")


def version_facts(page: pages.ProjectPage, upstream: Upstream) -> dict[str, Facts]:
    """Facts per version from a project page (upload time, wheels, yanks)."""
    by_version: dict[str, list[pages.FileEntry]] = {}
    for entry in page.files:
        if (version := entry.version) is not None:
            by_version.setdefault(version, []).append(entry)
    facts = {}
    claims = {}
    # what the project is, once for all its versions (PEP 700 times; none in HTML)
    project = project_facts.pypi((e.upload_time for e in page.files),
                                 len(page.versions) or len(by_version))
    for version, entries in by_version.items():
        times = [t for e in entries if (t := timestamp(e.upload_time)) is not None]
        has_wheel = any(e.filename.endswith(".whl") for e in entries)
        claimed = any(e.provenance is not None for e in entries)  # PEP 740
        facts[version] = Facts(
            upstream=upstream.name, internal=upstream.internal,
            published_at=min(times) if times else None,
            has_wheel=has_wheel, is_sdist=not has_wheel,
            yanked=all(bool(e.yanked) for e in entries), provenance_claimed=claimed,
            project=project,
        )
        claims[version] = ReleaseProvenance(facts[version].published_at, claimed)
    for version, before in provenance_history(claims).items():
        if before is not None:
            facts[version] = dataclasses.replace(facts[version], provenance_before=before)
    return facts


@dataclass(frozen=True, slots=True)
class _Page:
    """A rendered project page and what its headers say of it; ``body`` is None in
    the copy kept to stand in (the parsed cache holds the bytes, under ``kind``)."""

    body: bytes | None
    version: str
    kind: str
    filtered: str | None
    dropped: int


async def project(request: web.Request) -> web.StreamResponse:
    """``/pypi/simple/<name>/`` in the negotiated format, filtered by policy.

    While the page of a changed document is made (parsed, decided, rendered: long
    for a project with thousands of files), requests are answered with the last
    page made for the same form, origin and policy, marked ``stale``
    (``successions``), as packuments are; the request that fetched it waits."""
    raw = request.match_info["name"]
    name = _name(request)
    if raw != name or not request.path.endswith("/"):
        raise web.HTTPMovedPermanently(f"{PREFIX}/simple/{name}/")
    svc = services(request)
    adm = svc.admission
    who = caller(request)
    upstreams, verdict = await adm.decide_name(ECO, name, who)
    upstream = upstreams.owner
    revision = adm.gate.engine_for(who.team).revision
    ctype = pages.negotiate(request.headers.get("Accept"))
    # PEP 740 wants an absolute URL; an air-gapped client can follow stockade's
    provenance_base = f"{origin(request, svc.settings.server)}{PREFIX}/provenance/"
    try:
        doc = await adm.document(ECO, upstream, page_url(upstream.url, name),
                                 accept=pages.UPSTREAM_ACCEPT)

        async def make() -> _Page:
            project, _ = await _project(adm, upstream, name, doc)
            return await _page(adm, name, doc, project, verdict.blocks, who, ctype,
                               provenance_base, revision)

        def held(page: _Page) -> bool:
            return adm.parsed_held(doc.key, page.version, page.kind) is not None

        def kept(page: _Page) -> _Page:  # the bytes stay in the parsed cache only
            return dataclasses.replace(page, body=None)

        family = "|".join(("pypi", doc.key, ctype, provenance_base, revision,
                           "refused" if verdict.blocks else "served"))
        page, stale = await svc.rendered.successions.answer(
            family, doc.version, make, held, wait=doc.result is CacheResult.MISS, keep=kept)
    except UpstreamError as exc:
        if verdict.blocks and exc.status == 404:
            raise RefusedError(verdict) from exc
        raise
    page = cast(_Page, page)
    body = page.body
    if body is None:  # standing in: held, just seen
        body = cast(tuple[bytes, int], adm.parsed_held(doc.key, page.version, page.kind))[0]
    headers = {"Vary": "Accept", "Content-Type": ctype,
               "X-Stockade-Cache": CacheResult.STALE.value if stale else doc.result.value,
               "X-Stockade-Policy-Revision": revision}
    if verdict.blocks:
        # pip, uv and poetry never show why a page was refused; listing the
        # files and refusing their download puts the reason in front of the user.
        headers["X-Stockade-Refused"] = verdict.rule
    elif page.filtered is not None:
        headers["X-Stockade-Filtered"] = page.filtered
    if page.dropped:
        headers["X-Stockade-Filtered-Files"] = f"{page.dropped} source distributions hidden"
    return web.Response(body=body, headers=headers)


async def _page(adm: Admission, name: str, doc: CachedDoc, project: Project, refused: bool,
                who: Caller, ctype: str, provenance_base: str, revision: str) -> _Page:
    """``project``'s page as ``who`` sees it in ``ctype``: decided, rendered."""
    vf = None
    if not refused:
        vf = await adm.decide_versions(ECO, name, doc, project.facts, who,
                                       offload=len(doc.body) > _OFFLOAD_BYTES)

    async def render() -> tuple[bytes, int]:
        page, dropped = project.page, 0
        if vf is not None:
            page = pages.drop_versions(page, vf.hidden)
            page, dropped = _drop_refused_sdists(adm, name, page, vf.facts, who.team)
        page = pages.rewrite_files(page, lambda e: f"../../files/{name}/{quote(e.filename)}")
        page = pages.rewrite_provenance(
            page, lambda e: f"{provenance_base}{name}/{quote(e.filename)}")
        body = pages.render_json(page) if ctype == pages.JSON_V1 else pages.render_html(page)
        return body, dropped

    # Rendered once per document version, policy, decisions and form: a warm
    # request does no work that grows with the page.
    hidden = "refused" if vf is None else hashlib.sha256(
        "\n".join(sorted(vf.hidden)).encode()).hexdigest()[:16]
    # the revision names the team's policy too: a team may hide other files
    kind = f"pypi-body|{ctype}|{provenance_base}|{revision}|{hidden}"
    body, dropped = await adm.parsed(doc, kind, render, lambda r: len(r[0]))
    return _Page(body, doc.version, kind, None if vf is None else vf.header(), dropped)


_SDIST = (".tar.gz", ".zip", ".tar.bz2")


def _drop_refused_sdists(adm: Admission, name: str, page: pages.ProjectPage,
                         facts: Mapping[str, Facts],
                         team: str | None = None) -> tuple[pages.ProjectPage, int]:
    """Hide sdists the policy refuses where the same version has a wheel to install."""
    refused = []
    for entry in page.files:
        version = entry.version
        if version is None or not entry.filename.endswith(_SDIST):
            continue
        fact = facts.get(version)
        if fact is None or not fact.has_wheel:
            continue
        verdict = adm.gate.engine_for(team).decide(
            PackageRef(ECO, name, version, entry.filename), fact)
        if verdict.blocks:
            refused.append(entry.filename)
    return (pages.drop_files(page, refused), len(refused)) if refused else (page, 0)


async def file(request: web.Request) -> web.StreamResponse:
    """``/pypi/files/<name>/<filename>``: a distribution or its ``.metadata``."""
    name = _name(request)
    filename = request.match_info["filename"]
    is_metadata = filename.endswith(".metadata")
    dist = filename.removesuffix(".metadata") if is_metadata else filename
    if not pages.valid_filename(dist):
        raise BadRequestError(f"{filename!r} is not a valid distribution filename")
    svc = services(request)
    adm = svc.admission
    upstreams = adm.route(ECO, name)
    upstream = upstreams.owner
    project, doc = await _project(adm, upstream, name)
    entry = project.page.file(dist)
    if entry is None:
        raise NotFoundError(f"{dist} is not a file of {name} on upstream {upstream.name}")
    version = entry.version
    facts = await adm.version_facts(ECO, name, version, project.facts, upstreams)
    if is_metadata:
        if not isinstance(entry.core_metadata, dict):
            raise NotFoundError(f"upstream {upstream.name} publishes no metadata file for {dist}")
        expected = _digests(entry.core_metadata, dist)
        source_url, ctype = entry.url + ".metadata", "text/plain; charset=utf-8"
    else:
        expected = _digests(entry.hashes, dist)
        source_url, ctype = entry.url, "application/octet-stream"
    source = ArtifactSource(
        ecosystem=ECO, upstream=upstream, url=source_url, filename=filename,
        key=f"pypi|{upstream.name}|{filename}", expected=expected,
        content_type=ctype, headers=IMMUTABLE, name=name, version=version,
    )
    facts = await svc.pipeline.with_admitted(source, facts)

    async def gather(known: Facts) -> Facts:
        if is_metadata:
            return known
        return await pypi_provenance.gather(adm, svc.provenance, upstream, name, entry,
                                            known, doc_url=doc.url)

    await adm.admit_artifact(PackageRef(ECO, name, version, dist), facts, caller(request),
                             gather)
    return await svc.pipeline.serve(request, source)


async def provenance(request: web.Request) -> web.StreamResponse:
    """``/pypi/provenance/<name>/<filename>``: the upstream's PEP 740 provenance object
    for a file, served through the proxy (the page's ``provenance`` URLs point here)."""
    name = _name(request)
    filename = request.match_info["filename"]
    if not pages.valid_filename(filename):
        raise BadRequestError(f"{filename!r} is not a valid distribution filename")
    adm = services(request).admission
    upstreams = await adm.admit_name(ECO, name, caller(request))
    upstream = upstreams.owner
    project, page_doc = await _project(adm, upstream, name)
    entry = project.page.file(filename)
    if entry is None or entry.provenance is None:
        raise NotFoundError(f"upstream {upstream.name} publishes no provenance for {filename}")
    url = upstream.resolve(entry.provenance, page_doc.url)
    if url is None:
        raise NotFoundError(f"the provenance of {filename} is outside upstream {upstream.name}")
    doc = await pypi_provenance.document(adm, upstream, url)
    return web.Response(body=doc.body, headers={
        "Content-Type": doc.content_type or pypi_provenance.INTEGRITY,
        "X-Stockade-Cache": doc.result.value})


def _digests(hashes: Mapping[str, str], filename: str) -> tuple[Digest, ...]:
    out = []
    for alg in _VERIFIABLE:
        if alg in hashes:
            try:
                out.append(Digest.parse(alg, hashes[alg]))
            except DigestError as exc:
                raise IntegrityError(f"upstream digest for {filename} is malformed: {exc}") from exc
    if not out:
        # Without a published digest nothing proves the bytes are the upstream's.
        raise IntegrityError(f"upstream publishes no usable digest for {filename}; refusing it")
    return tuple(out)


def json_base(upstream: Upstream) -> str:
    """Where the upstream's JSON API lives (``/pypi/`` beside ``/simple/``)."""
    url = upstream.url
    if url.endswith("/simple/"):
        return url[: -len("simple/")] + "pypi/"
    return urljoin(url, "../pypi/")


async def json_api(request: web.Request) -> web.StreamResponse:
    """``/pypi/pypi/<name>[/<version>]/json`` with file URLs through the proxy, filtered
    as the project's simple page is (poetry and other tools resolve from it)."""
    name = _name(request)
    version = request.match_info.get("version")
    if version is not None and (not version or "/" in version or len(version) > 128):
        raise BadRequestError(f"{version!r} is not a valid version")
    adm = services(request).admission
    who = caller(request)
    # Its versions are decided on the project's facts below: a look-alike the loose
    # tier decides is left to them, as the simple page leaves it to its files.
    upstreams = await adm.admit_name(ECO, name, who, project_follows=True)
    upstream = upstreams.owner
    # The versions policy refuses are decided on the project page, as for pip.
    project, page_doc = await _project(adm, upstream, name)
    vf = await adm.decide_versions(ECO, name, page_doc, project.facts, who,
                                   offload=len(page_doc.body) > _OFFLOAD_BYTES)
    if version is not None and version in vf.refused:
        raise RefusedError(vf.verdicts[version])
    tail = f"{quote(name)}/json" if version is None else f"{quote(name)}/{quote(version)}/json"
    doc = await adm.document(ECO, upstream, json_base(upstream) + tail,
                             accept="application/json")
    data = json_object(doc.body, upstream.name, name)
    base = f"{origin(request, services(request).settings.server)}{PREFIX}/files/{name}/"
    _rewrite_json(data, upstream, doc.url, base)
    headers = {"X-Stockade-Cache": doc.result.value}
    if version is None and vf.hidden:
        _drop_json_versions(data, vf.hidden)
        headers["X-Stockade-Filtered"] = vf.header() or ""
    return web.Response(body=orjson.dumps(data), content_type="application/json",
                        headers=headers)


def _drop_json_versions(data: dict[str, Any], hidden: frozenset[str]) -> None:
    """Remove ``hidden`` from the JSON API's releases; where the latest version is
    hidden, the newest remaining one takes its place in ``info`` and ``urls``."""
    releases = data.get("releases")
    if isinstance(releases, dict):
        data["releases"] = releases = {v: f for v, f in releases.items() if v not in hidden}
    info = data.get("info")
    if not isinstance(info, dict) or info.get("version") not in hidden:
        return
    parsed = [(p, v) for v in (releases or {}) if (p := _parsed(v)) is not None]
    finals = [item for item in parsed if not item[0].is_prerelease]
    latest = max(finals or parsed, default=None)
    info["version"] = latest[1] if latest is not None else None
    data["urls"] = list((releases or {}).get(latest[1], [])) if latest is not None else []


def _parsed(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _rewrite_json(data: dict[str, Any], upstream: Upstream, doc_url: str, base: str) -> None:
    def fix(files: object) -> list[Any]:
        kept = []
        for item in files if isinstance(files, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                continue
            filename = item.get("filename")
            if not isinstance(filename, str) or not pages.valid_filename(filename):
                continue
            if upstream.resolve(item["url"], doc_url) is None:
                continue
            kept.append({**item, "url": base + quote(filename)})
        return kept

    if "urls" in data:
        data["urls"] = fix(data["urls"])
    releases = data.get("releases")
    if isinstance(releases, dict):
        data["releases"] = {v: fix(files) for v, files in releases.items()}


async def index(request: web.Request) -> web.StreamResponse:
    """``/pypi/simple/``: the project names of every upstream."""
    adm = services(request).admission
    names: dict[str, str] = {}
    for upstream in adm.upstreams[ECO]:
        doc = await adm.document(ECO, upstream, upstream.url, accept=pages.UPSTREAM_ACCEPT)
        try:
            found = await asyncio.to_thread(pages.parse_index, doc.body, doc.content_type)
        except pages.PageError as exc:
            raise UpstreamError(f"upstream {upstream.name} sent an unreadable index: {exc}",
                                upstream=upstream.name) from exc
        for found_name in found:
            norm = pages.normalize(found_name)
            if pages.valid_name(norm) and _routed_to(adm, norm, upstream):
                names.setdefault(norm, found_name)
    ctype = pages.negotiate(request.headers.get("Accept"))
    body = pages.render_index(sorted(names.values(), key=str.lower), ctype)
    return web.Response(body=body, headers={"Content-Type": ctype, "Vary": "Accept"})


def _routed_to(adm: Admission, name: str, upstream: Upstream) -> bool:
    try:
        return adm.route(ECO, name).owner is upstream
    except NotFoundError:
        return False
