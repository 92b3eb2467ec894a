"""quality.py and evaluate.py: the metrics on known inputs, the classifier on easy synthetic
classes, its cache, and evaluation inside and after a training run."""
import json
import os

import numpy as np
import pytest

import evaluate
import train
from machinery import classifiers, durable, metrics, quality, run_directory
from helpers import easy_classes


def test_identical_feature_sets_are_at_distance_zero():
    features = np.random.default_rng(0).normal(size=(500, 8))
    assert quality.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (20000, 3))
    b = rng.normal(2.0, 1.0, (20000, 3))  # means 2 apart in each of 3 dimensions: 3 * 4 = 12
    assert quality.frechet_distance(a, b) == pytest.approx(12.0, rel=0.03)
    c = rng.normal(0.0, 2.0, (20000, 3))  # same mean, sd 2: 3 * (1 + 4 - 2 * 2) = 3
    assert quality.frechet_distance(a, c) == pytest.approx(3.0, rel=0.05)


def test_frechet_distance_matches_scipy_sqrtm_on_a_regular_case():
    import scipy.linalg
    rng = np.random.default_rng(5)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.5
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b).real))
    assert quality.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_survives_singular_covariances():
    a = np.zeros((100, 4))
    a[:, 0] = np.arange(100)  # three dead features
    value = quality.frechet_distance(a, a + 1.0)
    assert value == pytest.approx(4.0, rel=1e-3)  # only the mean shift: 4 x 1^2


def test_classifier_score_bounds():
    confident_uniform = np.eye(10)[np.arange(1000) % 10]
    assert quality.classifier_score(confident_uniform) == pytest.approx(10.0)
    single_class = np.eye(10)[np.zeros(1000, int)]
    assert quality.classifier_score(single_class) == pytest.approx(1.0)
    unsure = np.full((1000, 10), 0.1)
    assert quality.classifier_score(unsure) == pytest.approx(1.0)
    half = np.eye(10)[np.arange(1000) % 2]  # two classes, confident
    assert quality.classifier_score(half) == pytest.approx(2.0)


def test_class_coverage():
    entropy, smallest = quality.class_coverage(np.eye(10)[np.arange(1000) % 10])
    assert entropy == pytest.approx(np.log(10)) and smallest == pytest.approx(0.1)
    entropy, smallest = quality.class_coverage(np.eye(10)[np.arange(1000) % 5])
    assert entropy == pytest.approx(np.log(5)) and smallest == 0.0


def test_a_toy_classifier_separates_two_easy_classes():
    images, labels = easy_classes(256, seed=0)
    held_images, held_labels = easy_classes(200, seed=1)
    classifier = classifiers.Classifier(1)
    try:
        assert classifier.accuracy(held_images, held_labels) < 0.9  # untrained: not yet
        classifier.fit(images, labels, epochs=3, log=lambda message: None)
        assert classifier.accuracy(held_images, held_labels) >= 0.99
        probabilities, features = classifier.predict(held_images)
        assert probabilities.shape == (200, 10) and features.shape == (200, classifiers.FEATURE_SIZE)
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
    assert json.loads((folder / "info.json").read_text())["heldout_accuracy"] == info["heldout_accuracy"]
    assert not [name for name in os.listdir(tmp_path / "classifiers") if name.startswith(".tmp")]
    assert (folder.stat().st_mode & 0o777) == durable.DEFAULT_DIR_MODE
    second, again = classifiers.load_classifier("mnist", str(tmp_path), log=lambda message: None)
    try:
        assert calls == ["mnist"] and again == info  # loaded from the cache, not retrained
        np.testing.assert_allclose(second.predict(images[:16])[0], expected, rtol=1e-6)
    finally:
        second.close()


def test_real_halves_give_the_floor_and_noise_scores_worse(tmp_path, monkeypatch):
    images, labels = easy_classes(400, seed=3)
    classifier = classifiers.Classifier(1)
    try:
        classifier.fit(images, labels, epochs=3, log=lambda message: None)
        noise = np.random.default_rng(4).integers(0, 256, (200, 32, 32, 1)).astype(np.uint8)
        bad = quality.quality(classifier, noise, images)
        good = quality.quality(classifier, images[:200], images[200:])
    finally:
        classifier.close()
    assert good["real_frechet_distance"] < bad["frechet_distance"]
    assert good["frechet_distance"] < bad["frechet_distance"]
    assert good["real_class_entropy"] == pytest.approx(np.log(2), abs=0.05)
    assert bad["num_real_half"] == 200


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
    assert (run / "quality.png").is_file()
    assert (tmp_path / "d" / "classifiers" / "mnist-sample" / "info.json").is_file()
    assert evaluate.main(["--run", str(run), "--num", "100"]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert report["3"]["num_generated"] == 100 and report["3"]["checkpoint"] == "model-3"
    assert 1.0 <= report["3"]["real_classifier_score"] <= 10.0
    assert evaluate.main(["--run", str(tmp_path / "missing")]) == 1
    assert "not found" in capsys.readouterr().err
