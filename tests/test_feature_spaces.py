"""feature_spaces.py: the fixed feature spaces of flat folders -- the same numbers from the same
seed, gray and colour in one space, distances kept -- and which space scores which data."""
import numpy as np
import pytest

import data
from machinery import feature_spaces


def digits(count, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, channels), np.uint8)


@pytest.mark.parametrize("version", sorted(feature_spaces.SPACES))
def test_each_space_is_fixed_by_its_seed_and_shares_gray_with_colour(version):
    kind = feature_spaces.SPACES[version]
    images = digits(7)
    first, again, other = kind(), kind(), kind(seed=1)
    try:
        probabilities, features = first.predict(images)
        assert probabilities is None and features.shape == (7, feature_spaces.FEATURE_SIZE)
        assert features.dtype == np.float32 and np.isfinite(features).all() and features.std() > 0
        np.testing.assert_array_equal(again.predict(images)[1], features)  # same seed, same
        assert not np.allclose(other.predict(images)[1], features)
        np.testing.assert_allclose(first.predict(np.repeat(images, 3, axis=-1))[1], features,
                                   rtol=1e-6)
        assert first.predict(images[:0])[1].shape == (0, feature_spaces.FEATURE_SIZE)
        assert (first.name, first.key) == (f"{version} (seed 0)", f"{version}-seed0")
        with pytest.raises(ValueError, match="takes 32x32 images, got 16x16"):
            first.predict(images[:, :16, :16])
    finally:
        for space in (first, again, other):
            space.close()


def test_the_pixel_projection_keeps_distances():
    images = digits(40, channels=3, seed=2)
    pixels = data.scale(images).reshape(40, -1)
    features = feature_spaces.PixelProjection().predict(images)[1]
    pairs = np.triu_indices(40, 1)
    ratio = (np.linalg.norm(features[pairs[0]] - features[pairs[1]], axis=1)
             / np.linalg.norm(pixels[pairs[0]] - pixels[pairs[1]], axis=1))
    assert abs(np.mean(ratio) - 1) < 0.05 and ratio.min() > 0.75 and ratio.max() < 1.25


def test_a_flat_folder_is_scored_in_the_fixed_space_and_a_labeled_dataset_by_a_classifier():
    flat = data.Dataset(data.FOLDER, digits(4), None, None, "f")
    labeled = data.Dataset(data.FOLDER, digits(4), np.array([0, 0, 1, 1]), ["a", "b"], "f")
    assert not feature_spaces.is_labeled(flat) and feature_spaces.is_labeled(labeled)
    assert feature_spaces.is_labeled(data.Dataset("mnist-sample", digits(4), np.zeros(4)))
    space, info = feature_spaces.scorer(flat, "pics", "unused")
    try:
        assert info is None and space.name == f"{feature_spaces.FLAT_FOLDER_SPACE} (seed 0)"
    finally:
        space.close()
    assert feature_spaces.FLAT_FOLDER_SPACE in feature_spaces.SPACES
