"""The run directory: its layout, where each file lives, and the files train.py, generate.py and
evaluate.py read or write in it (config.json, the checkpoints, evaluation.json, features.json);
RunError, the one error type of this module and of those that stand on it: claims.py (holding a
run directory for training), metrics.py (metrics.csv and TensorBoard) and sampling.py (sampling
a run's checkpoint).

  .dcgan-run                  the marker: written first, it makes the folder a run directory
  .lock                       held by the one process that trains here (claims.py)
  config.json                 the settings of the run, and the folder it was started in
  metrics.csv                 a row per --log-every steps or per evaluation (metrics.py)
  events.out.tfevents.*       TensorBoard: the same scalars and the sample grids (metrics.py)
  samples/epoch_0001.png ...  sample grids from the run's fixed z
  samples/progress.gif        those grids played in order, a frame per epoch
  losses.png, quality.png     plots of metrics.csv
  checkpoints/                model-<step>.index / .data-*: weights, Adam state, run position
  evaluation.json             evaluate.py's results, by step
  features.json               features.py's classification results
Every file is replaced atomically (durable.atomic_write), so a killed process leaves the old one.

A folder is a run directory when it holds the marker, or the config.json of a run written before
the marker existed (RunDir.is_run); claims.py trains only in one of those or in an empty folder.
"""
import fcntl
import json
import os
import re
import shutil
import tempfile
import time

import tensorflow as tf

import data
import durable
import hyperparameters

CHECKPOINT_PREFIX = "model"
CHECKPOINTS_KEPT = 3
# A checkpoint exists once its index is in place (the data files are moved in before it).
_CHECKPOINT_INDEX = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")
_STATE_FILE = "checkpoint"  # TensorFlow's own list of checkpoints, for its tools; never read here
# Checkpoints are written into a staging folder of this prefix; claims.py removes dead writers'.
STAGING_PREFIX = ".saving-"
RUN_MARKER = ".dcgan-run"
# Settings every config.json of train.py held, from the first version on: a folder without the
# marker (it came later) is an earlier version's run directory when its config.json has them.
_RUN_SETTINGS = ("dataset", "output_dim", "z_dim", "batch_size")
# What a --dataset folder run's config.json must hold for its folder to be loaded again as the
# run trained on it: where it is, how it was decoded, and what it held.
FOLDER_SETTINGS = {"images": str, "fit": str, "data_fingerprint": str, "num_images": int}
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


def unused_name(base):
    """`base`, or base-2, base-3... : the first name nothing has (two --fresh in one second)."""
    name, number = base, 1
    while os.path.lexists(name):
        number += 1
        name = f"{base}-{number}"
    return name


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

    # --- The marker ---------------------------------------------------------------------------
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
        """Writes `settings` with the working folder they were given in (working_dir, unless
        they name one): their relative paths are relative to it (setting_path)."""
        try:
            settings = {"working_dir": os.getcwd(), **settings}
        except OSError:  # the working folder was removed: there is nothing to name
            pass
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
                                       prefix=durable.temp_prefix(STAGING_PREFIX))
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


def image_size(config):
    """The image size of a run's settings (a run saved before the setting existed: 32)."""
    return config.get("image_size", hyperparameters.IMAGE_SIZE)


def setting_path(config, key, default=None):
    """A path of a run's settings (`key`, `default` when it has none) as it can be opened from
    here: a relative one was relative to the folder train.py was started in, recorded as
    working_dir, so it is joined to that -- evaluate.py and features.py work from any folder.
    As it is when it is absolute, when the run recorded no folder (it started before
    working_dir existed), or when only this folder has it (the whole tree was moved)."""
    path = config.get(key, default)
    start = config.get("working_dir")
    if not isinstance(path, str) or os.path.isabs(path) or not isinstance(start, str):
        return path
    joined = os.path.join(start, path)
    return path if not os.path.exists(joined) and os.path.exists(path) else joined


def load_trained_folder(config, log=print):
    """The folder a --dataset folder run trained on, loaded again through its cache as the run
    decoded it (the FOLDER_SETTINGS, --data-dir, --image-size and --channels of its settings),
    and the path it was loaded from (setting_path): (data.Dataset, path). evaluate.py's and
    features.py's.

    Raises:
      data.DatasetError: the folder is missing or holds no usable image, or its images are no
        longer those the run recorded (its fingerprint and count); one line naming the path.
    """
    root = setting_path(config, "images")
    dataset = data.load_folder(root, setting_path(config, "data_dir", "data"), image_size(config),
                               config.get("channels"), config["fit"], log,
                               recorded=(config["data_fingerprint"], config["num_images"]))
    return dataset, root
