"""The Simple Repository API's documents, parsed and rendered (no I/O).

Owns PEP 503 HTML and PEP 691 JSON in both directions, PEP 700 fields, PEP 592
yanks, PEP 658/714 core-metadata markers, PEP 740 provenance keys, PEP 792
project status, content negotiation by q-values and name normalisation. The
handlers in ``pypi`` do the fetching.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any

import orjson
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
# Offers in PyPI's order: ties and wildcards go to the first.
_OFFERS = (TEXT_HTML, HTML_V1, JSON_V1)
_LATEST = {
    "application/vnd.pypi.simple.latest+json": JSON_V1,
    "application/vnd.pypi.simple.latest+html": HTML_V1,
}
UPSTREAM_ACCEPT = f"{JSON_V1}, {HTML_V1};q=0.2, {TEXT_HTML};q=0.01"

# re.ASCII: without it IGNORECASE lets U+0130, U+017F and the Kelvin sign
# match [A-Z]; fullmatch: "$" also matches before a final newline.
_VALID_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE | re.ASCII)
_SEPARATORS = re.compile(r"[-_.]+")
_VALID_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")


class PageError(ValueError):
    """An upstream document cannot be understood."""


def valid_name(name: str) -> bool:
    """True for a syntactically valid project name (PEP 508 / core metadata)."""
    return len(name) <= 200 and bool(_VALID_NAME.fullmatch(name))


def normalize(name: str) -> str:
    """PEP 503 normalisation."""
    return _SEPARATORS.sub("-", name).lower()


def valid_filename(filename: str) -> bool:
    """A distribution filename with no path parts or odd characters."""
    return (len(filename) <= 255 and bool(_VALID_FILENAME.fullmatch(filename))
            and ".." not in filename)


@functools.lru_cache(maxsize=16384)  # pure; parsing a wheel's name costs tens of us
def version_of(filename: str) -> str | None:
    """The version a wheel or sdist filename carries, or None when unknown."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None


def negotiate(accept: str | None) -> str:
    """The response type for an Accept header, as PyPI chooses it.

    Offers are ranked by the client's q-values; no header or no match gives
    ``text/html``.
    """
    if not accept:
        return TEXT_HTML
    best, best_q = TEXT_HTML, 0.0
    for offer in _OFFERS:
        q = _quality(accept, offer)
        # Strictly greater keeps the earlier offer on ties, as PyPI does.
        if q > best_q:
            best, best_q = offer, q
    return best


def _quality(accept: str, offer: str) -> float:
    best_specificity, q_found = -1, 0.0
    offer_type, _offer_sub = offer.split("/")
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = _LATEST.get(parts[0].lower(), parts[0].lower())
        q = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        mtype, _, msub = media.partition("/")
        if media == offer:
            specificity = 2
        elif mtype == offer_type and msub == "*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, q_found = specificity, q
    return q_found


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One distribution file of a project page."""

    filename: str
    url: str
    hashes: dict[str, str]
    requires_python: str | None = None
    size: int | None = None
    upload_time: str | None = None
    yanked: bool | str = False
    core_metadata: bool | dict[str, str] = False
    provenance: str | None = None
    gpg_sig: bool | None = None

    @property
    def version(self) -> str | None:
        return version_of(self.filename)


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """A project's files and facts, independent of the wire format."""

    name: str
    files: tuple[FileEntry, ...]
    versions: tuple[str, ...] = ()
    status: dict[str, Any] | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def file(self, filename: str) -> FileEntry | None:
        for entry in self.files:
            if entry.filename == filename:
                return entry
        return None


def parse_project(body: bytes, content_type: str, base_url: str, name: str) -> ProjectPage:
    """Parse an upstream project page in whichever format it came.

    Raises:
        PageError: the body is neither valid PEP 691 JSON nor HTML.
    """
    ctype = content_type.split(";")[0].strip().lower()
    if ctype.endswith("+json") or ctype == "application/json":
        return _parse_json(body, name)
    return _parse_html(body, name)


