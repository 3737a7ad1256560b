"""``stockade cache verify`` over storage it cannot write: every blob is re-hashed,
the bad ones are reported as what would be removed, nothing is removed, the exit
status is 1 when any is bad; storage it cannot read is one line, not a traceback.
The command runs as a process, over a read-only bind mount in a private mount
namespace (as tests/integration/test_read_only_storage.py does)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_read_only_storage import _read_only_mounts

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]


def _blob(storage: Path, data: bytes, *, stored_as: bytes | None = None) -> tuple[str, Path]:
    """A blob file named by the digest of ``data``, holding ``stored_as`` (or ``data``)."""
    sha256 = hashlib.sha256(data).hexdigest()
    path = storage / "blobs" / "sha256" / sha256[:2] / sha256
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if stored_as is None else stored_as)
    return sha256, path


def _verify(storage: Path, *, read_only: bool) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "stockade.proxy.cli", "cache", "verify",
               "--storage", str(storage)]
    if read_only:
        unshare = shutil.which("unshare")
        assert unshare is not None
        command = [unshare, "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"',
                   str(storage), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=100,  # noqa: S603
                          check=False)


def test_read_only_storage_is_verified_and_bad_blobs_reported_not_removed(
        tmp_path: Path) -> None:
    why_not = _read_only_mounts(tmp_path / "probe")
    if why_not is not None:
        pytest.skip(why_not)
    storage = tmp_path / "data"
    good, good_path = _blob(storage, b"good bytes")
    bad, bad_path = _blob(storage, b"original bytes", stored_as=b"tampered")
    done = _verify(storage, read_only=True)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    summary, *rest = done.stdout.splitlines()
    assert summary.startswith("checked 2 blobs, 1 failed verification and would be removed")
    assert "read-only (Read-only file system): nothing was removed" in summary
    assert rest == [f"would remove sha256:{bad}"]
    assert bad_path.read_bytes() == b"tampered" and good_path.read_bytes() == b"good bytes"
    assert good not in done.stdout

    bad_path.unlink()  # now all intact
    done = _verify(storage, read_only=True)
    assert done.returncode == 0, done
    assert done.stdout.startswith("checked 1 blobs, 0 failed verification")


def test_writable_storage_still_removes_bad_blobs(tmp_path: Path) -> None:
    storage = tmp_path / "data"
    _blob(storage, b"good bytes")
    bad, bad_path = _blob(storage, b"original bytes", stored_as=b"tampered")
    done = _verify(storage, read_only=False)
    assert done.returncode == 1, done
    assert done.stdout.splitlines() == [
        "checked 2 blobs, removed 1 that failed verification", f"removed sha256:{bad}"]
    assert not bad_path.exists()


def test_storage_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    storage = tmp_path / "data"
    storage.write_text("a file, not a folder")
    done = _verify(storage, read_only=False)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"stockade: cannot verify the storage at {storage}: Not a directory"]
