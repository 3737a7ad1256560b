"""What starting the proxy imports: nothing a feature not configured needs."""

from __future__ import annotations

import subprocess
import sys


def test_the_app_imports_no_tuf_client_nor_cloud_signers() -> None:
    # python-tuf's key library loads boto3 and every other cloud signer: half a second
    # of each start, needed only when a policy bundle is pulled.
    probe = ("import sys, stockade.proxy.app, stockade.proxy.cli; "
             "print(sorted(m for m in ('tuf.ngclient', 'tuf.api.metadata', 'boto3', "
             "'securesystemslib.signer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,  # noqa: S603
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_pull_still_finds_the_tuf_client() -> None:
    from stockade.proxy.bundletuf import FileFetcher, classify, tuf_errors

    assert classify(tuf_errors.ExpiredMetadataError("old"), phase="metadata") == "expired"
    assert classify(ValueError("x"), phase="target") == "invalid_bundle"
    assert FileFetcher() is not None
