"""kid.py: KID on known values, unbiased where the Frechet distance is not, seeded, bounded in
memory, and its errors."""
import itertools
import tracemalloc

import numpy as np
import pytest

from machinery import kid, quality


def direct_mmd2(x, y):
    """The unbiased estimator written as its definition, pair by pair."""
    d, m = x.shape[1], len(x)

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1.0) ** 3

    pairs = list(itertools.permutations(range(m), 2))
    within_x = sum(k(x[i], x[j]) for i, j in pairs) / len(pairs)
    within_y = sum(k(y[i], y[j]) for i, j in pairs) / len(pairs)
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    return within_x + within_y - 2 * across


def gaussian(rng, n, d, shift=0.0):
    return rng.standard_normal((n, d)) + shift


def test_a_case_computed_by_hand():
    # x = {0, 1}, y = {1, 2}, d = 1: k(0,1) = 1, k(1,2) = 27, cross terms 1, 1, 8, 27;
    # MMD^2 = 1 + 27 - 2 * 37 / 4 = 9.5. Every subset of 2 is the whole set: sd 0.
    mean, std = kid.kernel_distance([[0.0], [1.0]], [[1.0], [2.0]], num_subsets=5)
    assert mean == pytest.approx(9.5, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_it_is_the_estimators_definition():
    rng = np.random.default_rng(1)
    x, y = gaussian(rng, 7, 5), gaussian(rng, 7, 5, shift=0.3)
    assert kid.unbiased_mmd2(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-12)
    np.testing.assert_allclose(kid.polynomial_kernel(x, y), (x @ y.T / 5 + 1) ** 3, rtol=1e-12)
    mean, std = kid.kernel_distance(x, y, num_subsets=3)  # subsets of the whole sets
    assert mean == pytest.approx(direct_mmd2(x, y), rel=1e-12) and std < 1e-9


def test_sets_of_one_subsets_size_are_measured_once_and_said_to_have_no_sd(monkeypatch):
    rng = np.random.default_rng(2)
    x, y = gaussian(rng, 40, 5), gaussian(rng, 40, 5, shift=0.3)
    calls = []
    measure = kid.unbiased_mmd2
    monkeypatch.setattr(kid, "unbiased_mmd2", lambda a, b: calls.append(len(a)) or measure(a, b))
    assert kid.kernel_distance(x, y, num_subsets=100) == (measure(x, y), 0.0)
    assert calls == [40]  # once: the other 99 subsets would be the same two whole sets
    kid.kernel_distance(x, y, num_subsets=5, subset_size=30)
    assert calls[1:] == [30] * 5
    whole = {"kid": 0.01234, "kid_std": 0.0, "kid_subsets": 100, "kid_subset_size": 40,
             "num_generated": 40, "num_real": 40}
    assert quality.format_kid(whole) == "KID 0.0123 (one subset: both sets whole, so no sd)"
    drawn = dict(whole, kid_std=0.0011, kid_subset_size=1000, num_generated=1000, num_real=5000)
    assert quality.format_kid(drawn) == "KID 0.0123 (sd 0.0011 over 100 subsets of 1,000)"
    assert quality.format_kid({"frechet_distance": 3.0}) == ""  # saved before KID


def test_a_shift_is_positive_and_grows():
    rng = np.random.default_rng(3)
    real = gaussian(rng, 2000, 32)
    results = [kid.kernel_distance(gaussian(rng, 2000, 32, shift), real, num_subsets=10,
                                   subset_size=500) for shift in (0.25, 0.5, 1.0)]
    assert all(mean > 3 * std for mean, std in results)
    assert results[0][0] < results[1][0] < results[2][0]


def test_seeded():
    rng = np.random.default_rng(4)
    a, b = gaussian(rng, 300, 8), gaussian(rng, 200, 8, 0.2)
    first = kid.kernel_distance(a, b, num_subsets=4, subset_size=50, seed=7)
    assert kid.kernel_distance(a, b, num_subsets=4, subset_size=50, seed=7) == first
    assert kid.kernel_distance(a, b, num_subsets=4, subset_size=50, seed=8) != first


def test_unbiased_where_the_frechet_distance_is_not():
    """One Gaussian on both sides: KID averages 0 at 50 and at 500 samples; the Frechet distance
    is far from 0 at 50 and shrinks with more samples."""
    rng = np.random.default_rng(5)
    summary = {}
    for n in (50, 500):
        kids, distances = [], []
        for _ in range(60):
            a, b = gaussian(rng, n, 16), gaussian(rng, n, 16)
            kids.append(kid.kernel_distance(a, b, num_subsets=1, subset_size=n)[0])
            distances.append(quality.frechet_distance(a, b))
        summary[n] = (np.mean(kids), np.std(kids, ddof=1) / np.sqrt(len(kids)),
                      np.mean(distances))
    for kid_mean, kid_error, _ in summary.values():
        assert abs(kid_mean) < 3 * kid_error
    assert summary[50][2] > 5 * summary[500][2]


def test_memory_stays_bounded_for_large_inputs():
    big = np.random.default_rng(6).standard_normal((20000, 256)).astype(np.float32)  # 20 MB
    tracemalloc.start()
    kid.kernel_distance(big, big[::-1], num_subsets=2, subset_size=200)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB: the input was copied whole"


@pytest.mark.parametrize("a, b, kwargs, message", [
    (np.zeros(5), np.zeros((5, 1)), {}, "2-D"),
    (np.zeros((5, 2)), np.zeros((5, 3)), {}, "columns"),
    (np.zeros((1, 2)), np.zeros((5, 2)), {}, "at least 2"),
    (np.full((5, 2), np.nan), np.zeros((5, 2)), {}, "NaN"),
    (np.zeros((5, 2)), np.zeros((5, 2)), {"num_subsets": 0}, "num_subsets"),
    (np.zeros((5, 2)), np.zeros((5, 2)), {"subset_size": 1}, "subset_size"),
])
def test_errors(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kid.kernel_distance(a, b, **kwargs)
