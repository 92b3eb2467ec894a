"""A run's checkpoints: model-<step> files in its checkpoints/ folder, written whole or not at all,
the newest CHECKPOINTS_KEPT kept, restored newest first, a damaged one passed over for the one
before it; and, with --eval-every, the best one evaluated, kept as best-<step> beside them.

A checkpoint holds the weights, both Adam states, the step, the epoch, the fixed sample z and the
position in the data (training_graph.py). The files are the truth: a checkpoint exists once its
index is in place, whatever TensorFlow's own state file says.
"""
import os
import re
import shutil
import tempfile

import tensorflow as tf

from machinery import durable
from machinery.errors import RunError, cause, read_saved_record

CHECKPOINT_PREFIX = "model"
CHECKPOINTS_KEPT = 3
# A checkpoint exists once its index is in place (the data files are moved in before it).
_CHECKPOINT_INDEX = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")
_STATE_FILE = "checkpoint"  # TensorFlow's own list of checkpoints, for its tools; never read here
# Checkpoints are written into a staging folder of this prefix; claims.py removes dead writers'.
STAGING_PREFIX = ".saving-"
# The best checkpoint (keep_best): best-<step> files, which rotation never lists, and best.json,
# the record that commits them; --checkpoint best names it (resolve).
BEST = "best"
BEST_RECORD = "best.json"
_BEST_INDEX = re.compile(r"^best-(\d+)\.index$")
_BEST_FILE = re.compile(r"^best-(\d+)\.")


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


