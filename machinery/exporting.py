"""export.py's work: a run's generator taken out as a TensorFlow SavedModel that plain TensorFlow
loads without this project, and, from it, a TF Lite model.

The SavedModel holds the generator generate.py samples, restored the same way
(sampling.restored_generator: the same checkpoint, the averaged generator unless --raw, batch norm
in inference mode, the convolutions this device's sampler uses), and one signature,
'serving_default': `z` float32 [batch, z_dim], any batch, to `images` uint8 [batch, N, N, C], the
pixels data.to_uint8 gives for the sampler's output, computed in the graph.

It is written with tf.compat.v1.saved_model.Builder, which saves the session's current variable
values: the averaged generator's batch-norm statistics, recomputed for --seed, are in no training
checkpoint. (simple_save is the same calls with `strip_default_attrs` off: its graph then
carries every op attribute at its default value, which an older TensorFlow or TF Serving
refuses.) TF Lite's model is converted from that SavedModel with the converter's defaults
(builtin ops only) and run once by TF Lite's interpreter, at batch 1, against the SavedModel
loaded back from disk before anything is published.

Writing: everything goes into a temporary sibling of --out named after this process
(durable.temp_prefix), is synced, then renamed to --out, so --out is absent, the old export or
the new one, never half of one; the next export into that folder removes a killed exporter's
temporary folder. An existing --out is replaced only with --force, only if it is an export (it
holds our marker, MARKER_NAME) or empty, and only once the new one is complete. Nothing is
written into the run directory.
"""
import collections
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

import data
from machinery import devices, durable, layers, run_directory, sampling, sessions
from machinery.errors import RunError, cause

tf1 = tf.compat.v1

SAVED_MODEL, TFLITE = "saved_model", "tflite"
FORMATS = (SAVED_MODEL, TFLITE)
SIGNATURE_KEY = "serving_default"  # what TF Serving, TF Lite and the converters call by default
INPUT_KEY, OUTPUT_KEY = "z", "images"
LABEL_KEY = "label"  # a conditional run's second input: the class of each image
# Our marker: what was exported from where. A SavedModel keeps it in assets.extra, the folder
# TensorFlow documents for files of the user's own (no loader reads it); a TF Lite export beside
# its model. --force replaces only a folder that holds one.
MARKER_NAME = "dcgan_export.json"
SAVED_MODEL_MARKER = os.path.join("assets.extra", MARKER_NAME)
TFLITE_FILE = "model.tflite"
# The temporary folder an export is written into, in --out's folder (+ durable.temp_prefix).
STAGING_PREFIX = ".export-"
# TF Lite's check: this many z, one at a time, may differ from the SavedModel's pixels by one
# level at most (other float kernels: a value near a level boundary may round the other way).
TFLITE_CHECK_ROWS = 4
TFLITE_MAX_LEVELS = 1

Export = collections.namedtuple("Export", "path checkpoint generator metadata")


def pixels_uint8(images, name=OUTPUT_KEY):
    """data.to_uint8 in the graph: [-1, 1] floats to 0..255 uint8 with the same float32
    operations in the same order, so the same pixels. tf.round rounds halves to even, as
    np.rint does."""
    scaled = (images + 1.0) * data.PIXEL_HALF_RANGE
    return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8, name=name)


# --- The destination ---------------------------------------------------------------------------
def is_export(folder):
    """True for a folder export.py wrote (it holds the marker)."""
    return any(os.path.isfile(os.path.join(folder, marker))
               for marker in (SAVED_MODEL_MARKER, MARKER_NAME))


