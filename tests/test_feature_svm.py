"""machinery/feature_svm.py (features.py's work): the SVM pipeline on a separable toy set, the label
draws and label counts for 10 or K classes, the only rows a folder's features read, too many
labels refused in one line, and the whole command on a tiny run."""
import json

import numpy as np
import pytest

import data
import features
from machinery import classifiers, errors, feature_svm, image_rows
from helpers import CountedRows, quiet, write_folder


def separable(count, seed):
    """Ten well separated Gaussian blobs in 20 dimensions."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    centres = np.random.default_rng(0).normal(0, 10, (10, 20))
    return centres[labels] + rng.normal(0, 0.5, (count, 20)), labels


def test_the_svm_separates_a_separable_set_and_picks_c_on_validation():
    error, c = feature_svm.svm_test_error(separable(50, 1), separable(100, 2), separable(200, 3))
    assert error == 0.0 and c in feature_svm.SVM_C
    noise = np.random.default_rng(4).normal(size=(200, 20)), np.arange(200) % 10
    error, _ = feature_svm.svm_test_error(noise, noise, noise)  # no signal: chance is 0.9
    assert 0.0 <= error <= 1.0


def test_label_draws_are_balanced_seeded_and_disjoint_from_validation():
    labels = np.repeat(np.arange(10), 30)
    labeled, validation = feature_svm.draw_labeled(labels, 3, 50, np.random.default_rng(0))
    assert np.bincount(labels[labeled], minlength=10).tolist() == [3] * 10
    assert len(validation) == 50 and not set(labeled) & set(validation)
    again, _ = feature_svm.draw_labeled(labels, 3, 50, np.random.default_rng(0))
    np.testing.assert_array_equal(labeled, again)
    _, everything_else = feature_svm.draw_labeled(labels, 3, None, np.random.default_rng(0))
    assert len(everything_else) == 300 - 30


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


def test_features_refuses_more_labels_than_the_pool_allows():
    balanced = np.repeat(np.arange(10), 30)  # 30 a class, 300 in all
    feature_svm.check_label_count(290, balanced)  # 29 a class, 10 left to validate on
    with pytest.raises(errors.RunError, match="use at most 290$"):
        feature_svm.check_label_count(300, balanced)  # none left to validate on
    rare = np.concatenate([np.repeat(np.arange(9), 30), np.full(10, 9)])  # 10 of class 9
    with pytest.raises(errors.RunError, match=r"^--labels 200 is more than this dataset allows: "
                                              r"its labeled pool has 280 images, 10 of its rarest "
                                              r"class, .* use at most 100$"):
        feature_svm.check_label_count(200, rare)


@pytest.mark.slow
def test_the_command_writes_the_table_and_features_json(two_epochs, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    assert features.main(["--run", str(run), "--labels", "20", "--draws", "2"]) == 0
    out = capsys.readouterr().out
    assert "trained discriminator (7,168)" in out and "raw pixels" in out
    assert "transductive" in out  # the tiny run trained on train + test
    result = json.loads((run / "features.json").read_text())
    for name in ("trained", "untrained", "pixels"):
        assert 0.0 <= result[name]["test_error_mean"] <= 1.0
        assert result[name]["test_error_std"] >= 0.0 and result[name]["labels"] == 20
        assert result[name]["test_images"] == 24 and len(result[name]["test_errors"]) == 2
    assert result["checkpoint"] == "model-8" and result["transductive"] is True
    assert features.main(["--run", str(tmp_path / "none")]) == 1
    assert "not a run directory" in capsys.readouterr().err
