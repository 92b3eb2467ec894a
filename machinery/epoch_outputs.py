"""What a training run leaves after each epoch besides its checkpoint: the sample grid of the fixed
z (a file and in TensorBoard), the progress GIF, the loss plot and, with --eval-every, the sample
quality. None of it is needed to resume: a failure is reported in one line and training goes on.
"""
import collections
import struct
import sys
import time

import numpy as np

import data
from machinery import (averaged_generator, checkpoints, classifiers, errors, feature_cache,
                       feature_spaces, image_rows, metrics, pictures, quality, sessions)

Evaluation = collections.namedtuple("Evaluation", "classifier real_images real_outputs")
Evaluation.__doc__ = """classifier: what scores the images (feature_spaces.scorer: the data's
classifier, or a flat folder's fixed feature space); the real images to compare with, and what
it gives for them (from the feature cache)."""
GRID_CLASSES = 10  # a conditional run's grids show its first 10 classes, a row each


def load_evaluation(args, dataset):
    """With --eval-every, what scores the images (feature_spaces.scorer: the cached classifier,
    a labeled folder's of its classes, or a flat folder's fixed feature space), the real images
    to compare with and their features (feature_cache.py); else None.

    Raises:
      RunError: too few images, or no classifier for the data (a class of too few images, a
        missing file).
    """
    if not args.eval_every:
        return None
    if len(dataset.images) < quality.MIN_IMAGES:
        raise errors.RunError(f"--eval-every needs at least {quality.MIN_IMAGES} real images "
                              f"({quality.MIN_IMAGES_WHY}); {args.dataset} has "
                              f"{len(dataset.images)}")
    try:
        if args.dataset == data.FOLDER and feature_spaces.is_labeled(dataset):
            classifiers.require_labeled(dataset, args.images, "--eval-every")
        space, _ = feature_spaces.scorer(dataset, args.images, args.data_dir,
                                         download=not args.no_download,
                                         verify=not args.skip_checksum)
    except data.DatasetError as error:
        raise errors.RunError(str(error) if args.dataset == data.FOLDER else  # it says so
                              f"--eval-every needs the classifier's data: {error}") from None
    rows = quality.real_rows(len(dataset.images), args.eval_num, args.seed)
    path = feature_cache.cache_path(dataset, args.images, args.data_dir, space.key, args.splits)
    try:
        outputs = feature_cache.real_outputs(path, dataset.images, rows, space.predict)
    except BaseException:
        space.close()
        raise
    return Evaluation(space, image_rows.read_rows(dataset.images, rows), outputs)


def optional_work(what, function, *args):
    """Runs work the training does not depend on; a failure becomes one warning line."""
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 -- whatever failed, training must go on
        print(f"warning: {what} failed ({type(error).__name__}: {errors.cause(error)}); "
              f"training goes on", file=sys.stderr, flush=True)


