"""The run directory under faults: damaged and missing files of every kind, a second live process,
writes that fail midway, a failing evaluation, many resumes and impossible flags. Each test checks
the exit status, the one-line message, and that every file saved before is intact."""
import csv
import json
import os
import resource
import signal
import time

import numpy as np
import PIL.Image
import pytest

import evaluate
import generate
import train
from machinery import classifiers, durable, metrics, quality
from helpers import (assert_intact, checkpoint_steps, metric_steps, one_error_line, snapshot,
                     start_training, train_args)


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


# --- Damaged run files -----------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"{\"dataset\": \"sv", b"[1, 2]", b"\xff\xfe\x00garbage"])
def test_damaged_config_is_one_line_for_every_command(data_dir, run, capsys, content):
    (run / "config.json").write_bytes(content)
    before = snapshot(run)
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    assert "config.json: damaged run settings" in one_error_line(capsys.readouterr().err)
    assert generate.main(["--run", str(run), "--out", str(run.parent / "g.png")]) == 1
    assert "config.json: damaged" in one_error_line(capsys.readouterr().err)
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 1
    assert "config.json: damaged" in one_error_line(capsys.readouterr().err)
    assert snapshot(run) == before


def test_config_with_wrong_types_is_one_line(run, capsys):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, z_dim="a hundred")))
    assert generate.main(["--run", str(run), "--out", str(run.parent / "g.png")]) == 1
    assert "z_dim must be a positive integer" in one_error_line(capsys.readouterr().err)


def test_a_damaged_metrics_line_costs_that_line_only(data_dir, run, capsys):
    lines = (run / "metrics.csv").read_bytes().splitlines(keepends=True)
    lines[0] = b"st\xffep,garbage header\n"  # the header
    lines[3] = b"3,1,0.5,\xff\xfe\n"           # step 3, cut short and not UTF-8
    (run / "metrics.csv").write_bytes(b"".join(lines))
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    assert "skipped 2 damaged line(s)" in capsys.readouterr().out
    assert metric_steps(run) == [1, 2] + list(range(4, 13))


def test_damaged_evaluation_json_is_kept_aside_never_dropped(run, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    (run / "evaluation.json").write_bytes(b'{"4": {"classifier_score": 2.0}, "8": {"cl')
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 0
    out = capsys.readouterr().out
    assert "evaluation.json was damaged" in out
    aside = [name for name in os.listdir(run) if name.startswith("evaluation.json.damaged-")]
    assert len(aside) == 1
    assert (run / aside[0]).read_bytes() == b'{"4": {"classifier_score": 2.0}, "8": {"cl'
    assert list(json.loads((run / "evaluation.json").read_text())) == ["8"]
    # A later evaluation adds to the file, keeping the earlier result.
    assert evaluate.main(["--run", str(run), "--num", "8",
                          "--checkpoint", str(run / "checkpoints" / "model-4")]) == 0
    assert sorted(json.loads((run / "evaluation.json").read_text())) == ["4", "8"]


def test_evaluate_prints_its_result_even_when_it_cannot_save_it(run, capsys, monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    config = json.loads((run / "config.json").read_text())
    evaluate.main(["--run", str(run), "--num", "8"])  # trains and caches the classifier
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(durable, "write_json", refuse)
    before = snapshot(run)
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 1
    captured = capsys.readouterr()
    assert "classifier score" in captured.out  # the result, printed
    line = one_error_line(captured.err)
    assert "cannot write" in line and "evaluation.json" in line and "Permission denied" in line
    assert snapshot(run) == before
    assert config["data_dir"]  # the classifier cache lived in the data folder, not the run


def test_a_damaged_classifier_cache_is_trained_again(run, capsys, monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    data_dir = json.loads((run / "config.json").read_text())["data_dir"]
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 0
    cache = os.path.join(data_dir, "classifiers", "svhn")
    with open(os.path.join(cache, "classifier.index"), "wb") as handle:
        handle.write(b"garbage")
    capsys.readouterr()
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 0
    assert "cached classifier" in capsys.readouterr().out
    assert classifiers.load_classifier("svhn", data_dir, log=lambda message: None)[0] is not None


def test_a_second_trainer_is_refused_and_a_killed_ones_lock_does_not_block(data_dir, run,
                                                                          capsys):
    first = start_training(data_dir, run, "--epochs", "1000")
    deadline = time.time() + 120
    while not checkpoint_steps(run) or checkpoint_steps(run)[0] <= 8:  # it is training
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.1)
    assert train.main(train_args(data_dir, run, "--epochs", "1000")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"process {first.pid}" in line and "is in use" in line
    assert train.main(train_args(data_dir, run, "--epochs", "3", "--fresh")) == 1  # nor moved aside
    assert f"process {first.pid}" in one_error_line(capsys.readouterr().err)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    steps = checkpoint_steps(run)
    assert train.main(train_args(data_dir, run, "--epochs", str(steps[0] // 4 + 1))) == 0
    assert checkpoint_steps(run)[0] == steps[0] + 4


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


def test_a_full_disk_while_logging_is_one_line(data_dir, run, capsys, monkeypatch):
    original = metrics.MetricsLog.__init__

    def open_then_fill(self, *args, **kwargs):
        original(self, *args, **kwargs)

        class FullDisk:
            def write(self, text):
                raise OSError(28, "No space left on device")

            def flush(self):
                pass

            def close(self):
                pass
        self.file = FullDisk()
        self.csv = csv.DictWriter(self.file, metrics.METRIC_FIELDS, extrasaction="ignore")

    monkeypatch.setattr(metrics.MetricsLog, "__init__", open_then_fill)
    before = snapshot(run, skip={"metrics.csv", "config.json"})
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "metrics.csv" in line and "No space left on device" in line
    assert_intact(before, run)
    assert metric_steps(run) == list(range(1, 9))


# --- Training first --------------------------------------------------------------------------
def test_a_failing_evaluation_costs_no_training(data_dir, run, capsys, monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("eigenvalues did not converge")

    monkeypatch.setattr(quality, "quality", broken)
    assert train.main(train_args(data_dir, run, "--epochs", "3", "--eval-every", "1",
                           "--eval-num", "8")) == 0
    assert "warning: the evaluation failed (LinAlgError" in capsys.readouterr().err
    assert checkpoint_steps(run) == [12, 8, 4]
    assert (run / "samples" / "epoch_0003.png").is_file()


def test_three_checkpoints_are_kept_across_many_resumes(data_dir, run):
    for epochs in (3, 4, 5, 6):
        assert train.main(train_args(data_dir, run, "--epochs", str(epochs))) == 0
    assert checkpoint_steps(run) == [24, 20, 16]
    names = sorted(os.listdir(run / "checkpoints"))
    assert names == ["checkpoint"] + [f"model-{step}.{part}" for step in (16, 20, 24)
                                      for part in ("data-00000-of-00001", "index")]
    assert 'model_checkpoint_path: "model-24"' in (run / "checkpoints" / "checkpoint").read_text()
    assert PIL.Image.open(run / "samples" / "progress.gif").n_frames == 6  # every epoch, resumed


# --- One run, two spellings -----------------------------------------------------------------
def test_a_trailing_slash_names_the_same_run(data_dir, run, capsys):
    assert train.main(train_args(data_dir, str(run) + "/", "--epochs", "3")) == 0
    assert checkpoint_steps(run) == [12, 8, 4]
    assert train.main(train_args(data_dir, str(run) + "/", "--epochs", "1", "--fresh")) == 0
    assert [name for name in os.listdir(run.parent) if name.startswith("run.old-")]
    assert checkpoint_steps(run) == [4]


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
