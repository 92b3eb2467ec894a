"""The scores and features.py's labels for K classes (K the classifier's outputs), on known
inputs."""
import numpy as np
import pytest

import features
import quality
import runs


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


def test_label_draws_and_counts_follow_the_number_of_classes():
    labels = np.repeat(np.arange(3), 8)
    labeled, validation = features.draw_labeled(labels, 2, None, np.random.default_rng(0), 3)
    assert np.bincount(labels[labeled]).tolist() == [2, 2, 2] and len(validation) == 18
    assert features.most_labels(labels, 3) == 21
    features.check_label_count(3, labels, 3)
    with pytest.raises(runs.RunError, match="^--labels 2 is fewer than one a class: this "
                                            "dataset has 3 classes; use at least 3$"):
        features.check_label_count(2, labels, 3)
    with pytest.raises(runs.RunError, match="too small for one label a class of its 3"):
        features.check_label_count(3, np.arange(3), 3)  # one image a class: none to validate
