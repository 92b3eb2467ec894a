"""train.py --dataset folder: trains on a folder of pictures, resumes from its cache, and refuses
to resume on a folder that changed since the run started."""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

import generate
import train
from machinery import run_directory


def make_folder(root, count=12):
    rng = np.random.default_rng(0)
    for index in range(count):
        folder = os.path.join(root, "cats" if index % 2 else "dogs")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # not square: cropped
        Image.fromarray(pixels).save(os.path.join(folder, f"{index:02d}.png"))


def argv(tmp_path, *extra):
    return ["--dataset", "folder", "--images", str(tmp_path / "pictures"), "--data-dir",
            str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--image-size", "16",
            "--batch-size", "4", "--sample-grid", "2", "--log-every", "1", *extra]


def digests(folder):
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def test_a_folder_trains_resumes_from_its_cache_and_a_changed_one_is_refused(tmp_path, capsys):
    make_folder(str(tmp_path / "pictures"))
    assert train.main(argv(tmp_path, "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert "decoded 12 of 12 images" in out and "12 images of 16x16x3" in out
    config = run_directory.RunDir(str(tmp_path / "run")).read_config()
    assert config["classes"] == ["cats", "dogs"] and len(config["data_fingerprint"]) == 16
    assert os.path.exists(tmp_path / "run" / "samples" / "epoch_0001.png")

    assert train.main(argv(tmp_path, "--epochs", "2")) == 0
    out = capsys.readouterr().out
    assert "12 images from the cache" in out and "done: 6 steps, 2 epochs" in out

    Image.new("RGB", (20, 20)).save(tmp_path / "pictures" / "cats" / "new.png")
    saved = digests(tmp_path / "run" / "checkpoints")
    assert train.main(argv(tmp_path, "--epochs", "3")) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "has changed since this run started (12 images then, 13 now: " \
        "1 added (cats/new.png))" in error[0] and "--fresh" in error[0]
    assert digests(tmp_path / "run" / "checkpoints") == saved

    assert train.main(argv(tmp_path, "--epochs", "1", "--fresh")) == 0
    assert "done: 3 steps, 1 epoch" in capsys.readouterr().out

    run = str(tmp_path / "run")
    assert generate.main(["--run", run, "--num", "4", "--out", str(tmp_path / "g.npz")]) == 0
    assert np.load(tmp_path / "g.npz")["images"].shape == (4, 16, 16, 3)
    # evaluate.py, features.py and --eval-every on folder runs: test_folder_quality.py


def test_the_run_directory_defaults_to_the_folder_name(tmp_path):
    args = train.parse_args(["--dataset", "folder", "--images", str(tmp_path / "holiday") + "/"])
    assert args.out == os.path.join("runs", "holiday") and args.splits == ("all",)


@pytest.mark.parametrize("flags, words", [
    (["--dataset", "folder"], "--dataset folder needs --images FOLDER"),
    (["--dataset", "svhn", "--images", "x"], "--images goes with --dataset folder"),
    (["--dataset", "svhn", "--channels", "1"], "--channels and --fit go with --dataset folder"),
    (["--dataset", "folder", "--images", "x", "--splits", "train"], "--splits does not apply"),
])
def test_folder_flags_that_do_not_fit_are_refused_when_parsed(flags, words, capsys):
    with pytest.raises(SystemExit) as exit_status:
        train.parse_args(flags)
    assert exit_status.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("make, words", [
    (lambda path: None, "no such folder"),
    (lambda path: os.makedirs(path), "no image found"),
])
def test_a_folder_that_cannot_be_trained_on_is_one_line_and_leaves_no_run(tmp_path, capsys,
                                                                          make, words):
    make(str(tmp_path / "pictures"))
    assert train.main(argv(tmp_path)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and words in error[0]
    assert not os.path.exists(tmp_path / "run")
