"""Maven: ``/maven/`` is a repository root that Maven and Gradle use as a mirror.

Owns turning repository paths into package references (``groupId:artifactId``),
choosing the upstreams a path may come from (an internal groupId only from the
internal upstream; public ones in order), verifying each artifact against the
strongest checksum its upstream publishes (sha512, sha256, then sha1) before it
is stored (the digest its response's ``X-Checksum-*`` headers carry, read from
the pipeline's header-first fill, unless the origin is known to publish a
stronger checksum file), serving checksum files computed from the verified
bytes, and merging and filtering ``maven-metadata.xml``. Fetching, caching,
verifying, coalescing and remembering 404s are the shared pipeline's (and the
metadata cache's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from aiohttp import web
from multidict import CIMultiDictProxy

from stockade.config.model import MavenSettings
from stockade.policy.model import Ecosystem, Facts, PackageRef
from stockade.policy.times import http_date
from stockade.proxy.admission import Admission, Caller, base_facts, caller
from stockade.proxy.checksum_origins import ChecksumOrigins
from stockade.proxy.ecosystems import maven_facts, maven_provenance
from stockade.proxy.ecosystems import maven_layout as layout
from stockade.proxy.ecosystems.base import Documents
from stockade.proxy.errors import (
    BadRequestError,
    IntegrityError,
    NotCachedError,
    NotFoundError,
    UpstreamError,
    UpstreamStatusError,
)
from stockade.proxy.metadocs import CachedDoc
from stockade.proxy.pipeline import ArtifactPipeline, ArtifactSource, Outcome, StoredArtifact
from stockade.proxy.responses import IMMUTABLE
from stockade.proxy.routing import Route
from stockade.proxy.state import services
from stockade.proxy.upstream import Upstream
from stockade.storage.digest import Digest, DigestError

logger = logging.getLogger(__name__)

ECO = Ecosystem.MAVEN
PREFIX = "/maven"
_CHECKSUM_TTL_S = 30 * 24 * 3600.0  # release checksums never change
_VERIFY_WITH = ("sha512", "sha256", "sha1")
_RECORDED = ("md5", "sha1", "sha256", "sha512")
_PUBLISHED = "published_at"  # the artifact record's publish date (ISO 8601, or null)


def setup(app: web.Application) -> None:
    """Register the Maven repository route."""
    app.router.add_route("GET", f"{PREFIX}/{{path:.+}}", repository, name="maven:repository")
    app.router.add_route("HEAD", f"{PREFIX}/{{path:.+}}", repository, name="maven:head")


def _settings(adm: Admission) -> MavenSettings:
    settings = adm.settings.maven
    assert isinstance(settings, MavenSettings)
    return settings


def _coordinate(group: str, artifact: str | None) -> str:
    return f"{group}:{artifact}" if artifact else group


async def repository(request: web.Request) -> web.StreamResponse:
    """Any path of the repository layout."""
    try:
        path = layout.parse_path(request.match_info["path"])
    except layout.LayoutError as exc:
        raise BadRequestError(str(exc)) from exc
    adm = services(request).admission
    if path.is_snapshot and _settings(adm).snapshots == "refuse":
        raise NotFoundError(
            f"{path.path}: stockade does not proxy SNAPSHOT versions here "
            "(maven.snapshots: refuse)"
        )
    if path.is_metadata:
        return await _metadata(request, adm, path)
    return await _artifact(request, adm, path)


async def _metadata(request: web.Request, adm: Admission, path: layout.MavenPath
                    ) -> web.Response:
    group, artifact = path.metadata_name()
    upstreams = adm.route(ECO, _coordinate(group, artifact))
    found, errors, docs = await _fetch_metadata(adm, path, upstreams.upstreams)
    if not found:
        if errors and all(getattr(e, "status", 0) == 404 for e in errors):
            offline = [e for e in errors if isinstance(e, NotCachedError)]
            raise offline[0] if offline else NotFoundError(f"no upstream has {path.path}")
        raise errors[0] if errors else NotFoundError(f"no upstream serves {path.path}")
    artifact_level = [d for d in found if d.is_artifact_level]
    headers = {"Cache-Control": "public, max-age=60"}
    if artifact_level:
        merged = layout.merge(artifact_level)
        name = f"{merged.group_id or group}:{merged.artifact_id or artifact}"
        who = caller(request)
        owner, _, named = name.partition(":")
        facts = dataclasses.replace(base_facts(upstreams), project=await maven_facts.project(
            adm, upstreams.upstreams, owner, named, merged.versions))
        await adm.admit(PackageRef(ECO, name), facts, who)
        vf = await adm.decide_versions(
            ECO, name, docs, dict.fromkeys(merged.versions, facts), who)
        body = layout.render(merged, hidden=vf.hidden)
        if (filtered := vf.header()) is not None:
            headers["X-Stockade-Filtered"] = filtered
    else:
        body = layout.render(found[0])
    if path.checksum is not None:
        digest = hashlib.new(path.checksum, body).hexdigest()
        return web.Response(body=digest.encode(), content_type="text/plain", headers=headers)
    return web.Response(body=body, content_type="application/xml", headers=headers)


async def _fetch_metadata(
    adm: Documents, path: layout.MavenPath, upstreams: Sequence[Upstream]
) -> tuple[list[layout.Metadata], list[UpstreamError | NotCachedError], list[CachedDoc]]:
    """Each upstream's ``maven-metadata.xml`` at ``path``, the failures, and the
    documents read."""
    found: list[layout.Metadata] = []
    errors: list[UpstreamError | NotCachedError] = []
    docs: list[CachedDoc] = []
    for upstream in upstreams:
        try:
            doc = await adm.document(ECO, upstream, upstream.url.rstrip("/") + "/" + path.path,
                                     accept="application/xml")
        except (UpstreamError, NotCachedError) as exc:  # down, missing, or offline
            errors.append(exc)
            continue
        found.append(_parse(doc, upstream))
        docs.append(doc)
    return found, errors, docs


def _parse(doc: CachedDoc, upstream: Upstream) -> layout.Metadata:
    try:
        return layout.parse_metadata(doc.body)
    except layout.MetadataError as exc:
        raise UpstreamError(
            f"upstream {upstream.name} sent unusable maven-metadata.xml ({doc.url}): {exc}",
            upstream=upstream.name,
        ) from exc


async def _artifact(request: web.Request, adm: Admission, path: layout.MavenPath
                    ) -> web.StreamResponse:
    coords = path.coordinates
    assert coords is not None  # parse_path guarantees artifact paths have them
    group, artifact, _ = coords
    who = caller(request)
    upstreams = await adm.admit_name(ECO, f"{group}:{artifact}", who)
    pipeline = services(request).pipeline
    # A stored, verified copy is served without asking anyone; what it is decided
    # on (the publish date) was recorded when it was stored.
    warm = await _stored(adm, pipeline, path, upstreams.upstreams)
    if warm is not None:
        return await _answer(request, adm, path, who, upstreams, *warm)
    svc = services(request)
    origins = svc.checksum_origins
    if path.is_snapshot or svc.read_only is not None or any(
            u.offline for u in upstreams.upstreams):
        # the checksum files, as before: nothing is opened first
        source, published = await _source(adm, path, upstreams.upstreams, origins)
        return await _answer(request, adm, path, who, upstreams, source, None, published)
    # A cold artifact costs as few upstream requests as the upstream allows: its
    # response is opened first (once for every request asking at once, in every
    # worker process), and a digest in its headers spares the checksum file.
    stale_if_error_s = adm.cache_settings(ECO).cache.stale_if_error_s
    missing: list[str] = []
    for upstream in upstreams.upstreams:
        template = _artifact_source(path, upstream, (), None)
        async with pipeline.opened(template, partial(_decide, adm, path, origins),
                                   adm.metacache, stale_if_error_s=stale_if_error_s) as head:
            if head.outcome is Outcome.MISSING:
                missing.append(upstream.name)
                continue
            if head.outcome is Outcome.STORED:  # stored meanwhile (another worker process)
                warm = await _stored(adm, pipeline, path, upstreams.upstreams)
                if warm is not None:
                    return await _answer(request, adm, path, who, upstreams, *warm)
                source, published = await _source(adm, path, upstreams.upstreams, origins)
                return await _answer(request, adm, path, who, upstreams, source, None,
                                     published)
            return await _answer(request, adm, path, who, upstreams, head.source, None,
                                 _iso_date(head.source.recorded.get(_PUBLISHED)))
    raise NotFoundError(f"{path.path} is not on upstream {', '.join(missing)}")


async def _answer(request: web.Request, adm: Admission, path: layout.MavenPath,
                  who: Caller, upstreams: Route[Upstream], source: ArtifactSource,
                  stored: StoredArtifact | None, published: datetime | None
                  ) -> web.StreamResponse:
    """Decide on the artifact from ``source`` (stored as ``stored``, if it is) and
    answer with it or its checksum."""
    coords = path.coordinates
    assert coords is not None
    group, artifact, version = coords
    pipeline = services(request).pipeline
    facts = Facts(upstream=source.upstream.name, internal=source.upstream.internal,
                  published_at=published)
    facts = await adm.version_facts(ECO, f"{group}:{artifact}", version, {version: facts},
                                    upstreams, complete=False)
    ref = PackageRef(ECO, f"{group}:{artifact}", version, path.filename)
    if not path.is_snapshot:  # a -SNAPSHOT file is replaced by design
        facts = await pipeline.with_admitted(source, facts)
    await adm.admit_artifact(ref, facts, who, lambda known: maven_provenance.gather(
        adm, services(request).provenance, pipeline, source, ref, known))
    if path.checksum is None:
        if stored is not None:
            return pipeline.respond(request, source, stored)
        return await pipeline.serve(request, source)
    info = stored.info if stored is not None else await pipeline.ensure(source)
    value = info.digests.get(path.checksum) or await pipeline.digest(info, path.checksum)
    return web.Response(text=value, content_type="text/plain",
                        headers={"Cache-Control": source.headers.get("Cache-Control", "")})


async def _decide(adm: Admission, path: layout.MavenPath, origins: ChecksumOrigins | None,
                  template: ArtifactSource, headers: CIMultiDictProxy[str]) -> ArtifactSource:
    """The pipeline's hook for an opened artifact response: the source to verify it
    with. A digest in its headers spares the checksum file, unless the origin is
    known to publish a stronger one; ``Last-Modified`` stands for the publish date
    where no checksum file gives one."""
    upstream = template.upstream
    header = layout.header_digest(headers)
    published = http_date(headers.get("Last-Modified"))
    expected: tuple[Digest, ...] | None = None
    if header is not None and not await _stronger_published(origins, upstream, header):
        expected = (header,)
    else:
        expected, dated = await _published_checksum(adm, upstream, template.url, origins)
        published = dated if expected is not None else published
        if expected is None:
            expected = (header,) if header is not None else _unverified(adm, path, upstream)
    return _artifact_source(path, upstream, expected, published)


async def _stronger_published(origins: ChecksumOrigins | None, upstream: Upstream,
                              header: Digest) -> bool:
    """Whether ``upstream`` is known to publish a checksum file stronger than the
    digest its headers carry (then that file is asked for, as without headers)."""
    if origins is None:
        return False
    stronger = layout.STRENGTH[:layout.STRENGTH.index(header.algorithm)]
    return bool(set(stronger) & await origins.published(upstream))


def _artifact_source(path: layout.MavenPath, upstream: Upstream, expected: tuple[Digest, ...],
                     published: datetime | None) -> ArtifactSource:
    url = upstream.url.rstrip("/") + "/" + path.path
    return ArtifactSource(
        ecosystem=ECO, upstream=upstream, url=url, filename=path.filename,
        key=f"maven|{upstream.name}|{path.path}", expected=expected,
        algorithms=_RECORDED, checksum_headers=("sha1", "md5"),
        content_type=_content_type(path.filename),
        headers={"Cache-Control": "no-cache"} if path.is_snapshot else IMMUTABLE,
        name=f"{path.coordinates[0]}:{path.coordinates[1]}" if path.coordinates else None,
        version=path.coordinates[2] if path.coordinates else None,
        recorded={_PUBLISHED: published.isoformat() if published else None},
    )


async def _stored(adm: Admission, pipeline: ArtifactPipeline, path: layout.MavenPath,
                  upstreams: Sequence[Upstream]
                  ) -> tuple[ArtifactSource, StoredArtifact, datetime | None] | None:
    """The artifact as stored from the first upstream that gave it, with its recorded
    publish date; None when it must be looked up upstream (never stored, stored
    before publish dates were recorded, a SNAPSHOT, or stored unverified and
    ``maven.missing_checksum`` is now ``block``)."""
    if path.is_snapshot:
        return None
    strict = _settings(adm).missing_checksum == "block"
    for upstream in upstreams:
        source = _artifact_source(path, upstream, (), None)
        stored = await pipeline.stored(source)
        if stored is None:
            continue
        record = stored.record
        if _PUBLISHED not in record or (strict and not record.get("verified")):
            return None
        published = _iso_date(record.get(_PUBLISHED))
        return dataclasses.replace(source, recorded={_PUBLISHED: record.get(_PUBLISHED)}
                                   ), stored, published
    return None


async def _source(adm: Admission, path: layout.MavenPath, upstreams: Sequence[Upstream],
                  origins: ChecksumOrigins | None = None,
                  ) -> tuple[ArtifactSource, datetime | None]:
    """The first upstream that has the file, with the checksum it publishes and when.

    The checksum file's ``Last-Modified`` stands for the publish date (Central
    writes both together); the release-age rule reads it. Without a checksum file,
    the file's own ``Last-Modified`` does.
    """
    missing: list[str] = []
    for upstream in upstreams:
        url = upstream.url.rstrip("/") + "/" + path.path
        expected, published = await _published_checksum(adm, upstream, url, origins)
        if expected is None:
            found, published = await _exists(adm, upstream, url)
            if not found:
                missing.append(upstream.name)
                continue
            expected = _unverified(adm, path, upstream)
        return _artifact_source(path, upstream, expected, published), published
    raise NotFoundError(f"{path.path} is not on upstream {', '.join(missing)}")


def _unverified(adm: Admission, path: layout.MavenPath, upstream: Upstream) -> tuple[()]:
    if _settings(adm).missing_checksum == "block":
        raise IntegrityError(
            f"upstream {upstream.name} publishes no checksum for {path.path}; refusing it "
            "(maven.missing_checksum: block)"
        )
    logger.warning("upstream %s publishes no checksum for %s; serving it unverified "
                   "(maven.missing_checksum: warn)", upstream.name, path.path)
    return ()


async def _published_checksum(adm: Admission, upstream: Upstream, url: str,
                              origins: ChecksumOrigins | None = None,
                              ) -> tuple[tuple[Digest, ...] | None, datetime | None]:
    """The strongest checksum the upstream publishes beside ``url`` (if any), and its date.

    An algorithm ``origins`` knows the upstream not to publish is not asked for (a
    cold artifact costs its checksum file and itself, not a 404 per stronger
    algorithm); what was found and missed here teaches ``origins``.
    Offline, a checksum file never asked for is passed over for a weaker one that was
    (a file stored before 404s were remembered is found by the one that verified it).

    Raises:
        NotCachedError: offline, and no checksum file of ``url`` was ever cached.
    """
    offline: NotCachedError | None = None
    asked = _VERIFY_WITH if origins is None else await origins.worth_asking(
        upstream, _VERIFY_WITH)
    missing: list[str] = []
    for alg in asked:
        try:
            doc = await adm.document(ECO, upstream, f"{url}.{alg}", accept="text/plain",
                                     ttl_s=_CHECKSUM_TTL_S)
        except UpstreamStatusError as exc:
            if exc.upstream_status == 404:
                missing.append(alg)
                continue
            raise
        except NotCachedError as exc:
            offline = offline or exc
            continue
        token = layout.first_token(doc.body)
        try:
            digest = Digest.parse(alg, token or "")
        except DigestError as exc:
            raise IntegrityError(
                f"upstream {upstream.name} published a malformed {alg} for {url}"
            ) from exc
        if origins is not None and offline is None:
            await origins.learn(upstream, alg, missing)
        return (digest,), http_date(doc.last_modified)
    if offline is not None:
        raise offline
    return None, None




def _iso_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


async def _exists(adm: Admission, upstream: Upstream, url: str
                  ) -> tuple[bool, datetime | None]:
    """Whether the upstream has ``url`` (asked once, a 404 remembered), and its date."""
    cache = adm.cache_settings(ECO).cache
    try:
        doc = await adm.metacache.probe(ECO, upstream, url, ttl_s=cache.metadata_ttl_s,
                                        stale_if_error_s=cache.stale_if_error_s)
    except UpstreamStatusError as exc:
        if exc.upstream_status in (404, 410):
            return False, None
        raise
    return True, http_date(doc.last_modified)


def _content_type(filename: str) -> str:
    if filename.endswith((".pom", ".xml", ".module")):
        return "application/xml" if not filename.endswith(".module") else "application/json"
    if filename.endswith(".jar"):
        return "application/java-archive"
    if filename.endswith(".asc"):
        return "application/pgp-signature"
    return "application/octet-stream"


async def versions(adm: Documents, upstreams: Route[Upstream], name: str) -> dict[str, Facts]:
    """The versions ``maven-metadata.xml`` lists for ``groupId:artifactId``, merged
    across the upstreams routing allows (for the admission path).

    Raises:
        BadRequestError: the name is not ``groupId:artifactId``.
    """
    group, sep, artifact = name.partition(":")
    if not sep or not group or not artifact:
        raise BadRequestError(f"{name!r} is not groupId:artifactId")
    try:
        path = layout.parse_path(f"{group.replace('.', '/')}/{artifact}/{layout.METADATA}")
    except layout.LayoutError as exc:
        raise BadRequestError(str(exc)) from exc
    found, errors, _ = await _fetch_metadata(adm, path, upstreams.upstreams)
    if not found and errors:
        raise errors[0]
    merged = layout.merge(d for d in found if d.is_artifact_level)
    project = await maven_facts.project(adm, upstreams.upstreams, group, artifact,
                                        merged.versions)
    return dict.fromkeys(merged.versions,
                         dataclasses.replace(base_facts(upstreams), project=project))
