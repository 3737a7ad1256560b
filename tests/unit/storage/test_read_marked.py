"""Reading a blob's file without a hash only while it is the file that was hashed."""

from __future__ import annotations

import os
from pathlib import Path

from stockade.storage.verify import file_mark, read_marked


def test_the_file_of_the_mark_is_read_and_any_other_is_not(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"verified bytes")
    mark = file_mark(path)
    assert mark is not None
    assert read_marked(path, mark) == b"verified bytes"
    st = path.stat()
    path.write_bytes(b"verified bytes")  # the same bytes, the old mtime put back
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert read_marked(path, mark) is None  # ctime moved: hash it again
    replacement = tmp_path / "other"
    replacement.write_bytes(b"other bytes!!!")
    os.replace(replacement, path)
    assert read_marked(path, file_mark(path) or mark) == b"other bytes!!!"
    assert read_marked(path, mark) is None
    path.unlink()
    assert read_marked(path, mark) is None
