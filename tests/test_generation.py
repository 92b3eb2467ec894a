"""machinery/generation.py (generate.py's work), on a trained run: a grid and uint8 images that
--seed repeats, and walks through z that end at the samples of their z."""
import matplotlib.image
import numpy as np
import pytest

import data
import generate
import train
from machinery import generation, run_directory, sampling, sessions
from helpers import train_args

pytestmark = pytest.mark.slow


def test_generate_writes_a_grid_and_uint8_images(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    npz = tmp_path / "images.npz"
    assert generate.main(["--run", str(run), "--num", "10", "--out", str(npz), "--seed", "4"]) == 0
    images = np.load(npz)["images"]
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
    z = np.load(npz)["z"]  # the z of the images, as sample_images draws it for --seed 4
    np.testing.assert_array_equal(z, sessions.draw_z(np.random.default_rng(4), 10, 100))
    np.testing.assert_array_equal(data.to_uint8(sampling.sample_images(
        run_directory.RunDir(str(run)), 0, 4, z=z).images), images)
    again = tmp_path / "again.npz"
    assert generate.main(["--run", str(run), "--num", "10", "--out", str(again),
                          "--seed", "4"]) == 0
    np.testing.assert_array_equal(np.load(again)["images"], images)  # --seed repeats
    grid = tmp_path / "grid.png"
    assert generate.main(["--run", str(run), "--num", "9", "--out", str(grid)]) == 0
    assert matplotlib.image.imread(str(grid)).shape[0] > 50
    assert generate.main(["--run", str(tmp_path / "nothing"), "--out", str(grid)]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_interpolation_walks_end_at_the_samples_of_their_z(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    walks = tmp_path / "walks.npz"
    assert generate.main(["--run", str(run), "--interpolate", "3", "--walk-steps", "5",
                          "--out", str(walks), "--seed", "2"]) == 0
    assert "3 walks of 5 images" in capsys.readouterr().out
    images = np.load(walks)["images"].reshape(3, 5, 32, 32, 3)
    z = generation.walk_z(np.random.default_rng(2), 3, 5, 2, 100)
    np.testing.assert_array_equal(np.load(walks)["z"], z)
    z = z.reshape(3, 5, 100)
    ends = np.concatenate([z[:, 0], z[:, -1]])
    alone = data.to_uint8(
        sampling.sample_images(run_directory.RunDir(str(run)), 0, 2, z=ends).images)
    np.testing.assert_array_equal(images[:, 0], alone[:3])
    np.testing.assert_array_equal(images[:, -1], alone[3:])
    np.testing.assert_allclose(z[:, 2], (z[:, 0] + z[:, -1]) / 2, atol=1e-6)  # a straight line
    through = generation.walk_z(np.random.default_rng(0), 1, 5, 3, 4)  # through 3 points
    points = sessions.draw_z(np.random.default_rng(0), 3, 4)
    np.testing.assert_allclose(through[[0, 2, 4]], points, atol=1e-6)
    grid = tmp_path / "walks.png"
    assert generate.main(["--run", str(run), "--interpolate", "3", "--out", str(grid)]) == 0
    assert matplotlib.image.imread(str(grid)).shape[1] == 10 * 64 + 9 * 2  # 10 steps a row


def test_a_conditional_run_draws_the_class_asked_for_and_refuses_others(
        data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--conditional")) == 0
    by_index, by_name = tmp_path / "index.npz", tmp_path / "name.npz"
    assert generate.main(["--run", str(run), "--class", "3", "--num", "6", "--out",
                          str(by_index)]) == 0
    assert generate.main(["--run", str(run), "--class", "3", "--num", "6", "--out",
                          str(by_name)]) == 0
    index = np.load(by_index)
    assert index["labels"].tolist() == [3] * 6 and index["z"].shape == (6, 100)
    np.testing.assert_array_equal(np.load(by_name)["images"], index["images"])
    again = sampling.sample_images(run_directory.RunDir(str(run)), 0, 0, z=index["z"],
                                   labels=index["labels"])
    np.testing.assert_array_equal(data.to_uint8(again.images), index["images"])
    every = tmp_path / "all.npz"
    assert generate.main(["--run", str(run), "--class", "all", "--num", "20", "--out",
                          str(every)]) == 0
    grid = np.load(every)  # 10 rows of 2, the same z down each column
    assert grid["labels"].tolist() == [label for label in range(10) for _ in range(2)]
    np.testing.assert_array_equal(grid["z"][:2], grid["z"][18:])
    walks = tmp_path / "walks.npz"
    assert generate.main(["--run", str(run), "--interpolate", "2", "--walk-steps", "3",
                          "--class", "7", "--out", str(walks)]) == 0
    assert np.load(walks)["labels"].tolist() == [7] * 6  # a walk keeps its class
    capsys.readouterr()
    for wanted in ("10", "seven", "-1"):
        assert generate.main(["--run", str(run), "--class", wanted, "--out",
                              str(tmp_path / "x.png")]) == 1
        assert f"--class {wanted}: this run has no such class; its classes are 0, 1" in \
            capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_class_on_an_unconditional_run_is_one_line(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    capsys.readouterr()
    for wanted in ("3", "all"):
        assert generate.main(["--run", str(run), "--class", wanted]) == 1
        assert capsys.readouterr().err.strip() == (
            "error: --class goes with a run trained with --conditional; this run is not "
            "conditional")
