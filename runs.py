"""The run directory: its layout, and every file train.py, generate.py and evaluate.py read or
write in it, through one place and with one error type.

  config.json                 the settings of the run
  metrics.csv                 a row per --log-every steps (losses) or per evaluation (quality)
  events.out.tfevents.*       TensorBoard: the same scalars and the sample grids
  samples/epoch_0001.png ...  sample grids from the run's fixed z
  losses.png, quality.png     plots of metrics.csv
  checkpoints/                model-<step>.index / .data-*: weights, Adam state, run position
  evaluation.json             evaluate.py's results, by step
Every file is replaced atomically (data.atomic_write), so a killed process leaves the old one.
"""
import csv
import io
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

import data
import dcgan

tf1 = tf.compat.v1

LOSS_FIELDS = ("d_loss", "g_loss", "d_real", "d_fake", "images_per_sec")
QUALITY_FIELDS = ("classifier_score", "frechet_distance", "class_entropy", "min_class_share")
# A row holds either the losses of a step or the quality of an evaluation; the rest stay empty.
METRIC_FIELDS = ("step", "epoch", *LOSS_FIELDS, *QUALITY_FIELDS, "time")
CHECKPOINT_PREFIX = "model"
CHECKPOINTS_KEPT = 3
EXIT_ERROR = 1


class RunError(Exception):
    """A problem the user can fix; entry points print it as one line and exit non-zero."""

    def __init__(self, message, exit_code=EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


def write_json(path, value):
    text = json.dumps(value, indent=2, sort_keys=True)
    data.atomic_write(path, lambda handle: handle.write(text.encode()))


def checkpoint_mismatch(checkpoint, variables):
    """Why `checkpoint` cannot restore `variables` (a missing name or another shape), or None.

    Checked before restoring because a resource variable accepts a value of any shape: a
    mismatch would otherwise surface later as a failing matmul deep inside TensorFlow.
    """
    try:
        shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as error:
        return f"unreadable: {str(error).splitlines()[0]}"
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

    def sample_grid_path(self, epoch):
        return os.path.join(self.samples_dir, f"epoch_{epoch:04d}.png")

    # --- Creating and checking ----------------------------------------------------------------
    def prepare(self, fresh=False):
        """Creates the directory (after moving an old one aside if `fresh`) and checks that it is
        writable."""
        if fresh and os.path.exists(self.path):
            aside = f"{self.path}.old-{time.strftime('%Y%m%d-%H%M%S')}"
            os.rename(self.path, aside)
            print(f"--fresh: moved the previous run to {aside}")
        try:
            os.makedirs(self.samples_dir, exist_ok=True)
            os.makedirs(self.checkpoint_dir, exist_ok=True)
            tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-test-").close()
        except OSError as error:
            raise RunError(f"run directory {self.path} is not writable "
                           f"({error.strerror})") from None

    def read_config(self, required=("dataset", "output_dim", "z_dim")):
        """The settings train.py saved, as a dict.

        Raises:
          RunError: no config.json (not a run directory), unreadable, or a required key missing.
        """
        try:
            with open(self.config_path) as handle:
                config = json.load(handle)
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a run directory (config.json not found); train "
                           f"first: python train.py --out {self.path}") from None
        except (OSError, ValueError) as error:
            raise RunError(f"{self.config_path}: unreadable run settings ({error})") from None
        missing = [key for key in required if not isinstance(config, dict) or key not in config]
        if missing:
            raise RunError(f"{self.config_path}: run settings lack {', '.join(missing)}")
        return config

    def check_resumable(self, settings, keys):
        """Raises RunError if the run saved here has other values of `keys` than `settings`."""
        if not os.path.exists(self.config_path):
            return
        try:
            with open(self.config_path) as handle:
                saved = json.load(handle)
        except (OSError, ValueError) as error:
            raise RunError(f"{self.config_path}: unreadable ({error}); use --fresh to start "
                           f"over") from None
        changed = [key for key in keys if saved.get(key) != settings[key]]
        if changed:
            details = ", ".join(f"{key} {saved.get(key)!r} -> {settings[key]!r}" for key in changed)
            raise RunError(f"{self.path} holds a run with other settings ({details}); resuming "
                           f"it would mix two runs. Use the old settings, another --out, or "
                           f"--fresh.")

    def write_config(self, settings):
        write_json(self.config_path, settings)

    # --- metrics.csv --------------------------------------------------------------------------
    def read_metrics(self):
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path, newline="") as handle:
            rows = []
            for row in csv.DictReader(handle):
                try:
                    record = {key: float(row[key]) for key in METRIC_FIELDS if row.get(key)}
                except ValueError:
                    break  # a line cut short by a kill: it and anything after it are dropped
                if "step" not in record:
                    break
                rows.append(record)
            return rows

    def write_metrics(self, rows):
        text = io.StringIO()
        writer = csv.DictWriter(text, METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        data.atomic_write(self.metrics_path, lambda handle: handle.write(text.getvalue().encode()))

    # --- Checkpoints --------------------------------------------------------------------------
    def newest_checkpoint(self):
        return tf1.train.latest_checkpoint(self.checkpoint_dir)

    def save_checkpoint(self, sess, saver, step):
        saver.save(sess, os.path.join(self.checkpoint_dir, CHECKPOINT_PREFIX), global_step=step,
                   write_meta_graph=False)  # generate.py rebuilds the graph from code

    # --- evaluation.json ----------------------------------------------------------------------
    def read_evaluations(self):
        if not os.path.exists(self.evaluation_path):
            return {}
        try:
            with open(self.evaluation_path) as handle:
                return json.load(handle)
        except ValueError:
            return {}

    def write_evaluations(self, history):
        write_json(self.evaluation_path, history)


class MetricsLog:
    """Appends records to metrics.csv (flushed at once) and to TensorBoard, from `step` on.

    Opening it drops the rows after `step` (work a killed process did after its last checkpoint,
    which will be trained again) and tells TensorBoard to drop its events after `step` too.
    """

    def __init__(self, run, step, resumed):
        self.rows = [row for row in run.read_metrics() if row["step"] <= step]
        run.write_metrics(self.rows)
        self.writer = tf1.summary.FileWriter(run.path)
        if resumed:
            self.writer.add_session_log(tf1.SessionLog(status=tf1.SessionLog.START), step)
        self.file = open(run.metrics_path, "a", newline="")
        self.csv = csv.DictWriter(self.file, METRIC_FIELDS, extrasaction="ignore",
                                  lineterminator="\n")

    def record(self, row, tags):
        """Appends a row (which holds its step) and its `tags` fields to TensorBoard: tags is a
        list of (tag, fields) pairs, each field logged as tag/field."""
        self.rows.append(row)
        self.csv.writerow(row)
        self.file.flush()
        self.writer.add_summary(tf1.Summary(value=[
            tf1.Summary.Value(tag=f"{tag}/{field}", simple_value=row[field])
            for tag, fields in tags for field in fields]), int(row["step"]))

    def add_png(self, tag, png, width, height, step):
        self.writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(
            tag=tag, image=tf1.Summary.Image(encoded_image_string=png, height=height,
                                             width=width, colorspace=4))]), step)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.file.close()
        self.writer.close()


