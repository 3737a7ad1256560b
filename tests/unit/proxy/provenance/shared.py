"""Where the project's shared fixtures live: ``../shared/fixtures`` beside the checkout."""

from __future__ import annotations

import base64
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[4].parent / "shared" / "fixtures"


def fixture(relative: str) -> Path:
    """The shared fixture at ``relative``; a clear failure when the copy is absent."""
    path = FIXTURES / relative
    assert path.is_file(), f"shared fixture {relative} not found (expected under {FIXTURES})"
    return path


def flip(b64: str, index: int = 10) -> str:
    """``b64`` with one bit of its decoded bytes flipped, base64 again."""
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()
