"""machinery/evaluation.py and --eval-every, end to end: evaluate.py on a run (the quality rows of
metrics.csv, evaluation.json), a labeled folder's run scored during and after training, a folder
without classes refused in one line, and evaluate.py and features.py run from another folder."""
import json
import os

import pytest
from PIL import Image

import evaluate
import features
import train
from machinery import classifiers, feature_svm, metrics, run_directory
from helpers import folder_run_args, only_error_line, write_folder

pytestmark = pytest.mark.slow


@pytest.fixture
def fast_classifier(monkeypatch):
    """The mnist-sample classifier trained for one epoch: the path, not the accuracy, is tested."""
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "mnist-sample", (None, None, 1))


def test_eval_every_adds_quality_to_metrics_and_evaluate_py_reports(tmp_path, fast_classifier,
                                                                    capsys):
    run = tmp_path / "run"
    argv = ["--dataset", "mnist-sample", "--data-dir", str(tmp_path / "d"), "--out", str(run),
            "--batch-size", "32", "--max-steps", "3", "--eval-every", "1", "--eval-num", "100"]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 1 quality: classifier score" in out
    rows = metrics.read_metrics(run_directory.RunDir(str(run)).metrics_path)
    quality_rows = [row for row in rows if "classifier_score" in row]
    assert len(quality_rows) == 1 and quality_rows[0]["step"] == 3
    assert 1.0 <= quality_rows[0]["classifier_score"] <= 10.0
    assert quality_rows[0]["frechet_distance"] > 0
    assert quality_rows[0]["kid"] > 0 and quality_rows[0]["kid_std"] < 1e-9  # subsets: all 100
    assert (run / "quality.png").is_file()
    assert (tmp_path / "d" / "classifiers" / "mnist-sample" / "info.json").is_file()
    assert evaluate.main(["--run", str(run), "--num", "100"]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert report["3"]["num_generated"] == 100 and report["3"]["checkpoint"] == "model-3"
    assert 1.0 <= report["3"]["real_classifier_score"] <= 10.0
    assert report["3"]["kid"] > 0 and report["3"]["kid_subset_size"] == 100
    near = report["3"]["near_copies"]  # all 5,000 digits, each held out in turn
    assert (near["generated"], near["heldout"], near["training_images"]) == (100, 5000, 5000)
    assert len(near["closest"]) == 10 and 0 <= near["p_value"] <= 1
    assert f"near copies: {near['flagged']} of 100 samples (" in capsys.readouterr().out
    assert (run / "near_copies.png").is_file()
    assert evaluate.main(["--run", str(tmp_path / "missing")]) == 1
    assert "not found" in capsys.readouterr().err


# --- The commands on folder runs -----------------------------------------------------------------
def test_a_labeled_folder_run_is_scored_during_and_after_training(tmp_path, quick_classifier,
                                                                  capsys):
    write_folder(str(tmp_path / "pictures"))
    run = tmp_path / "run"
    assert train.main(folder_run_args(tmp_path, "pictures", "run", "--eval-every", "1",
                                      "--eval-num", "8")) == 0
    out = capsys.readouterr().out
    assert "training the 3-class folder classifier once (24 images" in out
    assert "epoch 1 quality: classifier score" in out and "of at most 3 (real" in out
    assert "30 images of 16x16x1\n" in out  # decoded at 16, not resized from 32
    config = run_directory.RunDir(str(run)).read_config()
    rows = [row for row in metrics.read_metrics(str(run / "metrics.csv"))
            if "classifier_score" in row]
    assert len(rows) == 1 and 1.0 <= rows[0]["classifier_score"] <= 3.0
    assert (run / "quality.png").is_file()
    assert (tmp_path / "data" / "classifiers" / f"folder-{config['data_fingerprint']}").is_dir()

    assert evaluate.main(["--run", str(run), "--num", "8"]) == 0
    out = capsys.readouterr().out
    assert "training the" not in out  # the classifier --eval-every trained, from its cache
    assert "near copies: " in out and (run / "near_copies.png").is_file()
    result = json.loads((run / "evaluation.json").read_text())["3"]
    assert result["num_classes"] == 3 and result["num_generated"] == 8
    assert 1.0 <= result["real_classifier_score"] <= 3.0
    assert result["classifier_heldout_accuracy"] >= 0.6667

    assert features.main(["--run", str(run), "--draws", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'pictures'} (3 classes) at 16x16" in out and "transductive" in out
    result = json.loads((run / "features.json").read_text())
    assert result["dataset"] == "folder" and result["num_classes"] == 3
    for name in feature_svm.FEATURE_SETS:  # 10 a class would leave none to validate on: 7 a class
        assert result[name]["labels"] == 21 and result[name]["validation_images"] == 3
        assert result[name]["test_images"] == 6 and 0.0 <= result[name]["test_error_mean"] <= 1

    # The folder changes: both refuse in one line, and nothing the run holds changes.
    Image.new("L", (20, 20)).save(tmp_path / "pictures" / "top" / "new.png")
    saved = {name: (run / name).read_bytes() for name in ("evaluation.json", "features.json")}
    for tool in (evaluate, features):
        assert tool.main(["--run", str(run)]) == 1
        line = only_error_line(capsys.readouterr().err)
        assert f"{tmp_path / 'pictures'} has changed since the run trained on it (30 images " \
               f"then, 31 now" in line and "Put the folder back as it was" in line
    assert {name: (run / name).read_bytes() for name in saved} == saved


def test_a_folder_without_classes_is_scored_in_the_fixed_feature_space(tmp_path, capsys):
    write_folder(str(tmp_path / "flat"), per_class=4, flat=True)  # 12 images, no classes
    run = tmp_path / "flat-run"
    assert train.main(folder_run_args(tmp_path, "flat", "flat-run", "--eval-every", "1",
                                      "--eval-num", "8")) == 0
    out = capsys.readouterr().out
    assert "epoch 1 quality: Frechet distance" in out
    assert "in the features of random-cnn-v1 (seed 0)" in out and "new best: epoch 1" in out
    rows = [row for row in metrics.read_metrics(str(run / "metrics.csv"))
            if "frechet_distance" in row]
    assert len(rows) == 1 and set(rows[0]) == {"step", "epoch", "time", "frechet_distance",
                                               "kid", "kid_std"}
    assert (run / "quality.png").is_file()
    cache = [name for name in os.listdir(tmp_path / "data" / "folders")]
    assert len(cache) == 1 and [
        name for name in os.listdir(tmp_path / "data" / "folders" / cache[0])
        if name.startswith("features-")] == [
        f"features-{run_directory.RunDir(str(run)).read_config()['data_fingerprint']}"
        f"-random-cnn-v1-seed0.npz"]

    assert evaluate.main(["--run", str(run), "--num", "8"]) == 0
    assert "in the features of random-cnn-v1 (seed 0)" in capsys.readouterr().out
    result = json.loads((run / "evaluation.json").read_text())["1"]
    assert result["feature_space"] == "random-cnn-v1 (seed 0)" and "classifier_score" not in result
    assert result["frechet_distance"] > 0 and result["num_real"] == 8

    saved = (run / "evaluation.json").read_bytes()
    assert evaluate.main(["--run", str(run), "--num", "13"]) == 1
    assert only_error_line(capsys.readouterr().err) == (
        f"error: --num 13 is more than the 12 real images of {tmp_path / 'flat'} the generated "
        f"ones are compared with; use at most 12")
    assert features.main(["--run", str(run)]) == 1
    line = only_error_line(capsys.readouterr().err)
    assert f"features.py needs a labeled folder: the images of {tmp_path / 'flat'} in " \
           f"sub-folders, one per class and at least two" in line
    assert (run / "evaluation.json").read_bytes() == saved


def test_evaluate_and_features_work_from_another_folder(tmp_path, quick_classifier,
                                                        monkeypatch, capsys):
    """train.py given relative --images and --data-dir; evaluate.py and features.py run from
    elsewhere find both where the run found them, and write nothing there."""
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    write_folder(str(start / "pictures"))
    elsewhere.mkdir()
    monkeypatch.chdir(start)
    assert train.main(["--dataset", "folder", "--images", "pictures", "--data-dir", "data",
                       "--out", "run", "--image-size", "16", "--batch-size", "8",
                       "--sample-grid", "2", "--epochs", "1"]) == 0
    config = json.loads((start / "run" / "config.json").read_text())
    assert (config["images"], config["data_dir"], config["working_dir"]) == (
        "pictures", "data", str(start))
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert evaluate.main(["--run", str(start / "run"), "--num", "8"]) == 0
    out = capsys.readouterr().out
    assert f"{start / 'pictures'}: 30 images from the cache in {start / 'data'}" in out
    assert "training the 3-class folder classifier once" in out
    assert features.main(["--run", str(start / "run"), "--draws", "1"]) == 0
    assert f"{start / 'pictures'}: 30 images from the cache" in capsys.readouterr().out
    assert os.listdir(elsewhere) == []
    assert (start / "data" / "classifiers" / f"folder-{config['data_fingerprint']}").is_dir()


def test_a_conditional_run_reports_how_often_the_classifier_reads_the_class_asked_for(
        tmp_path, fast_classifier, capsys):
    run = tmp_path / "run"
    argv = ["--dataset", "mnist-sample", "--data-dir", str(tmp_path / "d"), "--out", str(run),
            "--batch-size", "32", "--max-steps", "3", "--conditional"]
    assert train.main(argv) == 0
    capsys.readouterr()
    assert evaluate.main(["--run", str(run), "--num", "200"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "evaluation.json").read_text())["3"]
    assert 0.0 <= report["class_agreement"] <= 1.0
    assert len(report["class_agreement_by_class"]) == 10
    assert f"the classifier reads the class asked for in {100 * report['class_agreement']:.1f}%" \
        in out
