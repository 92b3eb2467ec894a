"""machinery/classifiers.py: the classifier on easy synthetic classes and its cache; a labeled
folder's classifier of its K classes (cached by fingerprint, trained on a fixed held-out split,
measured against its bar, reading only the rows its steps use); a damaged cache trained again."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import data
import evaluate
from machinery import classifiers, durable, image_rows
from helpers import CLASSES, CountedRows, easy_classes, quiet, write_folder


def test_a_toy_classifier_separates_two_easy_classes():
    images, labels = easy_classes(256, seed=0)
    held_images, held_labels = easy_classes(200, seed=1)
    classifier = classifiers.Classifier(1)
    try:
        assert classifier.accuracy(held_images, held_labels) < 0.9  # untrained: not yet
        classifier.fit(images, labels, epochs=3, log=lambda message: None)
        assert classifier.accuracy(held_images, held_labels) >= 0.99
        probabilities, features = classifier.predict(held_images)
        assert probabilities.shape == (200, 10)
        assert features.shape == (200, classifiers.FEATURE_SIZE)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    finally:
        classifier.close()


def test_classifier_is_trained_once_and_cached(tmp_path, monkeypatch):
    images, labels = easy_classes(128, seed=2)
    calls = []

    def split(name, data_dir, download=True, verify=True):
        calls.append(name)
        return images, labels, images[:64], labels[:64]

    monkeypatch.setattr(classifiers, "classifier_split", split)
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "mnist", (("train",), ("test",), 2))
    first, info = classifiers.load_classifier("mnist", str(tmp_path), log=lambda message: None)
    expected = first.predict(images[:16])[0]
    first.close()
    folder = tmp_path / "classifiers" / "mnist"
    assert json.loads((folder / "info.json").read_text())["heldout_accuracy"] == \
        info["heldout_accuracy"]
    assert not [name for name in os.listdir(tmp_path / "classifiers") if name.startswith(".tmp")]
    assert (folder.stat().st_mode & 0o777) == durable.DEFAULT_DIR_MODE
    second, again = classifiers.load_classifier("mnist", str(tmp_path), log=lambda message: None)
    try:
        assert calls == ["mnist"] and again == info  # loaded from the cache, not retrained
        np.testing.assert_allclose(second.predict(images[:16])[0], expected, rtol=1e-6)
    finally:
        second.close()


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


@pytest.mark.slow
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
