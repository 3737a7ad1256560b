"""OSV exports as osv.dev publishes them (``<Ecosystem>/all.zip``), built from records."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any


def export_zip(records: Path, ecosystem: str, *extra: dict[str, Any]) -> bytes:
    """A zip of the records under ``records`` that affect ``ecosystem``, plus ``extra``;
    the same inputs give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(records.glob("*.json")):
            record = json.loads(path.read_text())
            if any(a["package"]["ecosystem"] == ecosystem for a in record["affected"]):
                archive.writestr(zipfile.ZipInfo(path.name), path.read_bytes())
        for record in extra:
            archive.writestr(zipfile.ZipInfo(f"{record['id']}.json"), json.dumps(record))
    return buffer.getvalue()


def serve_export(root: Path, ecosystem: str, data: bytes) -> None:
    """Put ``data`` where a static host serves ``<Ecosystem>/all.zip`` from ``root``."""
    (root / ecosystem).mkdir(parents=True, exist_ok=True)
    (root / ecosystem / "all.zip").write_bytes(data)
