"""machinery/checkpoints.py under faults: a garbage state file, a damaged newest checkpoint passed
over for the one before it (by train.py and by generate.py), only damaged checkpoints refused, a
write that fails midway leaving the previous one, three kept across many resumes, and another
model's checkpoint. Each test checks the exit status, the one-line message, and that every file
saved before is intact; and the best checkpoint (checkpoints.keep_best, --checkpoint best) kept
beside the newest ones, never deleted by rotation, replaced whole or not at all (faults injected
at every write), and named by every command that reads a checkpoint."""
import errno
import json
import os

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

import evaluate
import features
import generate
import train
from machinery import checkpoints, classifiers, durable, errors
from helpers import (checkpoint_steps, checkpoint_values, limit_file_size, metric_steps,
                     one_error_line, snapshot, start_training, train_args)

tf1 = tf.compat.v1


# --- Damaged checkpoints ---------------------------------------------------------------------
@pytest.mark.slow
def test_garbage_state_file_does_not_hide_the_checkpoints(data_dir, run, capsys):
    (run / "checkpoints" / "checkpoint").write_bytes(b"\x00\xffnot a state file")
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    assert "checkpoints/model-8: step 8" in capsys.readouterr().out  # resumed from the newest
    assert checkpoint_steps(run) == [12, 8, 4]
    assert metric_steps(run) == list(range(1, 13))  # history kept, nothing trained twice


@pytest.mark.parametrize("damage", ["missing index", "truncated data", "garbage data",
                                    "missing data"])
