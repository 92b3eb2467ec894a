"""Claiming a run directory for training: one writer at a time, and nothing of the user's lost.

The folder is the user's disk: train.py starts a run only in a new or empty folder, resumes only a
run directory (run_directory.RunDir.is_run), and --fresh moves aside only a run directory that holds
no live run; what a failed start created is removed again. The lock (<run>/.lock, an flock) is held
while a process trains; whoever holds it clears the temporary files killed writers left behind.
"""
import contextlib
import fcntl
import os
import re
import shutil
import socket
import tempfile
import time

from machinery import checkpoints, durable, run_directory
from machinery.errors import RunError, cause

_LOCK_FILE = ".lock"
# A temporary file named by an earlier version (no writer in its name) is taken for a killed
# writer's only once it is this old: those versions' readers wrote theirs in seconds.
_UNNAMED_TEMP_SECONDS = 3600


class RunLock:
    """An exclusive lock on a run directory, held while a process trains in it.

    flock: the kernel drops it when its holder dies, however it dies, so a lock left by a killed
    process never blocks the next run. The file names the holder for the refusal message.
    """

    def __init__(self, run_path):
        self.run_path = run_path
        self.path = os.path.join(run_path, _LOCK_FILE)
        self.fd = None

    def acquire(self, describe=True):
        """Takes the lock (creating its file if need be) and returns self; `describe`: write
        this process into it, for the refusal message of another.

        Raises:
          RunError: a live process holds it (the message names it), or the lock file cannot be
            opened or locked (a folder in its place, no permission, a file system without locks).
        """
        for _ in range(3):  # a failed start removes its lock file; then the new one is the lock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, durable.DEFAULT_FILE_MODE)
            except OSError as error:
                raise RunError(f"run directory {self.run_path} is not writable or its lock "
                               f"is odd: cannot open {self.path} "
                               f"({cause(error)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                current = os.stat(self.path)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise RunError(f"{self.run_path} is in use: {holder} is training in it. "
                               f"Wait for it to end or stop it, or use another "
                               f"--out.") from None
            except OSError as error:
                os.close(fd)
                if isinstance(error, FileNotFoundError):
                    continue
                raise RunError(f"cannot lock {self.path} ({cause(error)})") from None
            if os.path.samestat(os.fstat(fd), current):
                break
            os.close(fd)  # replaced between open and lock: lock the file now in place
        else:
            raise RunError(f"{self.path} keeps being replaced by another process; try "
                           f"again")
        self.fd = fd
        if not describe:
            return self
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()} (since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')})".encode())
        except OSError:
            pass  # a full disk: the lock holds all the same, only its description is missing
        return self

    def remove(self):
        """Deletes the lock file while holding it (only a start that created it and failed):
        a process that opened it meanwhile sees it replaced and locks the new one."""
        try:
            os.remove(self.path)
        except OSError:
            pass

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _lock_holder(fd):
    """The description a lock holder wrote into its lock file, or 'a process'."""
    try:
        text = os.read(fd, 200).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text if text.startswith("process ") else "a process"


def _is_own_lock_file(path):
    """A lock file as RunLock writes it: empty (killed before writing) or naming its holder."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(200)
    except OSError:
        return False
    return os.path.isfile(path) and (not text or text.startswith(b"process "))


class TrainingClaim:
    """A run directory held for training (open_for_training): its lock, and what this
    process created to claim it (parent folders, the run directory, its lock file and marker,
    samples/ and checkpoints/).

    A start that fails before `started()` (no data, no network, a bad flag found late) removes
    all of it again, and puts back a run that --fresh moved aside, so a failed start leaves
    nothing behind; a folder that holds anything else by then is left as it is.
    """

    def __init__(self, run, aside=None):
        self.run, self.aside = run, aside
        self.created = []  # in the order created; undone in reverse
        self.lock = None
        self.has_started = False

    def take(self):
        run = self.run
        try:
            missing = []
            folder = os.path.abspath(run.path)
            while not os.path.lexists(folder):
                missing.append(folder)
                folder = os.path.dirname(folder)
            for folder in reversed(missing):
                with contextlib.suppress(FileExistsError):  # another start made it meanwhile
                    os.mkdir(folder)
                    self.created.append(folder)
        except OSError as error:
            raise RunError(f"run directory {run.path} is not writable "
                           f"({cause(error)})") from None
        _check_claimable(run)  # before the lock file: nothing is written into a foreign folder
        lock_path = os.path.join(run.path, _LOCK_FILE)
        lock_existed = os.path.lexists(lock_path)
        self.lock = RunLock(run.path).acquire()
        if not lock_existed:
            self.created.append(lock_path)
        _check_claimable(run)  # again, holding the lock: a second start may have won the race
        marker = os.path.join(run.path, run_directory.RUN_MARKER)
        try:
            if not os.path.isfile(marker):
                durable.write_json(marker, {"run_directory_of": "train.py", "format": 2,
                                            "created": time.strftime("%Y-%m-%d %H:%M:%S")})
                self.created.append(marker)
            for folder in (run.samples_dir, run.checkpoint_dir):
                if not os.path.isdir(folder):
                    os.mkdir(folder)
                    self.created.append(folder)
            tempfile.NamedTemporaryFile(dir=run.path, prefix=durable.temp_prefix(".write-test-")
                                        ).close()
        except OSError as error:
            raise RunError(f"run directory {run.path} is not writable "
                           f"({cause(error)})") from None
        _remove_leftovers(run)

    def started(self):
        """The run wrote its first file of its own: from now on nothing is undone."""
        self.has_started = True

    def undo(self):
        """Removes what this claim created, newest first (a folder only if empty), and puts
        back the run --fresh moved aside."""
        for path in reversed(self.created):
            if path == os.path.join(self.run.path, _LOCK_FILE) and self.lock:
                self.lock.remove()
                continue
            with contextlib.suppress(OSError):  # a folder that is not empty is not ours alone
                os.rmdir(path) if os.path.isdir(path) else os.remove(path)
        self.created = []
        self.release()
        if self.aside and not os.path.lexists(self.run.path):
            with contextlib.suppress(OSError):
                os.rename(self.aside, self.run.path)
                print(f"--fresh: the new run did not start; moved the previous run back to "
                      f"{self.run.path}", flush=True)

    def release(self):
        if self.lock:
            self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None and not self.has_started:
            self.undo()
        self.release()


def _check_claimable(run):
    """Raises RunError unless a run may be trained in `run` (a run_directory.RunDir): the folder
    is a run directory, or it is empty (a lock file of a start killed before its marker aside).

    Raises:
      RunError: it is a file, cannot be listed, or is not empty and not a run directory.
    """
    if not os.path.isdir(run.path):
        raise RunError(f"--out {run.path} is a file, not a folder; use another --out")
    try:
        names = set(os.listdir(run.path))
    except OSError as error:
        raise RunError(f"cannot list {run.path} ({cause(error)})") from None
    if _LOCK_FILE in names and _is_own_lock_file(os.path.join(run.path, _LOCK_FILE)):
        names.discard(_LOCK_FILE)
    if names and not run.is_run():
        raise RunError(f"{run.shown} is not empty and is not a run directory (no "
                       f"{run_directory.RUN_MARKER}, no config.json of train.py); a new run starts "
                       f"only in a new or empty folder, so nothing of yours is overwritten. "
                       f"Use another --out")


def open_for_training(run, fresh=False):
    """Claims `run` (a run_directory.RunDir) for training: moves the run in it aside first if
    `fresh`, creates it (or takes an empty one), takes its lock, writes the marker first, and clears
    what killed writers left half-done. Use it as a context manager; see TrainingClaim.

    Raises:
      RunError: not a run directory and not empty; another live process trains in it (or,
        with `fresh`, anywhere below it); it is not writable; --fresh refused or failed.
    """
    aside = _move_aside(run) if fresh else None
    claim = TrainingClaim(run, aside)
    try:
        claim.take()
    except BaseException:
        claim.undo()
        raise
    return claim


def _move_aside(run):
    """--fresh: renames the run directory to <path>.old-<time>; returns that name, or None
    when there is nothing to move (no folder, an empty one).

    Only a run directory moves, and only with every lock below it held (the run's own and
    any nested run's), so no live run loses its folder; never '.', a parent of the working
    directory, the home directory or '/'.

    Raises:
      RunError: one line for every refusal and failure; nothing was moved then.
    """
    path = run.path
    if not os.path.lexists(path):
        return None
    if os.path.islink(path):
        raise RunError(f"--fresh: {path} is a symbolic link; --fresh moves only a run "
                       f"directory itself. Move the link or its target yourself")
    if not os.path.isdir(path):
        raise RunError(f"--fresh: {path} is a file, not a run directory; nothing was "
                       f"moved")
    real, cwd = os.path.realpath(path), os.path.realpath(os.getcwd())
    protected = {os.path.realpath(os.path.expanduser("~")): "the home directory",
                 os.path.realpath(os.sep): "the root directory"}
    if real in protected or cwd == real or cwd.startswith(real.rstrip(os.sep) + os.sep):
        what = protected.get(real, "the working directory or a folder holding it")
        raise RunError(f"--fresh: {path} is {what}; --fresh never moves it. Name the run "
                       f"directory itself as --out")
    try:
        empty = not os.listdir(path)
    except OSError as error:
        raise RunError(f"--fresh: cannot list {path} ({cause(error)}); nothing was "
                       f"moved") from None
    if empty:
        return None
    if not run.is_run():
        raise RunError(f"--fresh: {path} is not a run directory (no {run_directory.RUN_MARKER}, no "
                       f"config.json of train.py); --fresh moves only a run directory, "
                       f"never another folder. Nothing was moved")
    with contextlib.ExitStack() as held:
        for folder in _folders_with_locks(path):
            try:
                # a nested lock file is held but left as it is: it may be another tool's
                held.enter_context(RunLock(folder).acquire(describe=folder == path))
            except RunError as error:  # a live run, in it or below it
                raise RunError(f"--fresh refused, nothing was moved: {error}") from None
        aside = durable.unused_name(f"{path}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.rename(path, aside)
        except OSError as error:
            raise RunError(f"--fresh: cannot move {path} to {aside} ({cause(error)}); "
                           f"nothing was moved") from None
    print(f"--fresh: moved the previous run to {aside}", flush=True)
    return aside


def _folders_with_locks(path):
    """`path` and every folder below it that holds a lock file (symbolic links not followed:
    what they point to does not move)."""
    def unreadable(error):
        raise RunError(f"--fresh: cannot look inside {error.filename} "
                       f"({cause(error)}), so cannot tell that no live run is there; "
                       f"nothing was moved")

    found = [path]
    for folder, _, names in os.walk(path, onerror=unreadable):
        if _LOCK_FILE in names and folder != path:
            found.append(folder)
    return found


def _remove_leftovers(run):
    """Temporary files and checkpoint staging folders whose writer was killed; those of a
    live process (a reader such as evaluate.py writes without the lock) stay. Called by the
    lock holder only, so a staging folder of an earlier version, which only a lock holder
    writes, is a dead one's."""
    for folder, kind in ((run.checkpoint_dir, checkpoints.STAGING_PREFIX),
                         (run.path, durable.TEMP_PREFIX), (run.samples_dir, durable.TEMP_PREFIX)):
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name.startswith(kind) and (durable.left_by_dead(name, kind) or
                                          _unnamed_and_dead(path, name, kind)):
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) \
                    else _remove_if_there(path)


_UNNAMED_TEMP = re.compile(r"^[a-z0-9_]{8}(\..*)?$")  # tempfile's random part, no writer


def _unnamed_and_dead(path, name, kind):
    """A temporary file an earlier version wrote (no writer in its name) that is a killed
    writer's: a staging folder (only the lock holder writes those), or any other once it is
    _UNNAMED_TEMP_SECONDS old."""
    if not _UNNAMED_TEMP.match(name[len(kind):]):
        return False
    if kind == checkpoints.STAGING_PREFIX:
        return True
    try:
        return time.time() - os.lstat(path).st_mtime > _UNNAMED_TEMP_SECONDS
    except OSError:
        return False


def _remove_if_there(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
