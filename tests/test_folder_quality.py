"""evaluate.py, features.py and train.py --eval-every on --dataset folder runs: the classifier of a
labeled folder's K classes (cached by fingerprint, trained on a fixed held-out split, measured
against its bar), the K-class scores, and the one-line refusals of a folder without classes and of
a folder that changed since the run trained on it."""
import json
import os
import shutil

import numpy as np
from PIL import Image
import pytest

import data
import evaluate
import features
import train
from machinery import (classifiers, durable, errors, feature_svm, image_rows, metrics, quality,
                       run_directory)
from helpers import CLASSES, CountedRows, only_error_line, quiet, write_folder


# --- The split, the bar and the K-class numbers ------------------------------------------------
def test_the_held_out_split_is_a_fifth_of_each_class_fixed_and_disjoint():
    labels = np.random.default_rng(3).permutation(np.repeat([0, 1, 2, 3], [5, 10, 3, 2]))
    train_part, held = classifiers.folder_split(labels, 4)
    assert np.bincount(labels[held], minlength=4).tolist() == [1, 2, 1, 1]  # at least one each
    assert np.bincount(labels[train_part], minlength=4).tolist() == [4, 8, 2, 1]
    assert not set(train_part) & set(held)
    assert sorted([*train_part, *held]) == list(range(len(labels)))
    assert list(held) == sorted(held) and list(train_part) == sorted(train_part)
    again_train, again_held = classifiers.folder_split(labels.copy(), 4)
    np.testing.assert_array_equal(held, again_held)
    np.testing.assert_array_equal(train_part, again_train)
    # 500 of each of ten digits: 100 of each held out, as the mnist-sample split's 1,000.
    train_part, held = classifiers.folder_split(np.repeat(np.arange(10), 500), 10)
    assert len(held) == 1000 and len(train_part) == 4000


def test_the_bar_is_halfway_between_chance_and_perfect_and_never_above_cifar10s():
    assert classifiers.required_accuracy(3) == pytest.approx(2 / 3, abs=1e-4)
    assert classifiers.required_accuracy(10) == 0.55
    assert classifiers.required_accuracy(100) == 0.505
    assert classifiers.required_accuracy(2) == classifiers.REQUIRED_ACCURACY["cifar10"] == 0.7


def test_the_class_numbers_take_k_from_the_classifiers_outputs():
    uniform = np.eye(3)[np.arange(300) % 3]
    entropy, smallest = quality.class_coverage(uniform)
    assert entropy == pytest.approx(np.log(3)) and smallest == pytest.approx(1 / 3)
    assert quality.classifier_score(uniform) == pytest.approx(3.0)
    two_of_three = np.eye(3)[np.arange(300) % 2]  # the third class never predicted
    entropy, smallest = quality.class_coverage(two_of_three)
    assert entropy == pytest.approx(np.log(2)) and smallest == 0.0
    assert quality.classifier_score(two_of_three) == pytest.approx(2.0)


class PixelClassifier:
    """Class = the first pixel's value mod 3, with certainty; features: the first four pixels."""

    def predict(self, images):
        flat = images.reshape(len(images), -1).astype(np.float64)
        return np.eye(3)[images[:, 0, 0, 0] % 3], flat[:, :4]


def test_quality_scores_k_classes_against_the_real_floor():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (300, 32, 32, 1)).astype(np.uint8)
    real[:, 0, 0, 0] = np.arange(300) % 3
    generated = real[:100].copy()
    generated[:, 0, 0, 0] = 0  # one class only
    result = quality.quality(PixelClassifier(), generated, real)
    assert result["num_classes"] == 3
    assert result["classifier_score"] == pytest.approx(1.0) and result["class_entropy"] == 0.0
    assert result["min_class_share"] == 0.0
    assert result["real_class_entropy"] == pytest.approx(np.log(3), abs=0.03)  # 100 drawn
    assert 2.85 < result["real_classifier_score"] <= 3.0
    assert "classifier score 1.000 of at most 3 (real " in quality.format_quality(result)


