"""machinery/checkpoints.py under faults: a garbage state file, a damaged newest checkpoint passed
over for the one before it (by train.py and by generate.py), only damaged checkpoints refused, a
write that fails midway leaving the previous one, three kept across many resumes, and another
model's checkpoint. Each test checks the exit status, the one-line message, and that every file
saved before is intact."""
import os
import resource
import signal

import numpy as np
import PIL.Image
import pytest

import generate
import train
from helpers import (checkpoint_steps, metric_steps, one_error_line, snapshot, start_training,
                     train_args)

pytestmark = pytest.mark.slow


# --- Damaged checkpoints ---------------------------------------------------------------------
def test_garbage_state_file_does_not_hide_the_checkpoints(data_dir, run, capsys):
    (run / "checkpoints" / "checkpoint").write_bytes(b"\x00\xffnot a state file")
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    assert "checkpoints/model-8: step 8" in capsys.readouterr().out  # resumed from the newest
    assert checkpoint_steps(run) == [12, 8, 4]
    assert metric_steps(run) == list(range(1, 13))  # history kept, nothing trained twice


@pytest.mark.parametrize("damage", ["missing index", "truncated data", "garbage data",
                                    "missing data"])
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


def test_only_damaged_checkpoints_refuse_to_start_over(data_dir, run, capsys):
    for name in ("model-4.index", "model-8.index"):
        (run / "checkpoints" / name).write_bytes(b"garbage")
    before = snapshot(run)
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "no checkpoint in" in line and "model-8" in line and "--fresh" in line
    assert snapshot(run) == before  # nothing touched, metrics.csv included


def test_checkpoint_files_without_any_index_refuse_to_start_over(data_dir, run, capsys):
    for name in ("model-4.index", "model-8.index"):
        os.remove(run / "checkpoints" / name)
    before = snapshot(run)
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    assert "no complete checkpoint" in one_error_line(capsys.readouterr().err)
    assert snapshot(run) == before


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


def test_checkpoint_of_another_model_is_a_clear_error(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    os.remove(run / "config.json")  # hide the settings: only the checkpoint can tell
    assert train.main(train_args(data_dir, run, "--epochs", "2", "--z-dim", "64")) == 1
    assert "not a checkpoint of this model" in capsys.readouterr().err


# --- Writes that fail ------------------------------------------------------------------------
def limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


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


def test_three_checkpoints_are_kept_across_many_resumes(data_dir, run):
    for epochs in (3, 4, 5, 6):
        assert train.main(train_args(data_dir, run, "--epochs", str(epochs))) == 0
    assert checkpoint_steps(run) == [24, 20, 16]
    names = sorted(os.listdir(run / "checkpoints"))
    assert names == ["checkpoint"] + [f"model-{step}.{part}" for step in (16, 20, 24)
                                      for part in ("data-00000-of-00001", "index")]
    assert 'model_checkpoint_path: "model-24"' in (run / "checkpoints" / "checkpoint").read_text()
    assert PIL.Image.open(run / "samples" / "progress.gif").n_frames == 6  # every epoch, resumed
