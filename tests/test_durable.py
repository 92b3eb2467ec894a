"""machinery/durable.py: a file written atomically gets the usual permissions and leaves no
temporary file behind; temporary files carry their writer (host and process)."""
import os
import socket

from machinery import durable


def test_files_written_atomically_get_the_usual_permissions(tmp_path, umask):
    path = tmp_path / "file.json"
    durable.write_json(str(path), {"a": 1})
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]  # no temporary file left


def test_temporary_files_carry_their_writer(tmp_path):
    seen = []
    durable.atomic_write(str(tmp_path / "file"),
                         lambda handle: seen.extend(os.listdir(tmp_path)))
    assert len(seen) == 1 and seen[0].startswith(f".tmp-{socket.gethostname()}-{os.getpid()}-")
    assert not durable.left_by_dead(seen[0])  # this process: alive
