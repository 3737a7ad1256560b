"""Who built an artifact, read from a verified Fulcio signing certificate.

Owns reading Sigstore's certificate extensions (OIDC issuer, source repository,
build config, ref) into a ``BuildIdentity``, and the sigstore verification policy
that accepts any certificate naming an issuer: which identity is *allowed* is
decided later, by policy, on the identity read here. Pure: certificates in, values out.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stockade.policy.model import BuildIdentity, Publisher

if TYPE_CHECKING:  # cryptography is imported on the first certificate read, not at start
    from cryptography import x509

_OID = "1.3.6.1.4.1.57264.1."
# Fulcio's extensions, by the last arc of their OID
ISSUER_V1 = "1"  # raw bytes
WORKFLOW_REPOSITORY_V1 = "5"  # raw bytes: owner/repo (GitHub)
ISSUER_V2 = "8"  # DER UTF8String, as every V2 extension
SOURCE_REPOSITORY = "12"
SOURCE_REF = "14"
BUILD_CONFIG = "18"


@cache
def _oid(arc: str) -> x509.ObjectIdentifier:
    from cryptography import x509
    return x509.ObjectIdentifier(_OID + arc)

_PUBLISHERS = {
    "https://token.actions.githubusercontent.com": Publisher.GITHUB,
    "https://gitlab.com": Publisher.GITLAB,
    "https://accounts.google.com": Publisher.GOOGLE,
}


def _raw(cert: x509.Certificate, arc: str) -> bytes | None:
    from cryptography import x509
    try:
        ext = cert.extensions.get_extension_for_oid(_oid(arc))
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _utf8(der: bytes | None) -> str | None:
    """The text of a DER UTF8String (tag 0x0c), as the V2 extensions carry it."""
    if der is None or len(der) < 2 or der[0] != 0x0C:
        return None
    length, start = der[1], 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold the length
        size = length & 0x7F
        length, start = int.from_bytes(der[2:2 + size], "big"), 2 + size
    body = der[start:start + length]
    return body.decode("utf-8", "replace") if len(body) == length else None


def issuer_of(cert: x509.Certificate) -> str | None:
    """The OIDC issuer the certificate was issued for (V2 extension, else V1)."""
    issuer = _utf8(_raw(cert, ISSUER_V2))
    if issuer is None and (raw := _raw(cert, ISSUER_V1)) is not None:
        issuer = raw.decode("utf-8", "replace")
    return issuer


def publisher_of(issuer: str | None) -> Publisher:
    """GitHub, GitLab, Google or other, by OIDC issuer (self-managed GitLab by host)."""
    if issuer is None:
        return Publisher.OTHER
    found = _PUBLISHERS.get(issuer.rstrip("/"))
    if found is not None:
        return found
    host = urlsplit(issuer).hostname or ""
    return Publisher.GITLAB if host.startswith("gitlab.") else Publisher.OTHER


def _signer(cert: x509.Certificate) -> str | None:
    from cryptography import x509
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for kind in (x509.UniformResourceIdentifier, x509.RFC822Name):
        names = san.get_values_for_type(kind)
        if names:
            return str(names[0])
    return None


def identity_of(cert: x509.Certificate) -> BuildIdentity:
    """The build identity a (verified) signing certificate states."""
    signer = _signer(cert)
    repository = _utf8(_raw(cert, SOURCE_REPOSITORY))
    if repository is None and (raw := _raw(cert, WORKFLOW_REPOSITORY_V1)) is not None:
        repository = "https://github.com/" + raw.decode("utf-8", "replace")
    config = _utf8(_raw(cert, BUILD_CONFIG)) or signer
    workflow, ref = _workflow(config, repository)
    ref = _utf8(_raw(cert, SOURCE_REF)) or ref
    return BuildIdentity(publisher_of(issuer_of(cert)), repository, workflow, ref, signer)


def _workflow(config: str | None, repository: str | None) -> tuple[str | None, str | None]:
    """(path of the build file in the repository, ref) from a build config URI such as
    ``https://github.com/o/r/.github/workflows/x.yml@refs/tags/v1``."""
    if config is None or repository is None or not config.startswith(repository + "/"):
        return None, None
    path, _, ref = config[len(repository):].lstrip("/").partition("@")
    return path or None, ref or None


class KnownIssuer:
    """A sigstore verification policy: the certificate must name an OIDC issuer.

    Identity is checked by stockade's policy afterwards, on ``identity_of``; this
    only refuses certificates that carry no identity at all.
    """

    def verify(self, cert: x509.Certificate) -> None:
        if issuer_of(cert) is None:
            from sigstore.errors import VerificationError
            raise VerificationError("the signing certificate names no OIDC issuer")
