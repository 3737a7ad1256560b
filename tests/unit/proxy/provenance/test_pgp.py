"""Maven ``.asc`` signatures: keys and signatures made here, with the library we verify with."""

from __future__ import annotations

import pysequoia
import pytest

from stockade.policy.model import ProvenanceKind, ProvenanceStatus
from stockade.proxy.provenance.pgp import PgpKeyError, load_keyring, verify_detached

S = ProvenanceStatus
JAR = b"PK\x03\x04 not really a jar, but bytes all the same\n" * 100


@pytest.fixture(scope="module")
def signer() -> pysequoia.Tsk:
    return pysequoia.Tsk.generate("Release Manager <release@example.org>")


@pytest.fixture(scope="module")
def stranger() -> pysequoia.Tsk:
    return pysequoia.Tsk.generate("Someone Else <someone@example.net>")


def armored(key: pysequoia.Tsk) -> bytes:
    return str(key.extract_certificate()).encode()


def asc(key: pysequoia.Tsk, data: bytes = JAR) -> bytes:
    return pysequoia.sign(key.signer(), data, mode=pysequoia.SignatureMode.DETACHED)


def test_signature_by_an_allowed_key_verifies(signer: pysequoia.Tsk) -> None:
    result = verify_detached(JAR, asc(signer), load_keyring([armored(signer)]))
    assert result.kind is ProvenanceKind.PGP
    assert result.result is S.VERIFIED, result.detail
    assert signer.extract_certificate().fingerprint.upper() in result.detail


def test_binary_signature_and_several_keys_in_one_file(signer: pysequoia.Tsk,
                                                       stranger: pysequoia.Tsk) -> None:
    binary = pysequoia.sign(signer.signer(), JAR, mode=pysequoia.SignatureMode.DETACHED,
                            armor=False)
    keyring = load_keyring([armored(stranger) + armored(signer)])
    assert len(keyring.certs) == 2
    assert verify_detached(JAR, binary, keyring).result is S.VERIFIED


def test_signature_by_another_key_is_a_mismatch(signer: pysequoia.Tsk,
                                                stranger: pysequoia.Tsk) -> None:
    result = verify_detached(JAR, asc(stranger), load_keyring([armored(signer)]))
    assert result.result is S.MISMATCH
    assert "not one of the 1 keys allowed" in result.detail


def test_tampered_artifact_is_invalid(signer: pysequoia.Tsk) -> None:
    tampered = JAR[:-1] + b"!"
    result = verify_detached(tampered, asc(signer), load_keyring([armored(signer)]))
    assert result.result is S.INVALID
    assert "does not verify" in result.detail
    assert "Stack backtrace" not in result.detail


def test_signature_over_other_bytes_is_invalid(signer: pysequoia.Tsk) -> None:
    other = asc(signer, b"another artifact")
    assert verify_detached(JAR, other, load_keyring([armored(signer)])).result is S.INVALID


def test_garbage_asc_is_invalid(signer: pysequoia.Tsk) -> None:
    result = verify_detached(JAR, b"-----BEGIN PGP SIGNATURE-----\n\nnope\n",
                             load_keyring([armored(signer)]))
    assert result.result is S.INVALID


def test_no_asc_is_missing(signer: pysequoia.Tsk) -> None:
    assert verify_detached(JAR, None, load_keyring([armored(signer)])).result is S.MISSING


@pytest.mark.parametrize("data", [b"", b"not a key at all"])
def test_key_files_that_hold_no_key_are_refused(data: bytes) -> None:
    with pytest.raises(PgpKeyError, match="key file 1"):
        load_keyring([data])