# --- The folder's classifier ---------------------------------------------------------------------
@pytest.mark.parametrize("dataset, words", [
    (data.Dataset("folder", np.zeros((6, 8, 8, 1), np.uint8), None, None, "f"),
     "needs a labeled folder: the images of pics in sub-folders, one per class and at least two"),
    (data.Dataset("folder", np.zeros((6, 8, 8, 1), np.uint8), np.array([0, 0, 0, 0, 0, 1]),
                  ["cats", "dogs"], "f"),
     "needs at least 2 usable images in every class of pics (one to train the classifier on, "
     "one held out to measure it); dogs/ has 1"),
    (data.Dataset("folder", np.zeros((6, 8, 8, 1), np.uint8), np.zeros(6, np.int64),
                  ["cats", "dogs"], "f"), "dogs/ has 0"),  # every file of dogs/ skipped
])
def test_a_folder_the_classifier_cannot_learn_from_is_one_line(dataset, words):
    with pytest.raises(data.DatasetError) as error:
        classifiers.require_labeled(dataset, "pics", "evaluate.py")
    assert str(error.value).startswith("evaluate.py needs") and words in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(data.DatasetError, match="needs"):
        classifiers.load_folder_classifier(dataset, "pics", "unused", log=quiet)


def test_the_folder_classifier_is_trained_once_per_fingerprint(tmp_path, quick_classifier):
    root, data_dir = str(tmp_path / "pictures"), str(tmp_path / "data")
    write_folder(root)
    dataset = data.load_folder(root, data_dir, log=quiet)
    messages = []
    first, info = classifiers.load_folder_classifier(dataset, root, data_dir, messages.append)
    try:
        assert any(m.startswith("training the 3-class folder classifier once (24 images")
                   for m in messages)
        assert info["num_classes"] == 3 and info["classes"] == list(CLASSES)
        assert info["fingerprint"] == dataset.fingerprint and info["channels"] == 1
        assert (info["train_images"], info["heldout_images"]) == (24, 6)
        assert info["required_accuracy"] == 0.6667
        assert info["heldout_accuracy"] >= info["required_accuracy"]  # easy classes: learned
        probabilities, _ = first.predict(dataset.images[:5])
        assert probabilities.shape == (5, 3)
    finally:
        first.close()
    cache = tmp_path / "data" / "classifiers" / f"folder-{dataset.fingerprint}"
    assert json.loads((cache / "info.json").read_text()) == info

    messages.clear()
    second, again = classifiers.load_folder_classifier(dataset, root, data_dir, messages.append)
    try:
        assert again == info and not any("training" in m for m in messages)  # from the cache
        np.testing.assert_allclose(second.predict(dataset.images[:5])[0], probabilities,
                                   rtol=1e-6)
    finally:
        second.close()

    # Another fingerprint (a file added; RGB decoding) is another classifier, beside the first.
    Image.new("L", (20, 20), 255).save(os.path.join(root, "top", "new.png"))
    changed = data.load_folder(root, data_dir, log=quiet)
    rgb = data.load_folder(root, data_dir, channels=3, log=quiet)
    assert len({dataset.fingerprint, changed.fingerprint, rgb.fingerprint}) == 3
    for other, channels in ((changed, 1), (rgb, 3)):
        messages.clear()
        classifier, other_info = classifiers.load_folder_classifier(other, root, data_dir,
                                                                    messages.append)
        classifier.close()
        assert any(m.startswith("training the 3-class folder classifier") for m in messages)
        assert other_info["channels"] == classifier.channels == channels
        assert other_info["train_images"] + other_info["heldout_images"] == 31
    assert sorted(os.listdir(tmp_path / "data" / "classifiers")) == sorted(
        f"folder-{d.fingerprint}" for d in (dataset, changed, rgb))