def sample_images(run, num, seed, checkpoint=None):
    """Restores the generator of a RunDir's checkpoint (default: the newest) and samples it in
    inference mode: (float32 images in [-1, 1] of shape (num, 32, 32, C), the checkpoint used).

    Raises:
      RunError: not a run directory, no checkpoint, or one of another model.
    """
    config = run.read_config()
    checkpoint = checkpoint or run.newest_checkpoint()
    if not checkpoint:
        raise RunError(f"{run.checkpoint_dir} holds no checkpoint yet; a run saves one after "
                       f"its first epoch")
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)  # the restore overwrites the initial weights; set for determinism
        sampler = dcgan.build_sampler(int(config["output_dim"]), int(config["z_dim"]),
                                      config.get("precision", "float32"))
        saver = tf1.train.Saver(tf1.global_variables(dcgan.GENERATOR_SCOPE + "/"))
    graph.finalize()
    with tf1.Session(graph=graph, config=dcgan.session_config()) as sess:
        problem = checkpoint_mismatch(checkpoint, tf1.global_variables())
        if problem:
            raise RunError(f"{checkpoint}: does not match this run's model ({problem})")
        saver.restore(sess, checkpoint)
        images = dcgan.generate_images(sess, sampler, num, np.random.default_rng(seed))
    return images, checkpoint
