"""Files on disk that survive a kill: atomic writes, durable renames, and temporary files named
after their writer, so that a cleanup removes a killed writer's leftovers and never a live one's.

Plain Python, imported by every module that writes (the data, the run directory, the pictures).
"""
import errno
import json
import os
import shutil
import re
import socket
import tempfile


def _umask():
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    return umask


# The modes open() and mkdir() give new files and folders; temporary ones are private instead.
_UMASK = _umask()
DEFAULT_FILE_MODE = 0o666 & ~_UMASK
DEFAULT_DIR_MODE = 0o777 & ~_UMASK


# --- Temporary files, named after their writer ------------------------------------------------
TEMP_PREFIX = ".tmp-"
# <kind><host>-<pid>-<tempfile's random part, which holds no '-'>[suffix]
_WRITER = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+(\..*)?$")


def temp_prefix(kind=TEMP_PREFIX):
    """The prefix of this process's temporary files: the writer's host and process id follow
    `kind`, so a cleanup can tell a live writer's file from a killed one's (see left_by_dead)."""
    return f"{kind}{socket.gethostname()}-{os.getpid()}-"


def left_by_dead(name, kind=TEMP_PREFIX):
    """True when `name` is a temporary file (`kind`...) whose writer, a process of this host,
    no longer runs; False for a live writer's file, another host's (its processes cannot be
    seen from here) and a name of another pattern. A reused process id keeps a file: a leftover
    stays rather than a live file going."""
    match = _WRITER.match(name[len(kind):]) if name.startswith(kind) else None
    if not match or match.group("host") != socket.gethostname():
        return False
    pid = int(match.group("pid"))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass  # alive, another user's; or a number no process can have
    return False


def temporary_path(folder, suffix=""):
    """A new empty file in `folder` named after this process (temp_prefix): write it, then
    move_into_place it, or remove it."""
    handle, path = tempfile.mkstemp(dir=folder, prefix=temp_prefix(), suffix=suffix)
    os.close(handle)
    return path


def move_into_place(temporary, path):
    """Renames a complete temporary file to `path`, durably: its bytes synced first, the usual
    permissions given (temporary files are private, 0600), the folder synced after."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(temporary, DEFAULT_FILE_MODE)
    os.replace(temporary, path)
    fsync_folder(os.path.dirname(os.path.abspath(path)))


def atomic_write(path, write):
    """Calls write(binary_file) on a temporary file beside `path`, then renames it into place.

    A process killed at any moment leaves either the old file or the new one, never half of one;
    if `write` raises, the temporary file is removed and `path` is untouched. The temporary
    file's name carries this process (temp_prefix), so a cleanup never takes a live writer's.
    """
    temporary = temporary_path(os.path.dirname(os.path.abspath(path)))
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        move_into_place(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def fsync_folder(folder):
    """Makes a rename in `folder` durable: without it a power cut can undo the rename."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path, value):
    """`value` as indented JSON with sorted keys, written atomically."""
    text = json.dumps(value, indent=2, sort_keys=True)
    atomic_write(path, lambda handle: handle.write(text.encode()))


def unused_name(base):
    """`base`, or base-2, base-3... : the first name nothing has (two --fresh in one second)."""
    name, number = base, 1
    while os.path.lexists(name):
        number += 1
        name = f"{base}-{number}"
    return name


def link_or_copy(path, source):
    """`path` as a second name of `source` (no copy), or a copy where links are not allowed."""
    try:
        os.link(source, path)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, path)