def test_a_stratified_draw_keeps_each_class_in_its_share_and_is_the_same_every_time():
    labels = np.random.default_rng(5).permutation(np.repeat([0, 1, 2, 3], [600, 300, 100, 1]))
    indices = np.arange(len(labels))[labels != 2][::-1]  # any order, a class left out
    drawn = classifiers.stratified_draw(indices, labels, 90)
    assert len(drawn) == 90 and list(drawn) == sorted(drawn) and set(drawn) <= set(indices)
    counts = np.bincount(labels[drawn], minlength=4)
    assert counts[2] == 0 and counts[3] == 1  # the one image of the rarest class is drawn
    assert abs(counts[0] - 2 * counts[1]) <= 2  # 600 : 300, in proportion
    np.testing.assert_array_equal(classifiers.stratified_draw(indices.copy(), labels, 90), drawn)
    assert len(set(drawn) & set(classifiers.stratified_draw(indices, labels, 90, seed=1))) < 90
    # Each class keeps at least `at_least` before the rest are shared out.
    few = classifiers.stratified_draw(np.arange(len(labels)), labels, 20, at_least=3)
    assert np.bincount(labels[few], minlength=4).tolist()[2:] == [3, 1]
    everything = np.array([5, 1, 3])
    np.testing.assert_array_equal(classifiers.stratified_draw(everything, labels, 3), everything)


def test_the_folder_classifier_reads_and_resizes_only_what_its_steps_use(tmp_path, monkeypatch):
    """A folder larger than RAM, in small: with the bound at 3 steps of 4 images, 12 images of
    each side of the split are read, a chunk of at most 5 rows at a time, and resized; no other
    row of the cache."""
    monkeypatch.setattr(classifiers, "TRAIN_BATCH", 4)
    monkeypatch.setattr(classifiers, "FOLDER_CLASSIFIER_STEPS", 3)
    monkeypatch.setattr(image_rows, "READ_CHUNK", 5)
    resized = []
    real_resize = image_rows.resize
    monkeypatch.setattr(image_rows, "resize", lambda images, size: resized.append(len(images)) or
                        real_resize(images, size))
    root, data_dir = str(tmp_path / "pictures"), str(tmp_path / "data")
    write_folder(root, per_class=30)  # 72 to train on, 18 held out
    dataset = data.load_folder(root, data_dir, image_size=16, log=quiet)
    counted = CountedRows(dataset.images)
    classifier, info = classifiers.load_folder_classifier(dataset._replace(images=counted), root,
                                                          data_dir, log=quiet)
    classifier.close()
    assert (info["train_images"], info["heldout_images"], info["epochs"]) == (12, 12, 1)
    assert all(len(rows) <= 5 for rows in counted.reads) and max(resized) <= 5
    read = np.concatenate(counted.reads)
    assert len(read) == len(set(read)) == sum(resized) == 24
    train_part, held = classifiers.folder_split(dataset.labels, 3)
    assert len(set(read) & set(train_part)) == len(set(read) & set(held)) == 12
    assert np.bincount(dataset.labels[read], minlength=3).tolist() == [8, 8, 8]  # 4 + 4 a class
    first_read = read
    counted.reads.clear()
    cache = os.path.join(data_dir, "classifiers", f"folder-{dataset.fingerprint}")
    shutil.rmtree(cache)  # trained again: the same images
    classifiers.load_folder_classifier(dataset._replace(images=counted), root, data_dir,
                                       log=quiet)[0].close()
    np.testing.assert_array_equal(np.concatenate(counted.reads), first_read)


def test_a_classifier_below_its_bar_says_so_with_the_bar_each_time(tmp_path, quick_classifier):
    root, data_dir = str(tmp_path / "pictures"), str(tmp_path / "data")
    write_folder(root, per_class=5, blank=True)  # the same black image in every class
    dataset = data.load_folder(root, data_dir, log=quiet)
    for _ in range(2):  # trained, then from the cache
        messages = []
        classifier, info = classifiers.load_folder_classifier(dataset, root, data_dir,
                                                              messages.append)
        classifier.close()
        assert info["heldout_accuracy"] == pytest.approx(1 / 3)  # one class for all: 1 of 3
        assert "3-class folder classifier: held-out accuracy 0.3333 on 3 images -- BELOW the " \
               "required 0.6667 (halfway between chance, 1/3, and perfect); its scores are less " \
               "trustworthy" in messages


