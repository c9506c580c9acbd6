"""Atomic writes (dabench/io.py)."""
import os

from dabench.io import atomic_path


def test_atomic_writes_leave_files_readable_like_any_other(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "table.csv") as tmp:
            tmp.write_text("a\n1\n")
        assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o644
        assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    finally:
        os.umask(umask)