@pytest.mark.slow
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(data_dir, run, capsys, damage):
    folder = run / "checkpoints"
    data_file = folder / "model-8.data-00000-of-00001"
    if damage == "missing index":
        os.remove(folder / "model-8.index")
    elif damage == "truncated data":
        data_file.write_bytes(data_file.read_bytes()[:1000])
    elif damage == "garbage data":
        size = data_file.stat().st_size
        data_file.write_bytes(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    else:
        os.remove(data_file)
    before = snapshot(run, skip={"metrics.csv", "checkpoints/checkpoint"})
    assert train.main(train_args(data_dir, run, "--epochs", "2")) == 0  # trains epoch 2 again
    out = capsys.readouterr().out
    assert "resumed" in out and "model-4" in out
    if damage != "missing index":  # an index-less checkpoint is not a checkpoint at all
        assert "passed over the damaged checkpoint" in out and "model-8" in out
        assert (folder / "damaged" / "model-8.index").is_file()  # set aside, not deleted
    assert checkpoint_steps(run) == [8, 4]
    assert metric_steps(run) == list(range(1, 9))
    after = snapshot(run)
    for path, digest in before.items():  # the checkpoint resumed from is untouched
        if path.startswith("checkpoints/model-4"):
            assert after[path] == digest, path


@pytest.mark.slow
def test_only_damaged_checkpoints_refuse_to_start_over(data_dir, run, capsys):
    for name in ("model-4.index", "model-8.index"):
        (run / "checkpoints" / name).write_bytes(b"garbage")
    before = snapshot(run)
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "no checkpoint in" in line and "model-8" in line and "--fresh" in line
    assert snapshot(run) == before  # nothing touched, metrics.csv included


@pytest.mark.slow
def test_checkpoint_files_without_any_index_refuse_to_start_over(data_dir, run, capsys):
    for name in ("model-4.index", "model-8.index"):
        os.remove(run / "checkpoints" / name)
    before = snapshot(run)
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    assert "no complete checkpoint" in one_error_line(capsys.readouterr().err)
    assert snapshot(run) == before


@pytest.mark.slow
def test_generate_passes_over_a_damaged_newest_checkpoint(run, tmp_path, capsys):
    (run / "checkpoints" / "model-8.data-00000-of-00001").write_bytes(b"garbage")
    before = snapshot(run)
    assert generate.main(["--run", str(run), "--num", "4", "--out", str(tmp_path / "g.npz")]) == 0
    out = capsys.readouterr().out
    assert "passed over the damaged checkpoint" in out and "wrote 4 images of 32x32 from" in out
    assert "model-4" in out.splitlines()[-1]
    assert snapshot(run) == before  # a reader never moves anything
    assert generate.main(["--run", str(run), "--checkpoint", str(run / "checkpoints" / "model-8"),
                          "--out", str(tmp_path / "h.png")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "model-8: cannot be restored" in line


@pytest.mark.slow
def test_checkpoint_of_another_model_is_a_clear_error(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    os.remove(run / "config.json")  # hide the settings: only the checkpoint can tell
    assert train.main(train_args(data_dir, run, "--epochs", "2", "--z-dim", "64")) == 1
    assert "not a checkpoint of this model" in capsys.readouterr().err


# --- Writes that fail ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_checkpoint_write_that_fails_midway_leaves_the_previous_one(data_dir, run):
    before = snapshot(run, skip={"metrics.csv"})
    # 10 MB: the metrics, pictures and events fit; the 71 MB checkpoint data file does not.
    process = start_training(data_dir, run, "--epochs", "3", preexec_fn=limit_file_size(10 << 20))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    line = one_error_line(stderr)
    assert "cannot save the checkpoint" in line and "model-12" in line
    assert "File too large" in line and "model-8 is intact" in line
    assert checkpoint_steps(run) == [8, 4]
    after = snapshot(run)
    for path, digest in before.items():
        if path.startswith("checkpoints/model-"):
            assert after[path] == digest, path
    assert not [name for name in os.listdir(run / "checkpoints") if name.startswith(".")]
    assert not [name for name in os.listdir(run) if name.startswith(".tmp")]
    # Once the cause is gone, the same command resumes from model-8 and finishes.
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    assert checkpoint_steps(run) == [12, 8, 4]
    assert metric_steps(run) == list(range(1, 13))


@pytest.mark.slow
def test_three_checkpoints_are_kept_across_many_resumes(data_dir, run):
    for epochs in (3, 4, 5, 6):
        assert train.main(train_args(data_dir, run, "--epochs", str(epochs))) == 0
    assert checkpoint_steps(run) == [24, 20, 16]
    names = sorted(os.listdir(run / "checkpoints"))
    assert names == ["checkpoint"] + [f"model-{step}.{part}" for step in (16, 20, 24)
                                      for part in ("data-00000-of-00001", "index")]
    assert 'model_checkpoint_path: "model-24"' in (run / "checkpoints" / "checkpoint").read_text()
    assert PIL.Image.open(run / "samples" / "progress.gif").n_frames == 6  # every epoch, resumed


# --- The best checkpoint ------------------------------------------------------------------


class TinyModel:
    """One variable, saved and restored with checkpoints.py: its value is the step it was saved
    at, so a restore says which checkpoint it read."""

    def __init__(self):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.value = tf1.get_variable("value", [], tf.float32, tf1.zeros_initializer())
            self.new = tf1.placeholder(tf.float32, [])
            self.assign = self.value.assign(self.new)
            self.saver = tf1.train.Saver([self.value], max_to_keep=None)
        self.sess = tf1.Session(graph=self.graph)

    def save(self, folder, step):
        self.sess.run(self.assign, {self.new: float(step)})
        checkpoints.save(folder, self.sess, self.saver, step)

    def restored(self, folder, checkpoint):
        self.sess.run(self.assign, {self.new: -1.0})
        prefix = checkpoints.restore(folder, self.sess, self.saver, [self.value], checkpoint)
        return os.path.basename(prefix), float(self.sess.run(self.value))


@pytest.fixture
def model():
    tiny = TinyModel()
    yield tiny
    tiny.sess.close()


def record(value, epoch=1):
    return {"epoch": epoch, "metric": "kid", "value": value}


def test_the_best_outlives_rotation_and_is_replaced_by_a_better_one(tmp_path, model, capsys):
    folder = str(tmp_path)
    for step in range(1, 6):
        model.save(folder, step)
        if step in (2, 4):
            checkpoints.keep_best(folder, step, record(1.0 / step, epoch=step))
    assert [checkpoints.checkpoint_step(p) for p in checkpoints.listed(folder)] == [5, 4, 3]
    assert model.restored(folder, "best") == ("best-4", 4.0)
    assert checkpoints.best_record(folder) == dict(record(0.25, 4), checkpoint="best-4", step=4)
    assert sorted(name for name in os.listdir(folder) if name.startswith("best")) == [
        "best-4.data-00000-of-00001", "best-4.index", "best.json"]
    for step in range(6, 9):  # model-4 rotated away: best-4 stays, by its own name
        model.save(folder, step)
    assert model.restored(folder, "best") == ("best-4", 4.0)
    assert model.restored(folder, None) == ("model-8", 8.0)  # resuming takes the newest
    assert not [name for name in os.listdir(folder) if name.startswith(".")]


def test_no_best_a_damaged_record_and_missing_files_are_one_line_each(tmp_path, model):
    folder = str(tmp_path)
    model.save(folder, 1)
    with pytest.raises(errors.RunError, match="holds no best checkpoint .best.json not found.: "
                                              "a run keeps one when it trains with --eval-every"):
        model.restored(folder, "best")
    checkpoints.keep_best(folder, 1, record(0.5))
    for content in (b"", b'{"checkpoint": "best-1", "va', b"[1]", b'{"checkpoint": "../x"}'):
        (tmp_path / "best.json").write_bytes(content)
        with pytest.raises(errors.RunError, match="damaged record of the best checkpoint") as error:
            checkpoints.resolve(folder, "best")
        assert "\n" not in str(error.value)
    checkpoints.keep_best(folder, 1, record(0.5))
    os.remove(tmp_path / "best-1.index")
    with pytest.raises(errors.RunError, match="best-1: the best checkpoint named by best.json is "
                                              "missing"):
        checkpoints.resolve(folder, "best")
    (tmp_path / "best-1.index").write_bytes(b"garbage")
    with pytest.raises(errors.RunError, match="best-1: cannot be restored"):
        model.restored(folder, "best")


def disk_full_at(monkeypatch, module, name, call):
    """Makes the `call`-th call of module.name fail as a full disk does."""
    original, calls = getattr(module, name), []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


@pytest.mark.parametrize("module, name, call", [
    (durable, "link_or_copy", 1), (durable, "link_or_copy", 2),  # linking the files
    (os, "replace", 1), (os, "replace", 2),  # moving them in: the data, then the index
    (durable, "write_json", 1)])  # the record that commits them
def test_a_write_that_fails_anywhere_leaves_the_previous_best(tmp_path, model, monkeypatch,
                                                              module, name, call):
    folder = str(tmp_path)
    model.save(folder, 1)
    checkpoints.keep_best(folder, 1, record(0.5))
    model.save(folder, 2)
    before = snapshot(folder)
    disk_full_at(monkeypatch, module, name, call)
    with pytest.raises(errors.RunError) as error:
        checkpoints.keep_best(folder, 2, record(0.25))
    assert "cannot keep" in str(error.value) and "No space left on device" in str(error.value)
    assert "the previous best, if any, is intact" in str(error.value)
    monkeypatch.undo()
    after = snapshot(folder)
    assert {path: after.get(path) for path in before} == before  # not one byte changed
    assert not [name for name in os.listdir(folder) if name.startswith(".")]  # no staging left
    assert model.restored(folder, "best") == ("best-1", 1.0)
    # What a failure half-way left (best-2's data, or all of it unrecorded) goes with the next.
    checkpoints.keep_best(folder, 2, record(0.25))
    assert sorted(name for name in os.listdir(folder) if name.startswith("best-")) == [
        "best-2.data-00000-of-00001", "best-2.index"]
    assert model.restored(folder, "best") == ("best-2", 2.0)


# --- In a training run, and the commands -----------------------------------------------------
@pytest.mark.slow
def test_eval_every_keeps_the_best_and_every_command_takes_it(data_dir, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "3", "--eval-every", "1",
                                 "--eval-num", "8")) == 0
    out = capsys.readouterr().out
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["metric"] == "kid" and best["num_real"] == 8  # below 10,000 real images
    steps = {4: 1, 8: 2, 12: 3}
    assert best["epoch"] == steps[best["step"]]
    assert "new best: epoch 1, step 4 (KID " in out
    assert f"best evaluated checkpoint: epoch {best['epoch']}, step {best['step']} (KID " \
           f"{best['value']:.4f}): {run}/checkpoints/best-{best['step']}" in out
    assert generate.main(["--run", str(run), "--checkpoint", "best", "--num", "4",
                          "--out", str(tmp_path / "g.png")]) == 0
    assert f"from {run}/checkpoints/best-{best['step']}" in capsys.readouterr().out
    assert evaluate.main(["--run", str(run), "--checkpoint", "best", "--num", "8"]) == 0
    result = json.loads((run / "evaluation.json").read_text())[str(best["step"])]
    assert result["checkpoint"] == f"best-{best['step']}"


@pytest.mark.slow
def test_features_and_evaluate_say_in_one_line_that_a_run_has_no_best(two_epochs, capsys):
    before = snapshot(two_epochs)
    for tool, extra in ((features, ["--labels", "10"]), (evaluate, ["--num", "8"]),
                        (generate, [])):
        assert tool.main(["--run", str(two_epochs), "--checkpoint", "best", *extra]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert "holds no best checkpoint" in line, tool
    assert snapshot(two_epochs) == before
    np.testing.assert_equal(checkpoints.best_record(str(two_epochs / "checkpoints")), None)


@pytest.mark.slow
def test_evaluating_and_keeping_the_best_change_no_training_number(data_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    plain, evaluated = tmp_path / "plain", tmp_path / "evaluated"
    assert train.main(train_args(data_dir, plain, "--epochs", "2", "--deterministic")) == 0
    assert train.main(train_args(data_dir, evaluated, "--epochs", "2", "--deterministic",
                                 "--eval-every", "1", "--eval-num", "8")) == 0
    expected, got = checkpoint_values(str(plain)), checkpoint_values(str(evaluated))
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert (evaluated / "checkpoints" / "best.json").is_file()