# --- The commands on folder runs -----------------------------------------------------------------
def argv(tmp_path, folder="pictures", out="run", *extra):
    return ["--dataset", "folder", "--images", str(tmp_path / folder), "--data-dir",
            str(tmp_path / "data"), "--out", str(tmp_path / out), "--image-size", "16",
            "--batch-size", "8", "--sample-grid", "2", "--epochs", "1", *extra]


def test_a_labeled_folder_run_is_scored_during_and_after_training(tmp_path, quick_classifier,
                                                                  capsys):
    write_folder(str(tmp_path / "pictures"))
    run = tmp_path / "run"
    assert train.main(argv(tmp_path, "pictures", "run", "--eval-every", "1", "--eval-num",
                           "8")) == 0
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
    assert "training" not in out  # the classifier --eval-every trained, from its cache
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


def test_a_folder_without_classes_trains_but_is_not_scored(tmp_path, capsys):
    write_folder(str(tmp_path / "flat"), per_class=4, flat=True)
    assert train.main(argv(tmp_path, "flat", "flat-run")) == 0
    capsys.readouterr()
    for tool in (evaluate, features):
        assert tool.main(["--run", str(tmp_path / "flat-run")]) == 1
        line = only_error_line(capsys.readouterr().err)
        assert f"{tool.__name__}.py needs a labeled folder: the images of {tmp_path / 'flat'} " \
               f"in sub-folders, one per class and at least two" in line

    write_folder(str(tmp_path / "one"), per_class=10, classes=("top",))  # one sub-folder
    assert train.main(argv(tmp_path, "one", "one-run", "--eval-every", "1")) == 1
    line = only_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: --eval-every needs a labeled folder: the images of "
                           f"{tmp_path / 'one'} in sub-folders")
    assert not os.path.exists(tmp_path / "one-run")  # refused before training: no run left


# --- features.py's label counts for K classes ----------------------------------------------------
def test_label_draws_and_counts_follow_the_number_of_classes():
    labels = np.repeat(np.arange(3), 8)
    labeled, validation = feature_svm.draw_labeled(labels, 2, None, np.random.default_rng(0), 3)
    assert np.bincount(labels[labeled]).tolist() == [2, 2, 2] and len(validation) == 18
    assert feature_svm.most_labels(labels, 3) == 21
    assert feature_svm.default_labels("folder", labels, 3) == 21  # 10 a class asked, 7 possible
    assert feature_svm.default_labels("folder", np.repeat(np.arange(3), 50), 3) == 30
    assert feature_svm.default_labels("svhn", labels, 10) == 1000
    feature_svm.check_label_count(3, labels, 3)
    with pytest.raises(errors.RunError, match="^--labels 2 is fewer than one a class: this "
                                            "dataset has 3 classes; use at least 3$"):
        feature_svm.check_label_count(2, labels, 3)
    with pytest.raises(errors.RunError, match="too small for one label a class of its 3"):
        feature_svm.check_label_count(3, np.arange(3), 3)  # one image a class: none to validate


def test_features_read_only_the_labels_validation_and_test_images_they_use(tmp_path,
                                                                           monkeypatch):
    """A folder larger than RAM, in small: with 6 validation and 4 test images, features.py
    reads 6 labels + 6 others of the four fifths and 4 of the held-out fifth, a chunk at a time,
    and every draw finds its labels a class among them."""
    monkeypatch.setitem(feature_svm.VALIDATION_IMAGES, "folder", 6)
    monkeypatch.setattr(feature_svm, "FOLDER_TEST_IMAGES", 4)
    monkeypatch.setattr(image_rows, "READ_CHUNK", 5)
    root = str(tmp_path / "pictures")
    write_folder(root, per_class=30)  # 72 in the pool, 18 held out
    dataset = data.load_folder(root, str(tmp_path / "data"), image_size=16, log=quiet)
    counted = CountedRows(dataset.images)
    splits, labels = feature_svm._folder_splits(dataset._replace(images=counted), 6)
    assert labels == 6 and all(len(rows) <= 5 for rows in counted.reads)
    read = np.concatenate(counted.reads)
    assert len(read) == len(set(read)) == 16
    pool, held = classifiers.folder_split(dataset.labels, 3)
    assert len(set(read) & set(pool)) == 12 and len(set(read) & set(held)) == 4
    assert (len(splits.pool_images), len(splits.test_images)) == (12, 4)
    np.testing.assert_array_equal(splits.pool_images, dataset.images[np.sort(read[:12])])
    assert np.bincount(splits.pool_labels, minlength=3).min() >= 3  # 2 labels a class, 1 spare
    for draw in range(3):
        labeled, validation = feature_svm.draw_labeled(
            splits.pool_labels, 2, 6, np.random.default_rng([0, draw]), 3)
        assert np.bincount(splits.pool_labels[labeled]).tolist() == [2, 2, 2]
        assert len(validation) == 6
    # --labels left out: 10 a class, drawn from the whole pool's counts.
    assert feature_svm._folder_splits(dataset, None)[1] == 30