def _parse_json(body: bytes, name: str) -> ProjectPage:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PageError(f"project page is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise PageError("project page has no files list")
    files = []
    for item in doc["files"]:
        if not isinstance(item, dict):
            continue
        filename, url = item.get("filename"), item.get("url")
        if not isinstance(filename, str) or not isinstance(url, str):
            continue
        hashes = item.get("hashes")
        if not isinstance(hashes, dict):
            hashes = {}
        core = item.get("core-metadata", item.get("dist-info-metadata", False))
        size = item.get("size")
        files.append(FileEntry(
            filename=filename, url=url,
            hashes={str(k).lower(): str(v).lower() for k, v in hashes.items()},
            requires_python=_text_or_none(item.get("requires-python")),
            size=size if isinstance(size, int) and size >= 0 else None,
            upload_time=(item.get("upload-time")
                         if isinstance(item.get("upload-time"), str) else None),
            yanked=_yanked(item.get("yanked", False)),
            core_metadata=_core(core),
            provenance=item.get("provenance") if isinstance(item.get("provenance"), str) else None,
            gpg_sig=item.get("gpg-sig") if isinstance(item.get("gpg-sig"), bool) else None,
        ))
    versions = doc.get("versions")
    status = doc.get("project-status")
    return ProjectPage(
        name=name, files=tuple(files),
        versions=(tuple(v for v in versions if isinstance(v, str))
                  if isinstance(versions, list) else ()),
        # PEP 792 status and reason are strings; anything else is not passed on
        # (a deeply nested value would not even render: orjson writes 254 levels).
        status=({k: v for k, v in status.items() if isinstance(v, str)}
                if isinstance(status, dict) else None),
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _yanked(value: object) -> bool | str:
    if isinstance(value, str):
        return value or True
    return bool(value)


def _core(value: object) -> bool | dict[str, str]:
    if isinstance(value, dict):
        return {str(k).lower(): str(v).lower() for k, v in value.items()}
    return bool(value)


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str] = {}
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current, self._text = dict(attrs), []
        elif tag == "meta":
            a = dict(attrs)
            if a.get("name") and a.get("content") is not None:
                self.meta[str(a["name"])] = str(a["content"])

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.links.append((self._current, "".join(self._text).strip()))
            self._current = None


def _hash_from_fragment(href: str) -> tuple[str, dict[str, str]]:
    url, _, frag = href.partition("#")
    alg, sep, value = frag.partition("=")
    return url, ({alg.lower(): value.lower()} if sep and alg and value else {})


def _marker(value: str | None) -> bool | dict[str, str]:
    if value is None:
        return False
    alg, sep, hexval = value.partition("=")
    if sep:
        return {alg.lower(): hexval.lower()}
    return value.lower() == "true"


def _parse_html(body: bytes, name: str) -> ProjectPage:
    parser = _LinkParser()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except AssertionError as exc:  # HTMLParser's way of refusing broken markup
        raise PageError(f"project page is not parseable HTML: {exc}") from exc
    files = []
    for attrs, text in parser.links:
        href = attrs.get("href")
        if not href:
            continue
        url, hashes = _hash_from_fragment(href)
        filename = text or url.rstrip("/").rsplit("/", 1)[-1]
        yanked_attr = "data-yanked" in attrs
        core = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        if "data-core-metadata" not in attrs and "data-dist-info-metadata" not in attrs:
            core = None
        files.append(FileEntry(
            filename=filename, url=url, hashes=hashes,
            requires_python=attrs.get("data-requires-python") or None,
            yanked=(attrs.get("data-yanked") or True) if yanked_attr else False,
            core_metadata=_marker(core) if core is not None else False,
            provenance=attrs.get("data-provenance"),
            gpg_sig=(attrs.get("data-gpg-sig") == "true") if "data-gpg-sig" in attrs else None,
        ))
    status = None
    if "pypi:project-status" in parser.meta:
        status = {"status": parser.meta["pypi:project-status"]}
        if "pypi:project-status-reason" in parser.meta:
            status["reason"] = parser.meta["pypi:project-status-reason"]
    return ProjectPage(name=name, files=tuple(files), status=status)


def rewrite_files(
    page: ProjectPage, link: Callable[[FileEntry], str | None]
) -> ProjectPage:
    """Point every file at the proxy; ``link`` returns None to drop a file."""
    kept = []
    for entry in page.files:
        url = link(entry)
        if url is not None:
            kept.append(replace(entry, url=url))
    return replace(page, files=tuple(kept))


def rewrite_provenance(page: ProjectPage, link: Callable[[FileEntry], str]) -> ProjectPage:
    """Point every PEP 740 ``provenance`` URL at the proxy (files without one keep none)."""
    return replace(page, files=tuple(
        replace(e, provenance=link(e)) if e.provenance is not None else e
        for e in page.files))


def drop_versions(page: ProjectPage, versions: Iterable[str]) -> ProjectPage:
    """Remove the files of the given versions (refused by policy)."""
    gone = set(versions)
    return replace(
        page,
        files=tuple(f for f in page.files if f.version not in gone),
        versions=tuple(v for v in page.versions if v not in gone),
    )


def drop_files(page: ProjectPage, filenames: Iterable[str]) -> ProjectPage:
    """Remove single files (an sdist policy hides where a wheel exists)."""
    gone = set(filenames)
    return replace(page, files=tuple(f for f in page.files if f.filename not in gone))


def _api_version(page: ProjectPage) -> str:
    return "1.1" if all(f.size is not None for f in page.files) else "1.0"


def render_json(page: ProjectPage) -> bytes:
    """PEP 691 JSON with PEP 700 keys where known."""
    versions = list(page.versions) or sorted(
        {v for f in page.files if (v := f.version) is not None}
    )
    files = []
    for f in page.files:
        item: dict[str, Any] = {"filename": f.filename, "url": f.url, "hashes": f.hashes}
        item["requires-python"] = f.requires_python
        if f.size is not None:
            item["size"] = f.size
        if f.upload_time is not None:
            item["upload-time"] = f.upload_time
        item["yanked"] = f.yanked
        item["core-metadata"] = f.core_metadata
        item["data-dist-info-metadata"] = f.core_metadata
        if f.gpg_sig is not None:
            item["gpg-sig"] = f.gpg_sig
        if f.provenance is not None:
            item["provenance"] = f.provenance
        files.append(item)
    doc: dict[str, Any] = {"meta": {"api-version": _api_version(page)}, "name": page.name,
                           "versions": versions, "files": files}
    if page.status is not None:
        doc["project-status"] = page.status
    return orjson.dumps(doc)


def _attr(name: str, value: str) -> str:
    return f' {name}="{html.escape(value, quote=True)}"'


def render_html(page: ProjectPage) -> bytes:
    """PEP 503 HTML with the data attributes clients read."""
    out = ["<!DOCTYPE html>\n<html>\n<head>\n",
           f'<meta name="pypi:repository-version" content="{_api_version(page)}">\n']
    if page.status is not None and isinstance(page.status.get("status"), str):
        out.append(f'<meta name="pypi:project-status"{_attr("content", page.status["status"])}>\n')
    out.append(f"<title>Links for {html.escape(page.name)}</title>\n</head>\n<body>\n")
    out.append(f"<h1>Links for {html.escape(page.name)}</h1>\n")
    for f in page.files:
        href = f.url
        if "sha256" in f.hashes:
            href += f"#sha256={f.hashes['sha256']}"
        elif f.hashes:
            alg, value = next(iter(f.hashes.items()))
            href += f"#{alg}={value}"
        attrs = _attr("href", href)
        if f.requires_python:
            attrs += _attr("data-requires-python", f.requires_python)
        if isinstance(f.core_metadata, dict) and f.core_metadata:
            alg, value = next(iter(sorted(f.core_metadata.items())))
            attrs += _attr("data-dist-info-metadata", f"{alg}={value}")
            attrs += _attr("data-core-metadata", f"{alg}={value}")
        elif f.core_metadata is True:
            attrs += _attr("data-dist-info-metadata", "true") + _attr("data-core-metadata", "true")
        if f.yanked:
            attrs += _attr("data-yanked", f.yanked) if isinstance(f.yanked, str) else " data-yanked"
        if f.gpg_sig is not None:
            attrs += _attr("data-gpg-sig", "true" if f.gpg_sig else "false")
        if f.provenance:
            attrs += _attr("data-provenance", f.provenance)
        out.append(f"<a{attrs}>{html.escape(f.filename)}</a><br/>\n")
    out.append("</body>\n</html>\n")
    return "".join(out).encode()


def parse_index(body: bytes, content_type: str) -> list[str]:
    """Project names from an upstream root index page (JSON or HTML).

    Raises:
        PageError: the body is neither valid JSON nor HTML the parser can read.
    """
    ctype = content_type.split(";")[0].strip().lower()
    if ctype.endswith("+json"):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PageError(f"index is not valid JSON: {exc}") from exc
        projects = doc.get("projects") if isinstance(doc, dict) else None
        if not isinstance(projects, list):
            return []  # as for a document that is not an object: nothing listed
        return [p["name"] for p in projects
                if isinstance(p, dict) and isinstance(p.get("name"), str)]
    parser = _LinkParser()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
    except AssertionError as exc:  # HTMLParser's way of refusing broken markup
        raise PageError(f"index is not parseable HTML: {exc}") from exc
    return [text for _, text in parser.links if text]


def render_index(names: list[str], content_type: str) -> bytes:
    """The root index in the negotiated format, linking to the proxy's pages."""
    if content_type == JSON_V1:
        return orjson.dumps({"meta": {"api-version": "1.0"},
                             "projects": [{"name": n} for n in names]})
    links = "".join(
        f'<a href="{html.escape(normalize(n))}/">{html.escape(n)}</a><br/>\n' for n in names
    )
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        '<meta name="pypi:repository-version" content="1.0">\n'
        "<title>Simple index</title>\n</head>\n<body>\n" + links + "</body>\n</html>\n"
    ).encode()