def _within(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_destination(out, run, force):
    """Whether `out` holds an export to replace: refuses the run's own folders, a folder that is
    not an export (an empty one aside: nothing is lost), and an export without `force`."""
    target = os.path.realpath(out)
    if _within(target, os.path.realpath(run.checkpoint_dir)):
        raise RunError(f"--out {out} is inside the run's checkpoints folder; an export never "
                       f"writes there. Choose another --out")
    if _within(os.path.realpath(run.path), target):
        raise RunError(f"--out {out} is the run directory or holds it; choose another --out")
    if not os.path.lexists(out):
        return False
    try:
        empty = os.path.isdir(out) and not os.path.islink(out) and not os.listdir(out)
    except OSError as error:
        raise RunError(f"cannot look inside --out {out} ({cause(error)})") from None
    if empty:
        return False  # renaming the new export onto an empty folder replaces it
    if os.path.islink(out) or not is_export(out):
        raise RunError(f"--out {out} exists and is not an export of export.py (no "
                       f"{MARKER_NAME}); nothing was written. Choose another --out")
    if not force:
        raise RunError(f"--out {out} already exists; use --force to replace it (the old export "
                       f"stays until the new one is complete)")
    return True


def _make_folders(folder):
    """Creates `folder` and its missing parents; returns those created, outermost first."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    created = []
    try:
        for path in reversed(missing):
            os.mkdir(path)
            created.append(path)
    except OSError as error:
        _remove_folders(created)
        raise RunError(f"cannot create the folder {path} ({cause(error)}); nothing was "
                       f"written") from None
    return created


def _remove_folders(created):
    for path in reversed(created):
        with contextlib.suppress(OSError):  # no longer empty: not ours alone
            os.rmdir(path)


def _make_staging(parent):
    """A new temporary folder in `parent`, named after this process (STAGING_PREFIX)."""
    try:
        return tempfile.mkdtemp(dir=parent, prefix=durable.temp_prefix(STAGING_PREFIX))
    except OSError as error:
        raise RunError(f"cannot write into {parent} ({cause(error)}); nothing was "
                       f"written") from None


def _remove_dead_leftovers(parent):
    """Removes the temporary folders that killed exporters left in `parent` (never a live
    writer's: durable.left_by_dead checks its process)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            if durable.left_by_dead(name, STAGING_PREFIX):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _fsync_tree(root):
    """Syncs every file and folder under `root`, so that the rename publishes complete bytes."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        durable.fsync_folder(folder)


def _publish(new, out, staging, replace):
    """Renames the complete `new` to `out`. An old export is first moved aside into `staging`
    (a folder cannot be renamed onto a non-empty one), and back if the second rename fails: `out`
    is the old export or the new one, but for the instant between two renames."""
    if replace:
        aside = os.path.join(staging, "replaced")
        os.rename(out, aside)
        try:
            os.rename(new, out)
        except OSError:
            os.rename(aside, out)
            raise
    else:
        os.rename(new, out)
    durable.fsync_folder(os.path.dirname(os.path.abspath(out)))


# --- Writing -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet(log_path):
    """The v1 SavedModel API and TF Lite's converter and interpreter log deprecations and their
    progress, in Python and from C++ (file descriptor 2): into `log_path` (in the temporary
    folder: a converter that aborts the process leaves it there) instead of the terminal. The
    export's own line says what happened."""
    loggers = [tf.get_logger(), logging.getLogger("absl")]
    levels = [logger.level for logger in loggers]
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    try:
        with open(log_path, "ab") as log, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _save_saved_model(restored, export_dir):
    """Adds the pixels to the restored generator's graph and writes the graph and the session's
    variables as a SavedModel with its one signature."""
    sampler = restored.sampler
    pixels = pixels_uint8(sampler.samples)
    inputs = {INPUT_KEY: sampler.z}
    if sampler.labels is not None:
        inputs[LABEL_KEY] = sampler.labels
    signature = tf1.saved_model.predict_signature_def(inputs=inputs, outputs={OUTPUT_KEY: pixels})
    builder = tf1.saved_model.Builder(export_dir)
    builder.add_meta_graph_and_variables(
        restored.session, [tf1.saved_model.SERVING], signature_def_map={SIGNATURE_KEY: signature},
        strip_default_attrs=True, clear_devices=True)
    builder.save()


def _rows(z, labels):
    """Each row of z alone (batch 1) as the signature's inputs, with its label if any."""
    for index, row in enumerate(z):
        inputs = {INPUT_KEY: row[np.newaxis]}
        if labels is not None:
            inputs[LABEL_KEY] = labels[index:index + 1]
        yield inputs


def _saved_model_pixels(saved_model, z, labels=None):
    """The SavedModel at `saved_model`, loaded back in a graph of its own, on each row of `z`
    (and `labels`) alone (batch 1): uint8 [len(z), N, N, C]."""
    with tf1.Session(graph=tf.Graph()) as sess:
        meta_graph = tf1.saved_model.loader.load(sess, [tf1.saved_model.SERVING], saved_model)
        signature = meta_graph.signature_def[SIGNATURE_KEY]
        fetch = signature.outputs[OUTPUT_KEY].name
        return np.concatenate([
            sess.run(fetch, {signature.inputs[key].name: value for key, value in row.items()})
            for row in _rows(z, labels)])


def _convert_to_tflite(saved_model, path, z, labels=None):
    """Converts the SavedModel into TF Lite's model at `path` and runs it on each row of `z`
    alone (batch 1) against the SavedModel; returns the check's numbers.

    Raises:
      RunError: the converter refused the SavedModel, or the interpreter's pixels differ from
        the SavedModel's by more than TFLITE_MAX_LEVELS.
    """
    try:
        # TensorFlow 2's converter, which keeps the signature (TF Lite's signature runner calls it
        # by name); graph mode would get the TF1 converter, whose model has no signature.
        with context.eager_mode():
            model = tf.lite.TFLiteConverter.from_saved_model(saved_model).convert()
            runner = tf.lite.Interpreter(model_content=model).get_signature_runner(SIGNATURE_KEY)
            lite = np.concatenate([runner(**row)[OUTPUT_KEY] for row in _rows(z, labels)])
    except Exception as error:  # the converter's own error classes are not public API
        raise RunError(f"TF Lite's converter or interpreter refused the SavedModel "
                       f"({type(error).__name__}: {cause(error)}); nothing was written") from None
    differences = np.abs(lite.astype(int) - _saved_model_pixels(saved_model, z, labels))
    check = {"batch": 1, "z": len(z), "pixels": int(differences.size),
             "max_levels": int(differences.max()),
             "differing_pixels": int(np.count_nonzero(differences))}
    if check["max_levels"] > TFLITE_MAX_LEVELS:
        raise RunError(f"TF Lite's model differs from the SavedModel by up to "
                       f"{check['max_levels']} levels ({check['differing_pixels']:,} of "
                       f"{check['pixels']:,} pixels at batch 1); nothing was written")
    with open(path, "wb") as handle:
        handle.write(model)
    return check


def _write(staging, run, export_format, seed, checkpoint, raw):
    """Writes the export into `staging`; returns (the folder to publish, its checkpoint, its
    generator, the marker's contents)."""
    saved_model = os.path.join(staging, SAVED_MODEL)
    log_path = os.path.join(staging, "tensorflow.log")
    with sampling.restored_generator(run, seed, checkpoint, raw) as restored, _quiet(log_path):
        _save_saved_model(restored, saved_model)
    config = restored.config
    size, classes = run_directory.image_size(config), sampling.num_classes(config)
    metadata = {"format": export_format, "run": os.path.abspath(run.path),
                "checkpoint": restored.checkpoint, "generator": restored.generator, "seed": seed,
                "convolutions": layers.convolution_implementation(None),
                "signature": SIGNATURE_KEY,
                "inputs": {INPUT_KEY: {"dtype": "float32", "shape": [None, config["z_dim"]]},
                           **({LABEL_KEY: {"dtype": "int32", "shape": [None]}} if classes
                              else {})},
                "outputs": {OUTPUT_KEY: {"dtype": "uint8",
                                         "shape": [None, size, size, config["output_dim"]]}},
                "tensorflow": tf.__version__}
    if export_format == SAVED_MODEL:
        marker = os.path.join(saved_model, SAVED_MODEL_MARKER)
        os.makedirs(os.path.dirname(marker))
        new = saved_model
    else:
        new = os.path.join(staging, TFLITE)
        os.mkdir(new)
        z = sessions.draw_z(np.random.default_rng([seed, 11]), TFLITE_CHECK_ROWS,
                            config["z_dim"])
        labels = np.arange(TFLITE_CHECK_ROWS, dtype=np.int32) % classes if classes else None
        with _quiet(log_path):
            metadata["tflite_check"] = _convert_to_tflite(
                saved_model, os.path.join(new, TFLITE_FILE), z, labels)
        marker = os.path.join(new, MARKER_NAME)
    with open(marker, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle, indent=2, sort_keys=True)
    return new, restored.checkpoint, restored.generator, metadata


def export_run(run_path, out, export_format=SAVED_MODEL, seed=0, checkpoint=None, raw=False,
               force=False):
    """Exports a run's generator to the new folder `out`, atomically.

    Args:
      run_path: a run directory of train.py.
      out: the folder to create (its missing parents are created too): a SavedModel, or for
        `export_format` 'tflite' a folder holding TFLITE_FILE.
      export_format: one of FORMATS.
      seed: the seed of the averaged generator's statistics batch (generate.py's --seed); a run
        without --g-ema, or `raw`, does not depend on it.
      checkpoint: a checkpoint prefix instead of the run's newest that restores.
      raw: the trained weights even where the run keeps an average.
      force: replace an existing export at `out`, once the new one is complete.

    Returns:
      Export(path, checkpoint restored, generator description, the marker's contents).

    Raises:
      RunError: not a run, no checkpoint or no such one, an `out` that exists (without `force`)
        or is not ours, a write that failed, TF Lite's model refused or wrong. `out` then holds
        what it held before, and no temporary folder or created parent is left.
    """
    if export_format not in FORMATS:
        raise RunError(f"unknown format {export_format!r}; choose one of {', '.join(FORMATS)}")
    out = os.path.normpath(out)  # 'model/' and 'model' are one folder to check and rename
    run = run_directory.RunDir(run_path)
    run.read_config()  # not a run directory: refused before anything is created
    replace = _check_destination(out, run, force)
    parent = os.path.dirname(os.path.abspath(out))
    created = _make_folders(parent)
    staging, published = None, False
    try:
        _remove_dead_leftovers(parent)
        staging = _make_staging(parent)
        try:
            new, restored, generator, metadata = _write(staging, run, export_format, seed,
                                                        checkpoint, raw)
            _fsync_tree(new)
            _publish(new, out, staging, replace)
        except (OSError, tf.errors.OpError) as error:
            kept = f"{out} is as it was" if replace else f"nothing was written to {out}"
            raise RunError(f"cannot write the export {out} ({cause(error)}); {kept}") from None
        published = True
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
        if not published:
            _remove_folders(created)
    return Export(out, restored, generator, metadata)


def _tensor(name, spec):
    """'z float32 [batch, 100]'."""
    shape = ", ".join("batch" if side is None else str(side) for side in spec["shape"])
    return f"{name} {spec['dtype']} [{shape}]"


def describe(export):
    """One line: what was written where, what it takes and gives, and TF Lite's check."""
    metadata = export.metadata
    what = f"TF Lite model {os.path.join(export.path, TFLITE_FILE)}" \
        if metadata["format"] == TFLITE else f"SavedModel {export.path}"
    line = (f"wrote the {what} from {export.checkpoint}, {export.generator}: signature "
            f"'{metadata['signature']}', "
            f"{', '.join(_tensor(*item) for item in metadata['inputs'].items())} -> "
            f"{', '.join(_tensor(*item) for item in metadata['outputs'].items())}")
    check = metadata.get("tflite_check")
    if check:
        found = f"{check['differing_pixels']:,} of {check['pixels']:,} pixels one level apart" \
            if check["differing_pixels"] else f"the same {check['pixels']:,} pixels"
        line += f"; checked at batch 1 on {check['z']} z against the SavedModel: {found}"
    return line


def export(args):
    """export.py with its parsed flags: writes the export and says what it is; returns the exit
    status (a problem is one line on stderr, and nothing is left half-written)."""
    devices.warn_if_gpu_unseen()
    try:
        made = export_run(args.run, args.out, args.format, args.seed, args.checkpoint, args.raw,
                          args.force)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(describe(made))
    return 0