def listed(folder):
    """The checkpoint prefixes in `folder`, newest (highest step) first, found from their index
    files: TensorFlow's state file can be stale or damaged, the files are the truth."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    steps = sorted((int(match.group(1)) for match in map(_CHECKPOINT_INDEX.match, names)
                    if match), reverse=True)
    return [os.path.join(folder, f"{CHECKPOINT_PREFIX}-{step}") for step in steps]


def newest(folder):
    """The newest checkpoint prefix in `folder`, or None."""
    found = listed(folder)
    return found[0] if found else None


def restore(folder, sess, saver, variables, checkpoint=None, set_aside_damaged=False):
    """Restores `checkpoint` (a prefix, or 'best': resolve), or else the newest checkpoint in
    `folder` that restores, saying which ones were passed over and why; returns the prefix
    restored, None if there is none.

    Raises:
      RunError: a checkpoint of another model; only damaged checkpoints (or damaged
        checkpoint files and no complete checkpoint); a named `checkpoint` that is damaged or
        missing, or no best checkpoint.
    """
    checkpoint = resolve(folder, checkpoint)
    candidates = [checkpoint] if checkpoint else listed(folder)
    if not candidates:
        leftovers = [name for name in os.listdir(folder)
                     if name.startswith(CHECKPOINT_PREFIX + "-")] if os.path.isdir(folder) else []
        if leftovers:
            raise RunError(f"{folder} holds checkpoint files but no complete checkpoint (no "
                           f"{CHECKPOINT_PREFIX}-<step>.index); move them away to start over, "
                           f"or use --fresh")
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
            _report_damaged(folder, damaged, prefix, set_aside_damaged)
            return prefix
    if checkpoint:
        raise RunError(f"{checkpoint}: cannot be restored ({damaged[0][1]})")
    details = "; ".join(f"{os.path.basename(prefix)}: {why}" for prefix, why in damaged)
    raise RunError(f"no checkpoint in {folder} can be restored ({details}). Put back good "
                   f"copies, or move them away to start over (or --fresh)")


def _checkpoint_files(folder, prefix):
    """The file names of one checkpoint in `folder`, its index first."""
    base = os.path.basename(prefix) + "."
    return sorted((name for name in os.listdir(folder) if name.startswith(base)),
                  key=lambda name: not name.endswith(".index"))


def _report_damaged(folder, damaged, restored, set_aside):
    for prefix, why in damaged:
        note = ""
        if set_aside:
            aside = os.path.join(folder, "damaged")
            os.makedirs(aside, exist_ok=True)
            for name in _checkpoint_files(folder, prefix):
                os.replace(os.path.join(folder, name), os.path.join(aside, name))
            note = f"; moved to {aside}"
        print(f"passed over the damaged checkpoint {prefix} ({why}){note}; using "
              f"{os.path.basename(restored)}", flush=True)


def save(folder, sess, saver, step):
    """Writes checkpoint model-<step> into `folder`, then keeps the newest CHECKPOINTS_KEPT.

    The files are written into a staging folder and moved in data first, index last, so a
    checkpoint appears whole or not at all; the older ones are deleted only after it is in
    place. A failed write (full disk, lost permission, I/O error) leaves no file behind.

    Raises:
      RunError: the write failed; the message names the path and the cause.
    """
    name = f"{CHECKPOINT_PREFIX}-{step}"
    previous = newest(folder)
    staging = None
    try:
        staging = tempfile.mkdtemp(dir=folder, prefix=durable.temp_prefix(STAGING_PREFIX))
        saver.save(sess, os.path.join(staging, name), write_meta_graph=False,
                   write_state=False)  # generate.py rebuilds the graph from code
        for file_name in sorted(os.listdir(staging), key=lambda n: n.endswith(".index")):
            os.replace(os.path.join(staging, file_name), os.path.join(folder, file_name))
        durable.fsync_folder(folder)
        _write_state_file(folder)
    except (OSError, tf.errors.OpError, ValueError) as error:
        kept = f"the previous checkpoint {previous} is intact" if previous else \
            "no earlier checkpoint exists"
        raise RunError(f"cannot save the checkpoint {os.path.join(folder, name)} "
                       f"({cause(error)}); {kept}. Free the space or fix the cause, then run the "
                       f"same command to resume") from None
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    _remove_old_checkpoints(folder)


def _write_state_file(folder):
    """TensorBoard and tf.train.latest_checkpoint read this; nothing here does."""
    names = [os.path.basename(prefix) for prefix in listed(folder)[:CHECKPOINTS_KEPT]]
    text = f'model_checkpoint_path: "{names[0]}"\n' + "".join(
        f'all_model_checkpoint_paths: "{name}"\n' for name in reversed(names))
    durable.atomic_write(os.path.join(folder, _STATE_FILE),
                         lambda handle: handle.write(text.encode()))


def _remove_old_checkpoints(folder):
    for prefix in listed(folder)[CHECKPOINTS_KEPT:]:
        # the index first: a checkpoint half deleted is no longer listed
        for file_name in _checkpoint_files(folder, prefix):
            try:
                os.remove(os.path.join(folder, file_name))
            except OSError as error:
                print(f"warning: cannot delete the old checkpoint file {file_name} "
                      f"({cause(error)})", flush=True)


# --- The best checkpoint ---------------------------------------------------------------------
def best_record(folder):
    """The record of the best checkpoint kept in `folder` (a dict: checkpoint, step, epoch,
    metric, value, ...), or None when there is none.

    Raises:
      RunError: best.json is damaged.
    """
    return read_saved_record(
        os.path.join(folder, BEST_RECORD), "record of the best checkpoint",
        "remove it, and the next evaluation keeps a new best",
        is_valid=lambda record: isinstance(record, dict) and bool(_BEST_INDEX.match(
            f"{record.get('checkpoint')}.index")) and isinstance(record.get("value"), float))


def resolve(folder, checkpoint):
    """The prefix a --checkpoint names: 'best' is the best checkpoint kept in `folder`; any other
    value (a prefix, or None for the newest) is returned as it is.

    Raises:
      RunError: 'best' and there is none, its record is damaged, or its files are missing.
    """
    if checkpoint != BEST:
        return checkpoint
    record = best_record(folder)
    if record is None:
        raise RunError(f"{folder} holds no best checkpoint ({BEST_RECORD} not found): a run "
                       f"keeps one when it trains with --eval-every")
    prefix = os.path.join(folder, record["checkpoint"])
    if not os.path.exists(prefix + ".index"):
        raise RunError(f"{prefix}: the best checkpoint named by {BEST_RECORD} is missing (no "
                       f"{record['checkpoint']}.index); put it back, or remove {BEST_RECORD}")
    return prefix


def keep_best(folder, step, record):
    """Keeps checkpoint model-<step> of `folder` (just saved) as the best: best-<step>, its
    files second names of model-<step>'s (durable.link_or_copy), so rotation deleting
    model-<step> leaves them; then the record, best.json, which commits them; then the previous
    best's files are deleted.

    The files are linked into a staging folder and moved in data first, index last, and the
    record is written atomically after them: a kill or a full disk at any moment leaves the
    previous best and its record whole (a new best-<step> not yet recorded is a leftover,
    removed by the next keep_best).

    Raises:
      RunError: the new best cannot be written; the message says the previous one is intact.
    """
    name = f"{BEST}-{step}"
    staging = None
    try:
        staging = tempfile.mkdtemp(dir=folder, prefix=durable.temp_prefix(STAGING_PREFIX))
        source = f"{CHECKPOINT_PREFIX}-{step}"
        for file_name in _checkpoint_files(folder, source):
            durable.link_or_copy(os.path.join(staging, name + file_name[len(source):]),
                                 os.path.join(folder, file_name))
        if not os.listdir(staging):
            raise FileNotFoundError(2, f"no checkpoint {source}")
        for file_name in sorted(os.listdir(staging), key=lambda n: n.endswith(".index")):
            os.replace(os.path.join(staging, file_name), os.path.join(folder, file_name))
        durable.fsync_folder(folder)
        durable.write_json(os.path.join(folder, BEST_RECORD), dict(record, checkpoint=name,
                                                                   step=step))
    except OSError as error:
        raise RunError(f"cannot keep {os.path.join(folder, name)} as the best checkpoint "
                       f"({cause(error)}); the previous best, if any, is intact") from None
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    for other in sorted(os.listdir(folder), key=lambda n: not n.endswith(".index")):
        match = _BEST_FILE.match(other)
        if match and int(match.group(1)) != step:  # the previous best, or a leftover
            try:
                os.remove(os.path.join(folder, other))
            except OSError as error:
                print(f"warning: cannot delete the former best checkpoint file {other} "
                      f"({cause(error)})", flush=True)
