"""The Maven repository layout and ``maven-metadata.xml``, as pure functions.

Owns reading a request path into what it names (an artifact file, a checksum
of one, or metadata at group, artifact or version level), reading the digests
a checksum file or an artifact's ``X-Checksum-*`` headers carry, and parsing,
merging, filtering and writing ``maven-metadata.xml``. XML from upstreams is
parsed with defusedxml: no DTDs, no entity expansion; the caller bounds size.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, SubElement, tostring

from defusedxml import ElementTree as SafeTree
from defusedxml.common import DefusedXmlException
from multidict import CIMultiDictProxy

from stockade.policy.model import Ecosystem
from stockade.policy.versions import parse_version
from stockade.storage.digest import Digest, DigestError

METADATA = "maven-metadata.xml"
CHECKSUMS = ("sha512", "sha256", "sha1", "md5")  # strongest first
STRENGTH = CHECKSUMS[:3]  # those an artifact is verified with; md5 never is
# Used with fullmatch: a closing "$" would also match before a final newline.
_SEGMENT = re.compile(r"[A-Za-z0-9_+~$-][A-Za-z0-9._+~$-]*")
_TIMESTAMP = re.compile(r"-\d{8}\.\d{6}-\d+")


class LayoutError(ValueError):
    """A path that is not part of a Maven repository layout."""


class MetadataError(ValueError):
    """``maven-metadata.xml`` that cannot be read safely."""


@dataclass(frozen=True, slots=True)
class MavenPath:
    """What a request path names."""

    path: str  # the file path without a checksum suffix
    segments: tuple[str, ...]
    checksum: str | None  # the checksum algorithm when a checksum file is asked for
    is_metadata: bool

    @property
    def filename(self) -> str:
        return self.segments[-1]

    @property
    def coordinates(self) -> tuple[str, str, str] | None:
        """(groupId, artifactId, version) of an artifact file."""
        if self.is_metadata or len(self.segments) < 4:
            return None
        return ".".join(self.segments[:-3]), self.segments[-3], self.segments[-2]

    def metadata_name(self) -> tuple[str, str | None]:
        """(groupId, artifactId) for metadata at artifact level, read from the path.

        The path alone cannot tell group-level metadata (plugin prefixes) from
        artifact-level metadata; the caller reads the document to know.
        """
        parts = self.segments[:-1]
        if parts and parts[-1].endswith("-SNAPSHOT") and len(parts) >= 3:
            return ".".join(parts[:-2]), parts[-2]
        return ".".join(parts[:-1]), parts[-1] if parts else None

    @property
    def is_snapshot(self) -> bool:
        return any(s.endswith("-SNAPSHOT") for s in self.segments[:-1]) or (
            self.coordinates is not None and bool(_TIMESTAMP.search(self.filename))
            and self.coordinates[2].endswith("-SNAPSHOT"))


def parse_path(raw: str) -> MavenPath:
    """Read ``raw`` (relative to the repository root).

    Raises:
        LayoutError: the path is not a safe repository path.
    """
    if len(raw) > 1024 or "\\" in raw or "//" in raw:
        raise LayoutError(f"{raw!r} is not a repository path")
    segments = tuple(raw.strip("/").split("/"))
    if len(segments) < 2 or any(s in (".", "..") or not _SEGMENT.fullmatch(s) for s in segments):
        raise LayoutError(f"{raw!r} is not a repository path")
    checksum = None
    name = segments[-1]
    for alg in CHECKSUMS:
        if name.endswith(f".{alg}"):
            checksum, name = alg, name[: -len(alg) - 1]
            break
    segments = (*segments[:-1], name)
    is_metadata = name == METADATA
    if not is_metadata:
        if len(segments) < 4:
            raise LayoutError(f"{raw!r} is not <group>/<artifact>/<version>/<file>")
        artifact, version = segments[-3], segments[-2]
        base = version.removesuffix("-SNAPSHOT")
        if not name.startswith(f"{artifact}-{base}"):
            raise LayoutError(f"{name!r} is not a file of {artifact} {version}")
    return MavenPath("/".join(segments), segments, checksum, is_metadata)


@dataclass
class Metadata:
    """The parts of ``maven-metadata.xml`` stockade reads and writes."""

    group_id: str | None = None
    artifact_id: str | None = None
    version: str | None = None
    versions: list[str] = field(default_factory=list)
    last_updated: str | None = None
    raw: Element | None = None  # group-level and version-level documents pass through

    @property
    def is_artifact_level(self) -> bool:
        return self.artifact_id is not None and self.version is None and self.raw is None


def _text(node: Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def parse_metadata(body: bytes) -> Metadata:
    """Read one ``maven-metadata.xml``.

    Raises:
        MetadataError: not XML, entities or DTDs, or not a metadata document.
    """
    try:
        root = SafeTree.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                   forbid_external=True)
    # LookupError: an encoding in the XML declaration that Python does not know;
    # ValueError: one expat cannot read ("UTF--16": multi-byte encodings).
    except (DefusedXmlException, SafeTree.ParseError, LookupError, ValueError) as exc:
        raise MetadataError(f"unsafe or unreadable XML: {exc}") from exc
    if root.tag != "metadata":
        raise MetadataError(f"root element is <{root.tag}>, not <metadata>")
    versioning = root.find("versioning")
    group, artifact, version = (_text(root, "groupId"), _text(root, "artifactId"),
                                _text(root, "version"))
    if artifact is None or version is not None or (
            versioning is not None and versioning.find("snapshot") is not None):
        return Metadata(group, artifact, version, raw=root)  # group or version level
    versions = [v.text.strip() for v in (versioning.findall("versions/version")
                                         if versioning is not None else []) if v.text]
    return Metadata(group, artifact, None, versions, _text(versioning, "lastUpdated"))


def merge(documents: Iterable[Metadata]) -> Metadata:
    """Artifact-level documents of several upstreams as one (versions in order, unique)."""
    out = Metadata()
    for doc in documents:
        out.group_id = out.group_id or doc.group_id
        out.artifact_id = out.artifact_id or doc.artifact_id
        for v in doc.versions:
            if v not in out.versions:
                out.versions.append(v)
        if doc.last_updated and (out.last_updated or "") < doc.last_updated:
            out.last_updated = doc.last_updated
    return out


def _sorted(versions: Iterable[str]) -> list[str]:
    def key(v: str) -> tuple[int, object]:
        parsed = parse_version(Ecosystem.MAVEN, v)
        return (0, v) if parsed is None else (1, parsed)

    try:
        return sorted(versions, key=key)
    except TypeError:
        return list(versions)


_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def render(doc: Metadata, *, hidden: Collection[str] = ()) -> bytes:
    """The document clients get: hidden versions removed, latest/release recomputed."""
    if doc.raw is not None:
        return _DECLARATION + bytes(tostring(doc.raw, encoding="utf-8"))
    kept = _sorted(v for v in doc.versions if v not in hidden)
    root = Element("metadata")
    SubElement(root, "groupId").text = doc.group_id or ""
    SubElement(root, "artifactId").text = doc.artifact_id or ""
    versioning = SubElement(root, "versioning")
    if kept:
        SubElement(versioning, "latest").text = kept[-1]
        releases = [v for v in kept if not v.endswith("-SNAPSHOT")]
        if releases:
            SubElement(versioning, "release").text = releases[-1]
    listed = SubElement(versioning, "versions")
    for v in kept:
        SubElement(listed, "version").text = v
    if doc.last_updated:
        SubElement(versioning, "lastUpdated").text = doc.last_updated
    return _DECLARATION + bytes(tostring(root, encoding="utf-8")) + b"\n"


def first_token(body: bytes) -> str | None:
    """The hex digest in a checksum file (``hex`` or ``hex  filename``)."""
    text = body.decode("ascii", errors="replace").strip()
    token = text.split()[0].lower() if text else ""
    return token if token and all(c in "0123456789abcdef" for c in token) else None


def header_digest(headers: CIMultiDictProxy[str]) -> Digest | None:
    """The strongest well-formed ``X-Checksum-<alg>`` digest in ``headers``, or None.
    A header sent more than once, of the wrong length or not hex is ignored (the
    checksum file is asked for instead)."""
    for alg in STRENGTH:
        values = headers.getall(f"X-Checksum-{alg.capitalize()}", [])
        if len(values) != 1:
            continue
        value = values[0].strip()
        if not value or not all(c in "0123456789abcdefABCDEF" for c in value):
            continue
        try:
            return Digest.parse(alg, value)
        except DigestError:
            continue
    return None
