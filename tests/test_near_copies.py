"""near_copies.py on synthetic features with known answers: the chunked search, copies found,
new samples flagged at the expected rate, and memory that stays bounded."""
import tracemalloc

import numpy as np
import pytest
import scipy.spatial.distance

from machinery import near_copies


@pytest.mark.parametrize("chunk_rows, chunk_columns", [(1, 1), (7, 13), (1000, 1000)])
def test_the_chunked_search_is_the_brute_force_one(chunk_rows, chunk_columns):
    rng = np.random.default_rng(0)
    queries, references = rng.standard_normal((50, 6)), rng.standard_normal((83, 6))
    distances, indices = near_copies.nearest_neighbours(queries, references, None, chunk_rows,
                                                        chunk_columns)
    expected = scipy.spatial.distance.cdist(queries, references)
    np.testing.assert_allclose(distances, expected.min(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(indices, expected.argmin(axis=1))
    # Each of the first 50 references held out in turn: never its own neighbour.
    own = scipy.spatial.distance.cdist(references[:50], references)
    own[np.arange(50), np.arange(50)] = np.inf
    distances, indices = near_copies.nearest_neighbours(references[:50], references,
                                                        np.arange(50), chunk_rows, chunk_columns)
    np.testing.assert_array_equal(indices, own.argmin(axis=1))


def test_an_exact_copy_is_at_distance_zero_despite_large_norms():
    references = 1e4 + np.random.default_rng(1).standard_normal((30, 64))
    distances, indices = near_copies.nearest_neighbours(references[[3, 17]], references)
    np.testing.assert_array_equal(indices, [3, 17])
    np.testing.assert_array_equal(distances, [0.0, 0.0])


def test_copies_are_found_and_new_samples_flagged_at_the_expected_rate():
    rng = np.random.default_rng(2)
    training = rng.standard_normal((4000, 8))
    fresh = near_copies.near_copies(rng.standard_normal((2000, 8)), training, 2000)
    assert fresh.expected_rate == pytest.approx(100 / 2001)
    assert abs(fresh.num_flagged - fresh.expected_flagged) < 4 * 14 and fresh.p_value > 0.01
    copied = rng.choice(len(training), 50, replace=False)
    generated = np.concatenate([training[copied] + 1e-6 * rng.standard_normal((50, 8)),
                                rng.standard_normal((950, 8))])
    found = near_copies.near_copies(generated, training, 2000)
    assert found.p_value < 1e-6 and found.num_flagged >= 50
    for generated_index, training_index, distance in found.closest_pairs:
        assert generated_index < 50 and training_index == copied[generated_index]
        assert distance < 1e-4
    line = near_copies.describe(found, "run/near_copies.png")
    assert line.startswith(f"near copies: {found.num_flagged} of 1,000 samples (")
    assert "than 95% of 2,000 real images held out in turn are (new images: 5.0%, 50; p = " in line
    assert line.endswith("the 10 closest pairs: run/near_copies.png")


def test_memory_stays_bounded():
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((3000, 64)).astype(np.float32)
    references = rng.standard_normal((6000, 64)).astype(np.float32)
    tracemalloc.start()
    near_copies.nearest_neighbours(queries, references, None, 256, 512)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10e6, f"peak {peak / 1e6:.1f} MB"  # the whole matrix would be 144 MB


@pytest.mark.parametrize("generated, training, heldout, kwargs, message", [
    (np.zeros((5, 2)), np.zeros((30, 3)), 20, {}, "columns"),
    (np.zeros((0, 2)), np.zeros((30, 2)), 20, {}, "non-empty"),
    (np.zeros((5, 2)), np.zeros((30, 2)), 20, {"percentile": 0}, "percentile"),
    (np.zeros((5, 2)), np.zeros((30, 2)), 3, {}, "too few"),
    (np.full((5, 2), np.inf), np.zeros((30, 2)), 20, {}, "infinite"),
])
def test_errors(generated, training, heldout, kwargs, message):
    with pytest.raises(ValueError, match=message):
        near_copies.near_copies(generated, training, heldout, **kwargs)