def folder_run_settings(tmp_path, images, **more):
    """The settings train.py records of a 16x16 run on the folder `images`."""
    dataset = data.load_folder(images, str(tmp_path / "data"), image_size=16, log=quiet)
    return dict({"dataset": "folder", "images": images, "data_dir": str(tmp_path / "data"),
                 "image_size": 16, "channels": None, "fit": "crop",
                 "data_fingerprint": dataset.fingerprint, "num_images": len(dataset.images),
                 "output_dim": 1, "z_dim": 100}, **more), dataset


def test_evaluate_and_features_load_the_folder_again_as_the_run_decoded_it(tmp_path):
    root = str(tmp_path / "pictures")
    write_folder(root, per_class=4)
    config, dataset = folder_run_settings(tmp_path, root)
    messages = []
    again, path = run_directory.load_trained_folder(config, messages.append)
    assert path == root and again.fingerprint == dataset.fingerprint
    assert any("from the cache" in message for message in messages)  # not decoded again
    np.testing.assert_array_equal(again.images, dataset.images)
    with pytest.raises(data.DatasetError, match=r"has changed since the run trained on it \(12 "
                                                r"images then, 12 now\)"):
        run_directory.load_trained_folder(dict(config, data_fingerprint="0" * 16), quiet)


def test_a_relative_path_of_a_runs_settings_is_relative_to_where_it_started(tmp_path,
                                                                            monkeypatch):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    (start / "pictures").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.chdir(start)
    run = run_directory.RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    run.write_config({"images": "pictures"})
    config = json.loads(open(run.config_path).read())
    assert config == {"images": "pictures", "working_dir": str(start)}
    run.write_config({"images": "pictures", "working_dir": "/named"})  # as the settings say
    assert run.saved_config()["working_dir"] == "/named"
    monkeypatch.chdir(elsewhere)
    assert run_directory.setting_path(config, "images") == str(start / "pictures")
    assert run_directory.setting_path(config, "data_dir", "data") == str(start / "data")
    assert run_directory.setting_path(dict(config, images=str(tmp_path)), "images") == str(tmp_path)
    assert run_directory.setting_path({"images": "pictures"}, "images") == "pictures"  # an older run
    (elsewhere / "moved").mkdir()  # only here: the tree was moved, the run with it
    assert run_directory.setting_path(dict(config, images="moved"), "images") == "moved"
    assert run_directory.setting_path(config, "channels") is None


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


def test_a_folder_runs_settings_must_name_its_folder(tmp_path):
    run = run_directory.RunDir(str(tmp_path))
    settings = {"dataset": "folder", "output_dim": 1, "z_dim": 100}
    durable.write_json(run.config_path, settings)
    with pytest.raises(errors.RunError, match="run settings lack images, fit, data_fingerprint, "
                                            "num_images$"):
        run.read_config()
    durable.write_json(run.config_path, dict(settings, images=7, fit="crop", data_fingerprint="f",
                                          num_images=3))
    with pytest.raises(errors.RunError, match="images 7 is not a str; the file is damaged$"):
        run.read_config()
