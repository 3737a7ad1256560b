"""Which digest a Maven artifact's ``X-Checksum-*`` headers give, if any."""

from __future__ import annotations

import hashlib

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from stockade.proxy.ecosystems.maven_layout import header_digest
from stockade.storage.digest import Digest

DATA = b"jar bytes"
SHA1 = hashlib.sha1(DATA).hexdigest()  # noqa: S324
SHA256 = hashlib.sha256(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        headers.add(name, value)
    return CIMultiDictProxy(headers)


def test_central_sha1_and_md5() -> None:
    found = header_digest(_headers(("x-checksum-sha1", SHA1),
                                   ("x-checksum-md5", hashlib.md5(DATA).hexdigest())))  # noqa: S324
    assert found == Digest("sha1", SHA1)


def test_the_strongest_wins_and_case_is_ignored() -> None:
    found = header_digest(_headers(("X-Checksum-Sha1", SHA1), ("X-Checksum-Sha256", SHA256),
                                   ("X-Checksum-Sha512", SHA512.upper())))
    assert found == Digest("sha512", SHA512)


@pytest.mark.parametrize("pairs", [
    (),
    (("X-Checksum-Md5", hashlib.md5(DATA).hexdigest()),),  # noqa: S324 (never verified with)
    (("X-Checksum-Sha1", SHA1[:-2]),),
    (("X-Checksum-Sha1", SHA256),),  # a sha256 under the sha1 name: wrong length
    (("X-Checksum-Sha1", "g" * 40),),
    (("X-Checksum-Sha1", " "),),
    (("X-Checksum-Sha1", SHA1), ("X-Checksum-Sha1", SHA1)),
    (("X-Checksum-Sha1", f"{SHA1}, {SHA1}"),),
])
def test_malformed_values_are_ignored(pairs: tuple[tuple[str, str], ...]) -> None:
    assert header_digest(_headers(*pairs)) is None


def test_a_malformed_strong_header_leaves_the_weaker_one() -> None:
    found = header_digest(_headers(("X-Checksum-Sha256", "nothex"), ("X-Checksum-Sha1", SHA1)))
    assert found == Digest("sha1", SHA1)
