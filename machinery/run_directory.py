"""The run directory: its layout, where each file lives, and its settings (config.json).

  .dcgan-run                  the marker: written first, it makes the folder a run directory
  .lock                       held by the one process that trains here (claims.py)
  config.json                 the settings of the run, and the folder it was started in
  metrics.csv                 a row per --log-every steps or per evaluation (metrics.py)
  events.out.tfevents.*       TensorBoard: the same scalars and the sample grids (metrics.py)
  samples/epoch_0001.png ...  sample grids from the run's fixed z
  samples/progress.gif        those grids played in order, a frame per epoch
  losses.png, quality.png     plots of metrics.csv (pictures.py)
  checkpoints/                model-<step>.index / .data-*: weights, Adam state, run position
                              (checkpoints.py); with --eval-every best-<step> and best.json
  evaluation.json             evaluate.py's results, by step (results.py)
  near_copies.png             evaluate.py's closest pairs of a sample and a training image
  features.json               features.py's classification results (results.py)
Every file is replaced atomically (durable.atomic_write), so a killed process leaves the old one.

A folder is a run directory when it holds the marker, or the config.json of a run written before
the marker existed (RunDir.is_run); claims.py trains only in one of those or in an empty folder.
"""
import os

import data
from machinery import durable, hyperparameters
from machinery.errors import RunError, read_saved_record, write_or_fail

RUN_MARKER = ".dcgan-run"
# Settings every config.json of train.py held, from the first version on: a folder without the
# marker (it came later) is an earlier version's run directory when its config.json has them.
_RUN_SETTINGS = ("dataset", "output_dim", "z_dim", "batch_size")
# What a --dataset folder run's config.json must hold for its folder to be loaded again as the
# run trained on it: where it is, how it was decoded, and what it held.
FOLDER_SETTINGS = {"images": str, "fit": str, "data_fingerprint": str, "num_images": int}


class RunDir:
    """One run directory: where each file lives, and its settings."""

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
        self.near_copies_path = os.path.join(self.path, "near_copies.png")

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
        return read_saved_record(self.config_path, "run settings",
                                 "put back a good copy, or start over with --fresh")

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
        write_or_fail(self.config_path, durable.write_json, settings)


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
