"""train.py and generate.py end to end on tiny SVHN-format data: what a run leaves behind,
resuming (after a clean stop, SIGTERM and SIGKILL), NaN handling and every error path."""
import csv
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

import data
import generate
import train
from machinery import durable, errors, generation, run_directory, sampling, sessions
from helpers import (ROOT, TRAIN_BATCH, checkpoint_values, csv_steps, start_training, train_args,
                     write_svhn)


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
                    "discriminator/d_fake", "samples"}
    values = checkpoint_values(str(run))
    assert values["global_step"] == 8
    assert values["run_state/epoch"] == 2 and values["run_state/batch_index"] == 0
    assert values["run_state/fixed_z"].shape == (9, 100)
    assert any(name.endswith("/d_adam") for name in values)  # the optimizer state is saved
    assert any(name.endswith("/g_adam_1") for name in values)


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


def test_changed_settings_refuse_to_resume_and_fresh_starts_over(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    assert train.main(train_args(data_dir, run, "--epochs", "2", "--z-dim", "64")) == 1
    error = capsys.readouterr().err
    assert "z_dim 100 -> 64" in error and "--fresh" in error
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--z-dim", "64", "--fresh")) == 0
    assert checkpoint_values(str(run))["run_state/fixed_z"].shape == (36, 64)
    moved = [name for name in os.listdir(tmp_path) if name.startswith("run.old-")]
    assert len(moved) == 1  # the old run is kept, not deleted
    assert (tmp_path / moved[0] / "samples" / "epoch_0001.png").is_file()


def test_checkpoint_of_another_model_is_a_clear_error(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    os.remove(run / "config.json")  # hide the settings: only the checkpoint can tell
    assert train.main(train_args(data_dir, run, "--epochs", "2", "--z-dim", "64")) == 1
    assert "not a checkpoint of this model" in capsys.readouterr().err


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


def test_bad_flags_exit_with_usage(tmp_path):
    for bad in (["--dataset", "cifar"], ["--smooth", "1"], ["--epochs", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            train.parse_args(bad)
        assert exit_info.value.code == 2


def test_generate_writes_a_grid_and_uint8_images(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    npz = tmp_path / "images.npz"
    assert generate.main(["--run", str(run), "--num", "10", "--out", str(npz), "--seed", "4"]) == 0
    images = np.load(npz)["images"]
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
    again = tmp_path / "again.npz"
    assert generate.main(["--run", str(run), "--num", "10", "--out", str(again), "--seed", "4"]) == 0
    np.testing.assert_array_equal(np.load(again)["images"], images)  # --seed repeats
    grid = tmp_path / "grid.png"
    assert generate.main(["--run", str(run), "--num", "9", "--out", str(grid)]) == 0
    assert matplotlib.image.imread(str(grid)).shape[0] > 50
    assert generate.main(["--run", str(tmp_path / "nothing"), "--out", str(grid)]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_files_written_atomically_get_the_usual_permissions(tmp_path, umask):
    path = tmp_path / "file.json"
    durable.write_json(str(path), {"a": 1})
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]  # no temporary file left


def test_the_average_resumes_bit_for_bit_and_is_what_grids_and_generate_use(data_dir, tmp_path,
                                                                           capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    ema = ["--g-ema", "0.9", "--deterministic"]
    assert train.main(train_args(data_dir, whole, "--epochs", "2", *ema)) == 0
    assert "epoch 2 quality" not in capsys.readouterr().out
    assert train.main(train_args(data_dir, split, "--epochs", "1", *ema)) == 0
    assert train.main(train_args(data_dir, split, "--epochs", "2", *ema)) == 0
    expected, got = checkpoint_values(str(whole)), checkpoint_values(str(split))
    assert "g_ema/generator/dense1/kernel" in expected and expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert not np.array_equal(expected["g_ema/generator/deconv2/kernel"],
                              expected["generator/deconv2/kernel"])
    assert json.loads((whole / "config.json").read_text())["g_ema"] == 0.9
    assert train.main(train_args(data_dir, whole, "--epochs", "3")) == 1  # no switching it off
    assert "g_ema 0.9 -> 0.0" in capsys.readouterr().err
    capsys.readouterr()
    for flags, which in (([], "averaged generator (decay 0.9)"), (["--raw"], "trained generator")):
        out = tmp_path / f"{which[:3]}.npz"
        assert generate.main(["--run", str(whole), "--num", "6", "--out", str(out), *flags]) == 0
        assert which in capsys.readouterr().out
    averaged, trained = np.load(tmp_path / "ave.npz")["images"], np.load(tmp_path / "tra.npz")["images"]
    assert not np.array_equal(averaged, trained)


def test_interpolation_walks_end_at_the_samples_of_their_z(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    walks = tmp_path / "walks.npz"
    assert generate.main(["--run", str(run), "--interpolate", "3", "--walk-steps", "5",
                          "--out", str(walks), "--seed", "2"]) == 0
    assert "3 walks of 5 images" in capsys.readouterr().out
    images = np.load(walks)["images"].reshape(3, 5, 32, 32, 3)
    z = generation.walk_z(np.random.default_rng(2), 3, 5, 2, 100).reshape(3, 5, 100)
    ends = np.concatenate([z[:, 0], z[:, -1]])
    alone = data.to_uint8(sampling.sample_images(run_directory.RunDir(str(run)), 0, 2, z=ends).images)
    np.testing.assert_array_equal(images[:, 0], alone[:3])
    np.testing.assert_array_equal(images[:, -1], alone[3:])
    np.testing.assert_allclose(z[:, 2], (z[:, 0] + z[:, -1]) / 2, atol=1e-6)  # a straight line
    through = generation.walk_z(np.random.default_rng(0), 1, 5, 3, 4)  # through 3 points
    points = sessions.draw_z(np.random.default_rng(0), 3, 4)
    np.testing.assert_allclose(through[[0, 2, 4]], points, atol=1e-6)
    grid = tmp_path / "walks.png"
    assert generate.main(["--run", str(run), "--interpolate", "3", "--out", str(grid)]) == 0
    assert matplotlib.image.imread(str(grid)).shape[1] == 10 * 64 + 9 * 2  # 10 steps a row
