"""machinery/training.py and the training loop, end to end through train.py on tiny data: what a
run leaves behind, resuming exactly like an uninterrupted run (after a clean stop, SIGTERM and
SIGKILL), NaN handling, a failing evaluation costing no training, CIFAR-10, a folder of pictures
(resumed from its cache, refused once it changed) and a 64x64 run through every command, and the
user errors that end with one message; augmented runs (p and r_t logged, resumed exactly, other
augmentation settings refused)."""
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import matplotlib.image
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
from PIL import Image

import evaluate
import features
import generate
import train
from machinery import classifiers, errors, pictures, quality, run_directory
from helpers import (ROOT, TRAIN_BATCH, archive_path, checkpoint_steps, checkpoint_values,
                     csv_steps, only_error_line, start_training, train_args,
                     write_cifar10, write_folder, write_svhn)


@pytest.mark.slow
def test_a_run_leaves_samples_plots_metrics_events_and_checkpoints(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "2", "--sample-grid", "3")) == 0
    out = capsys.readouterr().out
    assert "--batch-size 16" in out and "device: CPU" in out and "seed 0" in out
    assert "first step ran on: " in out and "CPU:0" in out and "convolutions: rewritten" in out
    epoch_lines = re.findall(r"epoch (\d): (\d+) steps in ([\d.]+) s, ([\d.]+) images/s, "
                             r"([\d.]+)% of it in the training step", out)
    assert [(epoch, steps) for epoch, steps, *_ in epoch_lines] == [("1", "4"), ("2", "4")]
    for _, _, seconds, images_per_sec, share in epoch_lines:
        seconds = float(seconds)  # printed to 0.1 s
        assert 4 * TRAIN_BATCH / (seconds + 0.05) - 0.05 <= float(images_per_sec) \
            <= 4 * TRAIN_BATCH / max(seconds - 0.05, 1e-9) + 0.05
        assert 0 < float(share) < 100
    for name in ("samples/epoch_0001.png", "samples/epoch_0002.png", "losses.png", "metrics.csv",
                 "config.json", "checkpoints/checkpoint"):
        assert (run / name).is_file(), name
    grid = matplotlib.image.imread(str(run / "samples" / "epoch_0002.png"))
    assert grid.ndim == 3 and grid.std() > 0.05  # a picture, not blank
    # 3x3 tiles of 64 pixels (32 drawn at 2x, nearest neighbour) with 2-pixel gaps, one grid
    # pixel per PNG pixel; the title strip above.
    assert grid.shape[1] == 3 * 64 + 2 * 2 and grid.shape[0] == 3 * 64 + 2 * 2 + 24
    tile = grid[24:24 + 64, :64, :3]
    np.testing.assert_array_equal(tile[0::2, 0::2], tile[1::2, 1::2])  # 2x2 blocks, no blur
    gif = PIL.Image.open(run / "samples" / "progress.gif")
    assert gif.n_frames == 2  # one frame per epoch
    gif.seek(1)
    frame = np.asarray(gif.convert("RGB"), np.float64) / 255
    assert frame.shape == grid[..., :3].shape
    assert np.abs(frame - grid[..., :3]).mean() < 0.02  # the epoch-2 grid (GIF palette round-off)
    assert csv_steps(run) == list(range(1, 9))
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        assert 0 < float(row["d_real"]) < 1 and 0 < float(row["d_fake"]) < 1
        assert np.isfinite(float(row["d_loss"])) and np.isfinite(float(row["g_loss"]))
    events = [name for name in os.listdir(run) if name.startswith("events.out.tfevents")]
    assert len(events) == 1
    tags = set()
    for event in tf.compat.v1.train.summary_iterator(str(run / events[0])):
        tags.update(value.tag for value in event.summary.value)
    assert tags == {"loss/d_loss", "loss/g_loss", "discriminator/d_real",
                    "discriminator/d_fake", "discriminator/d_real_sign", "samples"}
    values = checkpoint_values(str(run))
    assert values["global_step"] == 8
    assert values["run_state/epoch"] == 2 and values["run_state/batch_index"] == 0
    assert values["run_state/fixed_z"].shape == (9, 100)
    assert any(name.endswith("/d_adam") for name in values)  # the optimizer state is saved
    assert any(name.endswith("/g_adam_1") for name in values)


