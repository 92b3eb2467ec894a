"""The run directory: its layout, where each file lives, and the files train.py, generate.py and
evaluate.py read or write in it (config.json, the checkpoints, evaluation.json, features.json);
RunError, the one error type of this module and of those that stand on it (metrics.py for
metrics.csv and TensorBoard).

  .dcgan-run                  the marker: written first, it makes the folder a run directory
  config.json                 the settings of the run
  metrics.csv                 a row per --log-every steps or per evaluation (metrics.py)
  events.out.tfevents.*       TensorBoard: the same scalars and the sample grids (metrics.py)
  samples/epoch_0001.png ...  sample grids from the run's fixed z
  samples/progress.gif        those grids played in order, a frame per epoch
  losses.png, quality.png     plots of metrics.csv
  checkpoints/                model-<step>.index / .data-*: weights, Adam state, run position
  evaluation.json             evaluate.py's results, by step
  features.json               features.py's classification results
Every file is replaced atomically (durable.atomic_write), so a killed process leaves the old one.

The folder is the user's disk: train.py starts a run only in a new or empty folder, resumes only a
run directory (the marker, or the config.json of a run written before the marker existed), and
--fresh moves aside only a run directory that holds no live run; what a failed start created is
removed again.
"""
import collections
import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time

import numpy as np
import tensorflow as tf

import data
import dcgan
import durable
import hyperparameters

tf1 = tf.compat.v1

CHECKPOINT_PREFIX = "model"
CHECKPOINTS_KEPT = 3
# A checkpoint exists once its index is in place (the data files are moved in before it).
_CHECKPOINT_INDEX = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")
_STATE_FILE = "checkpoint"  # TensorFlow's own list of checkpoints, for its tools; never read here
_STAGING_PREFIX = ".saving-"
RUN_MARKER = ".dcgan-run"
_LOCK_FILE = ".lock"
# Settings every config.json of train.py held, from the first version on: a folder without the
# marker (it came later) is an earlier version's run directory when its config.json has them.
_RUN_SETTINGS = ("dataset", "output_dim", "z_dim", "batch_size")
# What a --dataset folder run's config.json must hold for its folder to be loaded again as the
# run trained on it: where it is, how it was decoded, and what it held.
FOLDER_SETTINGS = {"images": str, "fit": str, "data_fingerprint": str, "num_images": int}
# A temporary file named by an earlier version (no writer in its name) is taken for a killed
# writer's only once it is this old: those versions' readers wrote theirs in seconds.
_UNNAMED_TEMP_SECONDS = 3600
EXIT_ERROR = 1


