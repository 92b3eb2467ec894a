"""studies.py, the measurements docs/quality.md publishes: rank correlations, the ladder of worse
images, an --eval-every run's curve, and the spaces and sample-size studies on a small run."""
import json

import numpy as np
import pytest
from PIL import Image

import data
import train
from machinery import checkpoints, classifiers, durable, metrics, run_directory, studies
from helpers import folder_run_args, write_folder


def test_rank_correlations():
    assert studies.correlations([1, 2, 3, 4], [10, 20, 30, 40]) == (1.0, 1.0)
    assert studies.correlations([1, 2, 3, 4], [4, 3, 2, 1]) == (-1.0, -1.0)
    assert studies.correlations([1, 2], [1, 2]) is None


def test_the_ladder_makes_each_condition_worse_than_the_last():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 32, 32, 1), np.uint8)
    labels = np.arange(60) % 10
    conditions = studies.ladder_conditions(images, labels, 20, np.random.default_rng(1))
    assert list(conditions) == ["real", "noise 8", "noise 24", "noise 64", "blur 0.5", "blur 1.0",
                                "blur 2.0", "5 classes", "2 classes", "1 classes"]
    assert all(found.shape == (20, 32, 32, 1) and found.dtype == np.uint8
               for found in conditions.values())
    changed = [np.abs(conditions[name].astype(float) - images[:20]).mean()
               for name in ("noise 8", "noise 24", "noise 64")]
    assert changed[0] < changed[1] < changed[2]
    spread = [conditions[f"blur {radius}"].std() for radius in (0.5, 1.0, 2.0)]
    assert spread[0] > spread[1] > spread[2]
    flat = images.reshape(60, -1)
    kept = {name: {int(labels[np.flatnonzero((flat == image.reshape(-1)).all(axis=1))[0]])
                   for image in conditions[name]}
            for name in ("5 classes", "2 classes", "1 classes")}
    assert kept["1 classes"] == {0} and kept["2 classes"] <= {0, 1} and kept["5 classes"] <= set(
        range(5))


def test_the_curve_of_an_eval_every_run_marks_its_best(tmp_path):
    run = run_directory.RunDir(str(tmp_path))
    metrics.write_metrics(run.metrics_path, [
        {"step": 4, "epoch": 1, "d_loss": 1.0, "g_loss": 1.0},
        {"step": 4, "epoch": 1, "classifier_score": 2.0, "frechet_distance": 90.0, "kid": 0.5,
         "kid_std": 0.1},
        {"step": 8, "epoch": 2, "classifier_score": 3.0, "frechet_distance": 60.0, "kid": 0.25,
         "kid_std": 0.1}])
    durable.write_json(run.config_path, {"dataset": "mnist-sample", "output_dim": 1, "z_dim": 100})
    (tmp_path / "checkpoints").mkdir()
    durable.write_json(str(tmp_path / "checkpoints" / checkpoints.BEST_RECORD),
                       {"checkpoint": "best-8", "step": 8, "epoch": 2, "metric": "kid",
                        "value": 0.25})
    lines = studies.curve_lines(run)
    assert len(lines) == 4 and lines[2].endswith("<- best") and "<-" not in lines[1]
    assert lines[3] == "best: epoch 2, step 8, KID 0.2500 (best-8)"


@pytest.mark.parametrize("study", [["spaces", "{missing}"], ["curve", "--run", "{missing}"],
                                   ["sample-sizes", "--run", "{missing}"]])
def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys, study):
    argv = [part.format(missing=tmp_path / "nothing") for part in study]
    assert studies.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a run directory" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_out_file_that_cannot_be_written_is_one_line_after_the_table(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(studies, "run_study", lambda args: (["the table"], {"n": np.int64(5)}))
    out = tmp_path / "missing-folder" / "numbers.json"
    assert studies.main(["digits", "run", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "the table\n" and not out.exists()
    assert captured.err.startswith(f"error: cannot write {out} (") and \
        captured.err.rstrip().endswith("the numbers are above") and captured.err.count("\n") == 1
    good = tmp_path / "numbers.json"
    assert studies.main(["digits", "run", "--out", str(good)]) == 0
    assert json.loads(good.read_text()) == {"n": 5}


@pytest.mark.slow
def test_the_spaces_and_sample_size_studies_on_a_small_labeled_folder(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(classifiers, "FOLDER_CLASSIFIER_STEPS", 40)
    write_folder(str(tmp_path / "pictures"))  # 30 images of 3 classes: 3 steps of 8 an epoch
    assert train.main(folder_run_args(tmp_path, "pictures", "run", "--epochs", "3")) == 0
    items = [f"{tmp_path / 'run'}@model-{step}" for step in (3, 6, 9)]
    out = str(tmp_path / "spaces.json")
    assert studies.main(["spaces", *items, "--num", "8", "--out", out]) == 0
    found = json.loads(open(out).read())
    assert [row["run"] for row in found["rows"]] == items
    assert set(found["correlations"]) == {"random-cnn-v1 (seed 0)", "pixels-v1 (seed 0)"}
    for row in found["rows"]:
        assert 1.0 <= row["class-based"]["classifier_score"] <= 3.0
        assert row["random-cnn-v1 (seed 0)"]["frechet_distance"] > 0
    assert "rank correlation with the class-based numbers:" in capsys.readouterr().out
    assert studies.main(["sample-sizes", "--run", str(tmp_path / "run"), "--sizes", "4,8",
                         "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "     4       real" in out and "     8  generated" in out


@pytest.mark.slow
def test_digit_runs_are_scored_with_one_classifier_and_their_curves_drawn(
        tmp_path, capsys, monkeypatch):
    """`digits` on a run of a folder of mnist-sample digits: the mnist-sample classifier's
    numbers against all 5,000 digits, near copies against the run's own images, and the
    picture of its d_real_sign and augment_p."""
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "mnist-sample", (None, None, 1))
    monkeypatch.chdir(tmp_path)
    digits = data.load_dataset("mnist-sample")
    for index in range(40):
        folder = tmp_path / "digits" / str(digits.labels[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.images[index][..., 0]).save(folder / f"{index}.png")
    assert train.main(["--dataset", "folder", "--images", "digits", "--batch-size", "8",
                       "--max-steps", "4", "--log-every", "1", "--out", "run", "--augment",
                       "cutout"]) == 0
    table = studies.score_digit_runs(["run"], 100, 0)
    assert table[0]["images"] == 40 and table[0]["num_real"] == 5000
    assert 1.0 <= table[0]["classifier_score"] <= 10.0 and table[0]["kid"] > 0
    assert 0 <= table[0]["near_copies"] <= 100
    studies.plot_health(["run"], str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 1000