@pytest.mark.slow
def test_resume_continues_exactly_like_an_uninterrupted_run(data_dir, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train.main(train_args(data_dir, whole, "--epochs", "3", "--deterministic")) == 0
    assert train.main(train_args(data_dir, split, "--epochs", "1", "--deterministic")) == 0
    assert train.main(train_args(data_dir, split, "--epochs", "2", "--max-steps", "6",
                                 "--deterministic")) == 0  # stops mid-epoch 2
    assert checkpoint_values(str(split))["run_state/batch_index"] == 2
    assert train.main(train_args(data_dir, split, "--epochs", "3", "--deterministic")) == 0
    expected, got = checkpoint_values(str(whole)), checkpoint_values(str(split))
    assert expected.keys() == got.keys()
    for name in expected:  # same step, fixed z, data order and z: the very same numbers
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert csv_steps(split) == csv_steps(whole) == list(range(1, 13))


def wait_for_checkpoint(process, run, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(os.path.join(run, "checkpoints", "checkpoint")):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.fixture(scope="module")
def big_data_dir(tmp_path_factory):
    """256 images: 16 batches per epoch, long enough to be interrupted mid-epoch."""
    folder = tmp_path_factory.mktemp("big")
    write_svhn(str(folder / "svhn" / "train_32x32.mat"), 256, seed=3)
    write_svhn(str(folder / "svhn" / "test_32x32.mat"), 0 + 1, seed=4)
    return str(folder)


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint(big_data_dir, tmp_path):
    run = str(tmp_path / "run")
    process = start_training(big_data_dir, run, "--epochs", "3", "--splits", "train")
    wait_for_checkpoint(process, run)
    time.sleep(1.0)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert checkpoint_values(run)["global_step"] == 16  # epoch 1's checkpoint, intact
    assert train.main(train_args(big_data_dir, run, "--epochs", "3", "--splits", "train")) == 0
    assert checkpoint_values(run)["global_step"] == 48
    assert csv_steps(run) == list(range(1, 49))  # nothing lost, nothing twice


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_mid_epoch(big_data_dir, tmp_path):
    run = str(tmp_path / "run")
    process = start_training(big_data_dir, run, "--epochs", "3", "--splits", "train")
    wait_for_checkpoint(process, run)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == errors.EXIT_INTERRUPTED
    assert "SIGTERM: saved a checkpoint at step" in stderr and "Traceback" not in stderr
    values = checkpoint_values(run)
    assert 16 < values["global_step"] < 48
    assert values["run_state/batch_index"] == values["global_step"] % 16
    assert train.main(train_args(big_data_dir, run, "--epochs", "3", "--splits", "train")) == 0
    assert checkpoint_values(run)["global_step"] == 48
    assert csv_steps(run) == list(range(1, 49))


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    good = checkpoint_values(str(run))
    code = train.main(train_args(data_dir, run, "--epochs", "3", "--lr", "1e30"))
    assert code == errors.EXIT_NAN
    error = capsys.readouterr().err
    assert "loss is not finite" in error and "model-4" in error
    after = checkpoint_values(str(run))
    for name in good:
        np.testing.assert_array_equal(after[name], good[name])


# --- Training first --------------------------------------------------------------------------
@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("extra, message", [
    (["--dataset", "svhn", "--data-dir", "/nonexistent", "--no-download"], "file not found"),
    (["--dataset", "svhn", "--out", "/proc/version/run"], "is not writable"),
])
def test_user_errors_end_with_one_message(extra, message, tmp_path, data_dir):
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--out", str(tmp_path / "r"),
               "--data-dir", data_dir, "--skip-checksum", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_corrupt_data_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "data" / "svhn"
    folder.mkdir(parents=True)
    (folder / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    code = train.main(["--data-dir", str(tmp_path / "data"), "--splits", "train",
                       "--skip-checksum", "--out", str(tmp_path / "r")])
    assert code == 1
    assert "train_32x32.mat: not a readable MATLAB" in capsys.readouterr().err


# --- Other data -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_runs_on_cifar10_and_resumes(tmp_path, capsys):
    import train

    write_cifar10(archive_path(tmp_path / "data"), per_batch=8)
    argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--skip-checksum",
            "--no-download", "--batch-size", "8", "--sample-grid", "2", "--out",
            str(tmp_path / "run"), "--epochs", "1"]
    assert train.main(argv) == 0
    assert "--dataset cifar10 --splits train" in capsys.readouterr().out  # 40 images: 5 steps
    assert train.main(argv[:-1] + ["2"]) == 0
    assert "done: 10 steps, 2 epochs" in capsys.readouterr().out


def make_folder(root, count=12):
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = os.path.join(root, "cats" if index % 2 else "dogs")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # not square: cropped
        Image.fromarray(pixels).save(os.path.join(folder, f"{index:02d}.png"))


def folder_args(tmp_path, *extra):
    return ["--dataset", "folder", "--images", str(tmp_path / "pictures"), "--data-dir",
            str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--image-size", "16",
            "--batch-size", "4", "--sample-grid", "2", "--log-every", "1", *extra]


def digests(folder):
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


@pytest.mark.slow
def test_a_folder_trains_resumes_from_its_cache_and_a_changed_one_is_refused(tmp_path, capsys):
    make_folder(str(tmp_path / "pictures"))
    assert train.main(folder_args(tmp_path, "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert "decoded 12 of 12 images" in out and "12 images of 16x16x3" in out
    config = run_directory.RunDir(str(tmp_path / "run")).read_config()
    assert config["classes"] == ["cats", "dogs"] and len(config["data_fingerprint"]) == 16
    assert os.path.exists(tmp_path / "run" / "samples" / "epoch_0001.png")

    assert train.main(folder_args(tmp_path, "--epochs", "2")) == 0
    out = capsys.readouterr().out
    assert "12 images from the cache" in out and "done: 6 steps, 2 epochs" in out

    Image.new("RGB", (20, 20)).save(tmp_path / "pictures" / "cats" / "new.png")
    saved = digests(tmp_path / "run" / "checkpoints")
    assert train.main(folder_args(tmp_path, "--epochs", "3")) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "has changed since this run started (12 images then, 13 now: " \
        "1 added (cats/new.png))" in error[0] and "--fresh" in error[0]
    assert digests(tmp_path / "run" / "checkpoints") == saved

    assert train.main(folder_args(tmp_path, "--epochs", "1", "--fresh")) == 0
    assert "done: 3 steps, 1 epoch" in capsys.readouterr().out

    run = str(tmp_path / "run")
    assert generate.main(["--run", run, "--num", "4", "--out", str(tmp_path / "g.npz")]) == 0
    assert np.load(tmp_path / "g.npz")["images"].shape == (4, 16, 16, 3)
    # evaluate.py, features.py and --eval-every on folder runs: test_evaluation.py


@pytest.mark.parametrize("make, words", [
    (lambda path: None, "no such folder"),
    (lambda path: os.makedirs(path), "no image found"),
])
def test_a_folder_that_cannot_be_trained_on_is_one_line_and_leaves_no_run(tmp_path, capsys,
                                                                          make, words):
    make(str(tmp_path / "pictures"))
    assert train.main(folder_args(tmp_path)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and words in error[0]
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_a_64_run_trains_checkpoints_resumes_samples_evaluates_and_extracts_features(
        data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("test",), 1))
    run = tmp_path / "run"
    base = train_args(data_dir, run, "--image-size", "64", "--sample-grid", "2", "--g-steps", "1")
    assert train.main(base + ["--max-steps", "2"]) == 0
    assert "64x64x3, resized from 32x32" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 64
    grid = pictures._pyplot().imread(str(run / "samples" / "epoch_0001.png"))
    assert grid.shape[1] == 2 * 64 + 2  # 64-pixel samples drawn 1:1
    assert train.main(base + ["--max-steps", "5"]) == 0  # resumes at step 2, one epoch is 4
    out = capsys.readouterr().out
    assert "resumed" in out and "step 2" in out and "done: 5 steps" in out
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "model-5"))
    assert reader.get_variable_to_shape_map()["generator/deconv5/kernel"] == [5, 5, 3, 128]

    npz = tmp_path / "images.npz"
    assert generate.main(["--run", str(run), "--num", "5", "--out", str(npz)]) == 0
    assert np.load(npz)["images"].shape == (5, 64, 64, 3)
    assert "images of 64x64" in capsys.readouterr().out

    assert evaluate.main(["--run", str(run), "--num", "10"]) == 0
    out = capsys.readouterr().out
    assert "scored at 32x32" in out and "64x64 images both resized" in out
    report = json.loads((run / "evaluation.json").read_text())
    assert report["5"]["image_size"] == 64 and 1.0 <= report["5"]["classifier_score"] <= 10.0

    assert features.main(["--run", str(run), "--labels", "20", "--draws", "1"]) == 0
    assert "trained discriminator (15,360)" in capsys.readouterr().out
    result = json.loads((run / "features.json").read_text())
    assert result["trained"]["features"] == 15_360 and result["image_size"] == 64
    assert result["pixels"]["features"] == 64 * 64 * 3


# --- Augmented runs ---------------------------------------------------------------------------
AUGMENT = ["--augment", "translation,cutout,color"]


@pytest.mark.slow
def test_an_augmented_run_logs_p_and_r_t_and_resumes_exactly(data_dir, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    flags = [*AUGMENT, "--augment-p", "adaptive", "--flip", "--deterministic"]
    assert train.main(train_args(data_dir, whole, "--epochs", "3", *flags)) == 0
    assert train.main(train_args(data_dir, split, "--epochs", "1", *flags)) == 0
    assert train.main(train_args(data_dir, split, "--epochs", "3", "--max-steps", "10",
                                 *flags)) == 0
    assert train.main(train_args(data_dir, split, "--epochs", "3", *flags)) == 0
    expected, got = checkpoint_values(str(whole)), checkpoint_values(str(split))
    assert {"augment/p", "augment/sign_sum", "augment/sign_steps"} <= set(expected)
    for name in expected:  # p and its interval's signs too
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    with open(whole / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(1, 13))
    for row in rows:
        assert -1.0 <= float(row["d_real_sign"]) <= 1.0 and 0.0 <= float(row["augment_p"]) <= 1
    tags = set()
    for name in os.listdir(whole):
        if name.startswith("events.out.tfevents"):
            for event in tf.compat.v1.train.summary_iterator(str(whole / name)):
                tags.update(value.tag for value in event.summary.value)
    assert {"discriminator/d_real_sign", "augmentation/augment_p"} <= tags


@pytest.mark.slow
def test_a_run_without_augmentation_logs_r_t_and_no_p(data_dir, tmp_path):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["d_real_sign"] and not row["augment_p"] for row in rows)


@pytest.mark.slow
@pytest.mark.parametrize("first,second,changed", [
    ([], AUGMENT, "augment None -> ['color', 'translation', 'cutout']"),
    (AUGMENT, [], "augment ['color', 'translation', 'cutout'] -> None"),
    ([*AUGMENT, "--augment-p", "1"], [*AUGMENT, "--augment-p", "0.5"], "augment_p 1.0 -> 0.5"),
    ([*AUGMENT], [*AUGMENT, "--augment-target", "0.7"], "augment_target 0.6 -> 0.7"),
    ([], ["--flip"], "flip False -> True"),
])
def test_resuming_with_other_augmentation_settings_is_refused_in_one_line(
        data_dir, tmp_path, capsys, first, second, changed):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1", *first)) == 0
    capsys.readouterr()
    assert train.main(train_args(data_dir, run, "--epochs", "2", *second)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and changed in error[0] and "--fresh" in error[0]


# --- Conditional runs ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_conditional_run_grids_a_row_per_class_and_keeps_its_classes(
        data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--conditional",
                                 "--sample-grid", "3", "--augment", "cutout")) == 0
    assert "classes: 10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["conditional"] and config["num_classes"] == 10
    assert config["class_names"] == [str(digit) for digit in range(10)]
    grid = np.asarray(Image.open(run / "samples" / "epoch_0001.png"))
    assert grid.shape[0] == 10 * 64 + 9 * 2 + 24 and grid.shape[1] == 3 * 64 + 2 * 2  # 10 rows
    values = checkpoint_values(str(run))
    assert values["generator/dense1/kernel"].shape[0] == 100 + 10  # z and the one-hot class
    for flags, changed in (([], "conditional True -> False"),):
        assert train.main(train_args(data_dir, run, "--epochs", "2", *flags)) == 1
        assert changed in capsys.readouterr().err


@pytest.mark.slow
def test_an_unconditional_run_refuses_to_resume_conditional(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    capsys.readouterr()
    assert train.main(train_args(data_dir, run, "--epochs", "2", "--conditional")) == 1
    assert "conditional False -> True" in capsys.readouterr().err


@pytest.mark.slow
def test_conditional_on_pictures_without_classes_is_one_line_and_leaves_no_run(
        tmp_path, capsys):
    write_folder(str(tmp_path / "flat"), per_class=4, flat=True)
    out = tmp_path / "run"
    argv = ["--dataset", "folder", "--images", str(tmp_path / "flat"), "--data-dir",
            str(tmp_path / "data"), "--out", str(out), "--image-size", "16", "--batch-size", "4",
            "--conditional"]
    assert train.main(argv) == 1
    line = only_error_line(capsys.readouterr().err)
    assert f"--conditional needs labeled images: {tmp_path / 'flat'} has no classes" in line
    assert not out.exists()