class RunError(Exception):
    """A problem the user can fix; entry points print it as one line and exit non-zero."""

    def __init__(self, message, exit_code=EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


def write_json(path, value):
    text = json.dumps(value, indent=2, sort_keys=True)
    durable.atomic_write(path, lambda handle: handle.write(text.encode()))


def write_or_fail(path, write, *args, unsaved=None):
    """write(path, *args), a failure becoming one RunError line naming the path; `unsaved`
    says what is lost (default: nothing saved before)."""
    try:
        write(path, *args)
    except OSError as error:
        raise RunError(f"cannot write {path} ({cause(error)}); " + (unsaved or (
            "nothing saved before is lost. Free the space or fix the permission, then run "
            "the same command again"))) from None


# Lines of a TensorFlow error message that say where, not what.
_TF_CONTEXT = ("Graph execution error", "Detected at node", "File \"", "Node:", "[[")


def cause(error):
    """What went wrong, in one line: an OSError's reason, or the line of a TensorFlow error
    that names the failure (its message wraps it in graph-execution context)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(_TF_CONTEXT)]
    return (meaningful or lines or [type(error).__name__])[-1]


class DamagedCheckpoint(Exception):
    """A checkpoint whose files cannot be read back."""


def checkpoint_mismatch(checkpoint, variables):
    """Why `checkpoint` cannot restore `variables` (a missing name or another shape), or None.

    Checked before restoring because a resource variable accepts a value of any shape: a
    mismatch would otherwise surface later as a failing matmul deep inside TensorFlow.

    Raises:
      DamagedCheckpoint: its index cannot be read.
    """
    try:
        shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as error:
        raise DamagedCheckpoint(f"unreadable index: {cause(error)}") from None
    for variable in variables:
        name = variable.op.name
        if name not in shapes:
            return f"it has no variable {name}"
        if list(shapes[name]) != variable.shape.as_list():
            return f"{name} has shape {shapes[name]}, this model {variable.shape.as_list()}"
    return None


def checkpoint_step(checkpoint):
    """The step in a checkpoint's name (model-<step>), or None."""
    suffix = os.path.basename(checkpoint).rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else None


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
                raise RunError(f"run directory {self.run_path} is not writable or its lock is "
                               f"odd: cannot open {self.path} ({cause(error)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                current = os.stat(self.path)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise RunError(f"{self.run_path} is in use: {holder} is training in it. Wait for "
                               f"it to end or stop it, or use another --out.") from None
            except OSError as error:
                os.close(fd)
                if isinstance(error, FileNotFoundError):
                    continue
                raise RunError(f"cannot lock {self.path} ({cause(error)})") from None
            if os.path.samestat(os.fstat(fd), current):
                break
            os.close(fd)  # replaced between open and lock: lock the file now in place
        else:
            raise RunError(f"{self.path} keeps being replaced by another process; try again")
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


def unused_name(base):
    """`base`, or base-2, base-3... : the first name nothing has (two --fresh in one second)."""
    name, number = base, 1
    while os.path.lexists(name):
        number += 1
        name = f"{base}-{number}"
    return name


_UNNAMED_TEMP = re.compile(r"^[a-z0-9_]{8}(\..*)?$")  # tempfile's random part, no writer


def _unnamed_and_dead(path, name, kind):
    """A temporary file an earlier version wrote (no writer in its name) that is a killed
    writer's: a staging folder (only the lock holder writes those), or any other once it is
    _UNNAMED_TEMP_SECONDS old."""
    if not _UNNAMED_TEMP.match(name[len(kind):]):
        return False
    if kind == _STAGING_PREFIX:
        return True
    try:
        return time.time() - os.lstat(path).st_mtime > _UNNAMED_TEMP_SECONDS
    except OSError:
        return False


def _remove_if_there(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class TrainingClaim:
    """A run directory held for training (RunDir.open_for_training): its lock, and what this
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
            raise RunError(f"run directory {run.path} is not writable ({cause(error)})") from None
        run.check_claimable()  # before the lock file: nothing is written into a foreign folder
        lock_path = os.path.join(run.path, _LOCK_FILE)
        lock_existed = os.path.lexists(lock_path)
        self.lock = RunLock(run.path).acquire()
        if not lock_existed:
            self.created.append(lock_path)
        run.check_claimable()  # again, holding the lock: a second start may have won the race
        marker = os.path.join(run.path, RUN_MARKER)
        try:
            if not os.path.isfile(marker):
                write_json(marker, {"run_directory_of": "train.py", "format": 2,
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
        run.remove_leftovers()

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


class RunDir:
    """One run directory: where each file lives, and how it is read and written."""

    def __init__(self, path):
        self.path = os.path.normpath(path)
        self.config_path = os.path.join(self.path, "config.json")
        self.metrics_path = os.path.join(self.path, "metrics.csv")
        self.evaluation_path = os.path.join(self.path, "evaluation.json")
        self.checkpoint_dir = os.path.join(self.path, "checkpoints")
        self.samples_dir = os.path.join(self.path, "samples")
        self.loss_plot_path = os.path.join(self.path, "losses.png")
        self.quality_plot_path = os.path.join(self.path, "quality.png")
        self.progress_gif_path = os.path.join(self.samples_dir, "progress.gif")
        self.features_path = os.path.join(self.path, "features.json")

    @property
    def shown(self):
        """The path for a message: absolute when it is '.' or '..' (which says nothing)."""
        return os.path.abspath(self.path) if os.path.basename(self.path) in (".", "..") \
            else self.path

    def sample_grid_path(self, epoch):
        return os.path.join(self.samples_dir, f"epoch_{epoch:04d}.png")

    def sample_grid_paths(self, last_epoch):
        """The sample grids of epochs 1..last_epoch that exist, in epoch order."""
        paths = (self.sample_grid_path(epoch) for epoch in range(1, last_epoch + 1))
        return [path for path in paths if os.path.exists(path)]

    # --- Opening for training -----------------------------------------------------------------
    def is_run(self):
        """True for a run directory: it holds the marker, or it is an earlier version's run (its
        config.json holds train.py's settings)."""
        if os.path.isfile(os.path.join(self.path, RUN_MARKER)):
            return True
        try:
            config = self._load_config()
        except RunError:
            return False
        return isinstance(config, dict) and all(key in config for key in _RUN_SETTINGS)

    def check_claimable(self):
        """Raises RunError unless a run may be trained here: the folder is a run directory, or
        it is empty (a lock file of a start killed before its marker aside).

        Raises:
          RunError: it is a file, cannot be listed, or is not empty and not a run directory.
        """
        if not os.path.isdir(self.path):
            raise RunError(f"--out {self.path} is a file, not a folder; use another --out")
        try:
            names = set(os.listdir(self.path))
        except OSError as error:
            raise RunError(f"cannot list {self.path} ({cause(error)})") from None
        if _LOCK_FILE in names and _is_own_lock_file(os.path.join(self.path, _LOCK_FILE)):
            names.discard(_LOCK_FILE)
        if names and not self.is_run():
            raise RunError(f"{self.shown} is not empty and is not a run directory (no "
                           f"{RUN_MARKER}, no config.json of train.py); a new run starts only in "
                           f"a new or empty folder, so nothing of yours is overwritten. Use "
                           f"another --out")

    def open_for_training(self, fresh=False):
        """Claims the directory for training: moves the run in it aside first if `fresh`,
        creates it (or takes an empty one), takes its lock, writes the marker first, and clears
        what killed writers left half-done. Use it as a context manager; see TrainingClaim.

        Raises:
          RunError: not a run directory and not empty; another live process trains in it (or,
            with `fresh`, anywhere below it); it is not writable; --fresh refused or failed.
        """
        aside = self._move_aside() if fresh else None
        claim = TrainingClaim(self, aside)
        try:
            claim.take()
        except BaseException:
            claim.undo()
            raise
        return claim

    def _move_aside(self):
        """--fresh: renames the run directory to <path>.old-<time>; returns that name, or None
        when there is nothing to move (no folder, an empty one).

        Only a run directory moves, and only with every lock below it held (the run's own and
        any nested run's), so no live run loses its folder; never '.', a parent of the working
        directory, the home directory or '/'.

        Raises:
          RunError: one line for every refusal and failure; nothing was moved then.
        """
        path = self.path
        if not os.path.lexists(path):
            return None
        if os.path.islink(path):
            raise RunError(f"--fresh: {path} is a symbolic link; --fresh moves only a run "
                           f"directory itself. Move the link or its target yourself")
        if not os.path.isdir(path):
            raise RunError(f"--fresh: {path} is a file, not a run directory; nothing was moved")
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
        if not self.is_run():
            raise RunError(f"--fresh: {path} is not a run directory (no {RUN_MARKER}, no "
                           f"config.json of train.py); --fresh moves only a run directory, "
                           f"never another folder. Nothing was moved")
        with contextlib.ExitStack() as held:
            for folder in self._folders_with_locks():
                try:
                    # a nested lock file is held but left as it is: it may be another tool's
                    held.enter_context(RunLock(folder).acquire(describe=folder == path))
                except RunError as error:  # a live run, in it or below it
                    raise RunError(f"--fresh refused, nothing was moved: {error}") from None
            aside = unused_name(f"{path}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.rename(path, aside)
            except OSError as error:
                raise RunError(f"--fresh: cannot move {path} to {aside} ({cause(error)}); "
                               f"nothing was moved") from None
        print(f"--fresh: moved the previous run to {aside}", flush=True)
        return aside

    def _folders_with_locks(self):
        """This folder and every folder below it that holds a lock file (symbolic links not
        followed: what they point to does not move)."""
        def unreadable(error):
            raise RunError(f"--fresh: cannot look inside {error.filename} ({cause(error)}), so "
                           f"cannot tell that no live run is there; nothing was moved")

        found = [self.path]
        for folder, _, names in os.walk(self.path, onerror=unreadable):
            if _LOCK_FILE in names and folder != self.path:
                found.append(folder)
        return found

    def remove_leftovers(self):
        """Temporary files and checkpoint staging folders whose writer was killed; those of a
        live process (a reader such as evaluate.py writes without the lock) stay. Called by the
        lock holder only, so a staging folder of an earlier version, which only a lock holder
        writes, is a dead one's."""
        for folder, kind in ((self.checkpoint_dir, _STAGING_PREFIX), (self.path, durable.TEMP_PREFIX),
                             (self.samples_dir, durable.TEMP_PREFIX)):
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if name.startswith(kind) and (durable.left_by_dead(name, kind) or
                                              _unnamed_and_dead(path, name, kind)):
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) \
                        else _remove_if_there(path)

    # --- config.json --------------------------------------------------------------------------
    def _load_config(self):
        """The saved settings as a dict, None if there are none; RunError if damaged."""
        try:
            with open(self.config_path, encoding="utf-8") as handle:
                config = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise RunError(f"{self.config_path}: damaged run settings ({cause(error)}); put back "
                           f"a good copy, or start over with --fresh") from None
        if not isinstance(config, dict):
            raise RunError(f"{self.config_path}: damaged run settings (a JSON "
                           f"{type(config).__name__}, not an object); put back a good copy, or "
                           f"start over with --fresh")
        return config

    def saved_config(self):
        """The settings a run saved here, None before its first start; RunError if damaged."""
        return self._load_config()

    def read_config(self, required=("dataset", "output_dim", "z_dim")):
        """The settings train.py saved, as a dict; `output_dim`, `z_dim` and `image_size`
        checked, and a folder run's FOLDER_SETTINGS there, of their types.

        Raises:
          RunError: no config.json (not a run directory), damaged, or a required key missing.
        """
        config = self._load_config()
        if config is None:
            what = "holds no run settings yet (config.json not found: its first start did not " \
                "get that far)" if os.path.isfile(os.path.join(self.path, RUN_MARKER)) else \
                "is not a run directory (config.json not found)"
            raise RunError(f"{self.path} {what}; train first: python train.py --out {self.path}")
        folder_settings = FOLDER_SETTINGS if config.get("dataset") == data.FOLDER else {}
        missing = [key for key in (*required, *folder_settings) if key not in config]
        if missing:
            raise RunError(f"{self.config_path}: run settings lack {', '.join(missing)}")
        for key, kind in folder_settings.items():
            if type(config[key]) is not kind:  # (bool is an int, and no count)
                raise RunError(f"{self.config_path}: {key} {config[key]!r} is not a "
                               f"{kind.__name__}; the file is damaged")
        for key in ("output_dim", "z_dim"):
            value = config.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RunError(f"{self.config_path}: {key} must be a positive integer, got "
                               f"{value!r}; the file is damaged")
        problem = hyperparameters.image_size_problem(image_size(config))
        if problem:
            raise RunError(f"{self.config_path}: {problem}; the file is damaged")
        return config

    def check_resumable(self, settings, keys, defaults=None):
        """Raises RunError if the run saved here has other values of `keys` than `settings`
        (`defaults`: the values of keys a run saved before they existed)."""
        saved = self._load_config()
        if saved is None:
            return
        saved = {**(defaults or {}), **saved}
        changed = [key for key in keys if saved.get(key) != settings[key]]
        if changed:
            details = ", ".join(f"{key} {saved.get(key)!r} -> {settings[key]!r}" for key in changed)
            raise RunError(f"{self.path} holds a run with other settings ({details}); resuming "
                           f"it would mix two runs. Use the old settings, another --out, or "
                           f"--fresh.")

    def write_config(self, settings):
        write_or_fail(self.config_path, write_json, settings)

    # --- Checkpoints --------------------------------------------------------------------------
    def checkpoints(self):
        """The checkpoint prefixes in checkpoints/, newest (highest step) first, found from their
        index files: TensorFlow's state file can be stale or damaged, the files are the truth."""
        try:
            names = os.listdir(self.checkpoint_dir)
        except OSError:
            return []
        steps = sorted((int(match.group(1)) for match in map(_CHECKPOINT_INDEX.match, names)
                        if match), reverse=True)
        return [os.path.join(self.checkpoint_dir, f"{CHECKPOINT_PREFIX}-{step}") for step in steps]

    def newest_checkpoint(self):
        found = self.checkpoints()
        return found[0] if found else None

    def restore(self, sess, saver, variables, checkpoint=None, set_aside_damaged=False):
        """Restores `checkpoint`, or else the newest checkpoint that restores, saying which ones
        were passed over and why; returns the prefix restored, None if there is none.

        Raises:
          RunError: a checkpoint of another model; only damaged checkpoints (or damaged
            checkpoint files and no complete checkpoint); a named `checkpoint` that is damaged.
        """
        candidates = [checkpoint] if checkpoint else self.checkpoints()
        if not candidates:
            leftovers = [name for name in os.listdir(self.checkpoint_dir)
                         if name.startswith(CHECKPOINT_PREFIX + "-")] \
                if os.path.isdir(self.checkpoint_dir) else []
            if leftovers:
                raise RunError(f"{self.checkpoint_dir} holds checkpoint files but no complete "
                               f"checkpoint (no {CHECKPOINT_PREFIX}-<step>.index); move them away "
                               f"to start over, or use --fresh")
            return None
        damaged = []
        for prefix in candidates:
            try:
                problem = checkpoint_mismatch(prefix, variables)
                if problem:
                    raise RunError(f"{prefix}: not a checkpoint of this model ({problem}); use "
                                   f"another --out or --fresh")
                saver.restore(sess, prefix)
            except DamagedCheckpoint as error:
                damaged.append((prefix, str(error)))
            except (tf.errors.OpError, ValueError) as error:
                damaged.append((prefix, f"{type(error).__name__}: {cause(error)}"))
            else:
                self._report_damaged(damaged, prefix, set_aside_damaged)
                return prefix
        if checkpoint:
            raise RunError(f"{checkpoint}: cannot be restored ({damaged[0][1]})")
        details = "; ".join(f"{os.path.basename(prefix)}: {why}" for prefix, why in damaged)
        raise RunError(f"no checkpoint in {self.checkpoint_dir} can be restored ({details}). "
                       f"Put back good copies, or move them away to start over (or --fresh)")

    def _checkpoint_files(self, prefix):
        """The file names of one checkpoint in checkpoints/, its index first."""
        base = os.path.basename(prefix) + "."
        return sorted((name for name in os.listdir(self.checkpoint_dir) if name.startswith(base)),
                      key=lambda name: not name.endswith(".index"))

    def _report_damaged(self, damaged, restored, set_aside):
        for prefix, why in damaged:
            note = ""
            if set_aside:
                folder = os.path.join(self.checkpoint_dir, "damaged")
                os.makedirs(folder, exist_ok=True)
                for name in self._checkpoint_files(prefix):
                    os.replace(os.path.join(self.checkpoint_dir, name),
                               os.path.join(folder, name))
                note = f"; moved to {folder}"
            print(f"passed over the damaged checkpoint {prefix} ({why}){note}; using "
                  f"{os.path.basename(restored)}", flush=True)

    def save_checkpoint(self, sess, saver, step):
        """Writes checkpoint model-<step>, then keeps the newest CHECKPOINTS_KEPT.

        The files are written into a staging folder and moved in data first, index last, so a
        checkpoint appears whole or not at all; the older ones are deleted only after it is in
        place. A failed write (full disk, lost permission, I/O error) leaves no file behind.

        Raises:
          RunError: the write failed; the message names the path and the cause.
        """
        name = f"{CHECKPOINT_PREFIX}-{step}"
        previous = self.newest_checkpoint()
        staging = None
        try:
            staging = tempfile.mkdtemp(dir=self.checkpoint_dir,
                                       prefix=durable.temp_prefix(_STAGING_PREFIX))
            saver.save(sess, os.path.join(staging, name), write_meta_graph=False,
                       write_state=False)  # generate.py rebuilds the graph from code
            for file_name in sorted(os.listdir(staging), key=lambda n: n.endswith(".index")):
                os.replace(os.path.join(staging, file_name),
                           os.path.join(self.checkpoint_dir, file_name))
            durable.fsync_folder(self.checkpoint_dir)
            self._write_state_file()
        except (OSError, tf.errors.OpError, ValueError) as error:
            kept = f"the previous checkpoint {previous} is intact" if previous else \
                "no earlier checkpoint exists"
            raise RunError(f"cannot save the checkpoint {os.path.join(self.checkpoint_dir, name)}"
                           f" ({cause(error)}); {kept}. Free the space or fix the cause, then "
                           f"run the same command to resume") from None
        finally:
            if staging:
                shutil.rmtree(staging, ignore_errors=True)
        self._remove_old_checkpoints()

    def _write_state_file(self):
        """TensorBoard and tf.train.latest_checkpoint read this; nothing here does."""
        names = [os.path.basename(prefix) for prefix in self.checkpoints()[:CHECKPOINTS_KEPT]]
        text = f'model_checkpoint_path: "{names[0]}"\n' + "".join(
            f'all_model_checkpoint_paths: "{name}"\n' for name in reversed(names))
        durable.atomic_write(os.path.join(self.checkpoint_dir, _STATE_FILE),
                          lambda handle: handle.write(text.encode()))

    def _remove_old_checkpoints(self):
        for prefix in self.checkpoints()[CHECKPOINTS_KEPT:]:
            # the index first: a checkpoint half deleted is no longer listed
            for file_name in self._checkpoint_files(prefix):
                try:
                    os.remove(os.path.join(self.checkpoint_dir, file_name))
                except OSError as error:
                    print(f"warning: cannot delete the old checkpoint file {file_name} "
                          f"({cause(error)})", flush=True)

    def write_features(self, results):
        """features.py's results, replaced whole (one result per run: the newest)."""
        write_or_fail(self.features_path, write_json, results,
                    unsaved="the table above was not saved")

    # --- evaluation.json ----------------------------------------------------------------------
    def add_evaluation(self, key, result):
        """Adds `result` under `key` to evaluation.json, keeping every earlier result.

        A damaged evaluation.json is never dropped: it is moved aside to
        evaluation.json.damaged-<time>, with a note, and a new file is started. Two processes
        adding at once take turns (a lock file), so neither loses the other's result.

        Raises:
          RunError: the file cannot be written (the message names it and the cause).
        """
        def add(path):
            with open(path + ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                history = self._read_evaluations()
                history[key] = result
                write_json(path, history)

        write_or_fail(self.evaluation_path, add, unsaved="the result above was not saved")

    def _read_evaluations(self):
        try:
            with open(self.evaluation_path, encoding="utf-8") as handle:
                history = json.load(handle)
            if isinstance(history, dict):
                return history
            problem = f"a JSON {type(history).__name__}, not an object"
        except FileNotFoundError:
            return {}
        except ValueError as error:
            problem = cause(error)
        aside = f"{self.evaluation_path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(self.evaluation_path, aside)
        print(f"{self.evaluation_path} was damaged ({problem}); kept it as {aside} and started "
              f"a new one")
        return {}


Samples = collections.namedtuple("Samples", "images checkpoint generator")


def image_size(config):
    """The image size of a run's settings (a run saved before the setting existed: 32)."""
    return config.get("image_size", hyperparameters.IMAGE_SIZE)


def sample_images(run, num, seed, checkpoint=None, raw=False, z=None):
    """Restores a generator of a RunDir's checkpoint (default: the newest that restores) and
    samples it in inference mode: the averaged generator when the run keeps one (--g-ema) and
    not `raw`, else the trained one.

    Args:
      run: the RunDir.
      num: how many images, of z ~ U(-1, 1) drawn with `seed` (ignored when `z` is given).
      seed: the seed of the z, and of the averaged generator's statistics batch.
      checkpoint: a checkpoint prefix instead of the newest.
      raw: the trained weights even where the run keeps an average.
      z: float32 [n, z_dim] to sample instead of random z.

    Returns:
      Samples(float32 images in [-1, 1] of shape (n, N, N, C) (N the run's image size), the
      checkpoint used, which
      generator: 'averaged generator (decay D)' or 'trained generator').

    Raises:
      RunError: not a run directory, no checkpoint, damaged ones only, or one of another model.
    """
    config = run.read_config()
    decay = config.get("g_ema", 0.0)
    averaged = bool(decay) and not raw
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)  # the restore overwrites the initial weights; set for determinism
        sampler = dcgan.build_sampler(config["output_dim"], config["z_dim"],
                                      config.get("precision", "float32"), averaged=averaged,
                                      image_size=image_size(config))
        saver = tf1.train.Saver(sampler.variables)
        init = tf1.global_variables_initializer()  # what the checkpoint does not hold
    graph.finalize()
    with tf1.Session(graph=graph, config=dcgan.session_config()) as sess:
        sess.run(init)
        restored = run.restore(sess, saver, sampler.variables, checkpoint)
        if not restored:
            raise RunError(f"{run.checkpoint_dir} holds no checkpoint yet; a run saves one after "
                           f"its first epoch")
        dcgan.prepare_sampler(sess, sampler, seed)
        if z is None:
            z = dcgan.draw_z(np.random.default_rng(seed), num, config["z_dim"])
        images = dcgan.run_sampler(sess, sampler, z)
    return Samples(images, restored,
                   f"averaged generator (decay {decay})" if averaged else "trained generator")