class EpochOutputs:
    """The grids, GIF, plots and evaluations of a run, drawn from its sampler: the averaged
    generator's when the run keeps one and --raw is not given, else the trained generator's."""

    def __init__(self, args, sess, model, run, log, fixed_z, evaluation, classes=None):
        self.args, self.sess, self.run, self.log = args, sess, run, log
        self.fixed_z, self.evaluation, self.classes = fixed_z, evaluation, classes
        self.sampler = model.averaged if model.averaged and not args.raw else model.sampler
        self.sampler_name = "averaged G" if self.sampler is model.averaged else None
        self.gif_frames = {}  # the progress GIF's frames, converted once
        self.best, self.keeps_best = None, bool(evaluation)
        if evaluation:
            try:  # the best checkpoint an earlier start of the run kept, to be beaten
                self.best = checkpoints.best_record(run.checkpoint_dir)
            except errors.RunError as error:
                self.keeps_best = False  # never overwrite a record it cannot read
                print(f"warning: {error}; until then no best checkpoint is kept",
                      file=sys.stderr, flush=True)

    def write(self, epoch_number, step):
        """Everything of the epoch that ended at `step`, each failure one warning line."""
        # The sampler's weights are those of this epoch's end: set its statistics once for them.
        optional_work("the averaged generator's statistics", averaged_generator.prepare_sampler,
                      self.sess, self.sampler, self.args.seed)
        optional_work("the sample grid", self.save_samples, epoch_number, step)
        optional_work("the progress GIF", pictures.save_progress_gif, self.run.progress_gif_path,
                      self.run.sample_grid_paths(epoch_number), 0.5, self.gif_frames)
        if self.evaluation and epoch_number % self.args.eval_every == 0:
            optional_work("the evaluation", self.evaluate, epoch_number, step)
        if self.log.rows:
            optional_work("the loss plot", pictures.save_loss_plot, self.run.loss_plot_path,
                          self.log.rows)

    def save_samples(self, epoch_number, step):
        """The sample grid of the fixed z, as a file and in TensorBoard: of a conditional run,
        a row per class (the first GRID_CLASSES), the same z down each column."""
        z, labels = self.fixed_z, None
        if self.classes is not None:
            rows, columns = min(len(self.classes.shares), GRID_CLASSES), self.args.sample_grid
            z = np.tile(self.fixed_z[:columns], (rows, 1))
            labels = np.repeat(np.arange(rows, dtype=np.int32), columns)
        images = sessions.run_sampler(self.sess, self.sampler, z, labels=labels)
        which = f", {self.sampler_name}" if self.sampler_name else ""
        png = pictures.save_grid_png(self.run.sample_grid_path(epoch_number), images,
                                     self.args.sample_grid,
                                     f"epoch {epoch_number}, step {step}{which}")
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
        self.log.add_png("samples", png, width, height, step)

    def evaluate(self, epoch_number, step):
        """Measures sample quality (--eval-every) into metrics.csv, TensorBoard and quality.png."""
        labels = None if self.classes is None else sessions.draw_labels(
            np.random.default_rng([self.args.seed, 10, epoch_number]), self.args.eval_num,
            self.classes.shares)
        generated = sessions.generate_images(
            self.sess, self.sampler, self.args.eval_num,
            np.random.default_rng([self.args.seed, 4, epoch_number]), labels=labels)
        result = quality.quality(self.evaluation.classifier, data.to_uint8(generated),
                                 self.evaluation.real_images, self.args.seed,
                                 self.evaluation.real_outputs)
        result["feature_space"] = self.evaluation.classifier.name
        which = f" ({self.sampler_name})" if self.sampler_name else ""
        print(f"epoch {epoch_number} quality{which}: {quality.format_quality(result)}",
              flush=True)
        fields = [field for field in metrics.QUALITY_FIELDS if field in result]
        self.log.record({"step": step, "epoch": epoch_number, "time": time.time(),
                         **{field: result[field] for field in fields}}, [("quality", fields)])
        pictures.save_quality_plot(self.run.quality_plot_path, self.log.rows,
                                   result.get("num_classes"))
        if self.keeps_best:
            self.keep_if_best(result, epoch_number, step)

    def keep_if_best(self, result, epoch_number, step):
        """Keeps the checkpoint of `step` as the best (checkpoints.keep_best) when its number
        (quality.selection_metric; the run's first best decides which) beats the best so far."""
        metric = self.best["metric"] if self.best else \
            quality.selection_metric(result["num_real"])
        value = float(result[metric])
        if self.best and not value < self.best["value"]:
            print(f"best so far: {self.best_line()}", flush=True)
            return
        record = {"epoch": epoch_number, "metric": metric, "value": value,
                  "num_generated": result["num_generated"], "num_real": result["num_real"],
                  "feature_space": result.get("feature_space")}
        checkpoints.keep_best(self.run.checkpoint_dir, step, record)
        self.best = dict(record, checkpoint=f"{checkpoints.BEST}-{step}", step=step)
        print(f"new best: {self.best_line()}", flush=True)

    def best_line(self):
        """'epoch 15, step 585 (KID 0.0123): runs/x/checkpoints/best-585', or None."""
        if not self.best:
            return None
        name = quality.METRIC_NAMES.get(self.best["metric"], self.best["metric"])
        return (f"epoch {self.best['epoch']}, step {self.best['step']} ({name} "
                f"{self.best['value']:.4f}): "
                f"{self.run.checkpoint_dir}/{self.best['checkpoint']}")
