"""machinery/quality.py: the Frechet distance, the classifier score and class coverage on known
inputs, K classes taken from the classifier's outputs, the real floor, and generated and real
images resized alike."""
import numpy as np
import pytest

from machinery import classifiers, quality
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


def test_the_evaluation_resizes_generated_and_real_alike():
    seen = []

    class Recorder:
        def predict(self, images):
            seen.append(images.shape)
            rng = np.random.default_rng(len(seen))
            return rng.dirichlet(np.ones(10), len(images)), rng.normal(size=(len(images), 4))

    from machinery import quality
    images = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 1), dtype=np.uint8)
    result = quality.quality(Recorder(), images, images)
    assert seen == [(8, 32, 32, 1), (8, 32, 32, 1)]
    assert result["image_size"] == 64 and result["scored_size"] == 32
    assert "both resized" in quality.format_quality(result)
    with pytest.raises(ValueError, match="differ"):
        quality.quality(Recorder(), images, images[:, :32, :32])


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
    assert good["kid"] < bad["kid"] and "KID" in quality.format_quality(good)
