"""machinery/augmentation.py: each policy against a NumPy reference written plainly (slices and
loops), the ranges of the random ones, p as a per-image probability, gradients, the fed numbers,
and ADA's controller of p."""
import numpy as np
import pytest
import tensorflow as tf

from machinery import augmentation, hyperparameters

tf1 = tf.compat.v1
SIDE = 32
MOST_SHIFT = SIDE // 8
HALF_CUT = SIDE // 4
POLICIES = hyperparameters.AUGMENT_POLICIES


def images_like(count, channels=3, side=SIDE, seed=0, low=-1.0):
    """count float32 images ~ U(low, 1); low > 0: no pixel is 0, so a zeroed one is visible."""
    return np.random.default_rng(seed).uniform(low, 1.0, [count, side, side, channels]) \
        .astype(np.float32)


def run(build, images, feeds=None):
    """Builds build(placeholder) in a fresh graph and evaluates it on `images`."""
    with tf1.Graph().as_default() as graph:
        x = tf1.placeholder(tf.float32, [None, *images.shape[1:]])
        fetches = build(x)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            return sess.run(fetches, {x: images, **(feeds or {})})


def augmented(images, policies, p, seed=0, step=0):
    """augment() on fed numbers: the numbers of pass 0 of (seed, step)."""
    numbers = augmentation.draws(seed, step, len(images), 1)[:, 0]
    return run(lambda x: augmentation.augment(x, policies, p, tf.constant(numbers)), images)


# --- NumPy references ------------------------------------------------------------------------
def np_translate(x, shifts):
    out = np.zeros_like(x)
    side = x.shape[1]
    for b, (down, right) in enumerate(shifts):
        if abs(down) >= side or abs(right) >= side:
            continue  # shifted out entirely
        rows = slice(max(down, 0), side + min(down, 0))
        cols = slice(max(right, 0), side + min(right, 0))
        out[b, rows, cols] = x[b, max(-down, 0):side - max(down, 0),
                               max(-right, 0):side - max(right, 0)]
    return out


def np_square(side, centre_row, centre_col):
    """True on the square cutout zeroes, clipped at the borders."""
    covered = np.zeros([side, side], bool)
    half = side // 4
    covered[max(centre_row - half, 0):max(centre_row + half, 0),
            max(centre_col - half, 0):max(centre_col + half, 0)] = True
    return covered


def np_color(x, brightness, saturation, contrast):
    x = x + brightness[:, None, None, None]
    if x.shape[-1] > 1:
        mean = x.mean(axis=3, keepdims=True)
        x = (x - mean) * saturation[:, None, None, None] + mean
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * contrast[:, None, None, None] + mean


# --- The ops with given numbers --------------------------------------------------------------
def test_translate_by_matches_numpy_fills_with_zero_and_passes_the_gradient_back():
    images, weights = images_like(6), images_like(6, seed=1)
    shifts = np.array([[0, 0], [4, -4], [-4, 4], [1, 3], [-2, 0], [40, 0]], np.int32)

    def build(x):
        out = augmentation.translate_by(x, tf.constant(shifts))
        return [out, tf.gradients(out, x, grad_ys=weights)[0]]
    out, gradient = run(build, images)
    np.testing.assert_array_equal(out, np_translate(images, shifts))
    np.testing.assert_array_equal(gradient, np_translate(weights, -shifts))  # the inverse shift
    assert np.all(out[1, :4] == 0) and np.all(out[1, :, -4:] == 0) and np.all(out[5] == 0)


def test_cut_out_at_zeroes_exactly_the_clipped_square():
    images = images_like(5)
    centres = np.array([[16, 16], [0, 0], [32, 32], [0, 32], [3, 29]], np.int32)
    out = run(lambda x: augmentation.cut_out_at(x, tf.constant(centres)), images)
    for b, (row, col) in enumerate(centres):
        square = np_square(SIDE, row, col)
        assert np.all(out[b][square] == 0)
        np.testing.assert_array_equal(out[b][~square], images[b][~square])
    assert np_square(SIDE, 16, 16).sum() == (SIDE // 2) ** 2
    assert np_square(SIDE, 0, 0).sum() == np_square(SIDE, 32, 32).sum() == HALF_CUT ** 2


@pytest.mark.parametrize("channels", [1, 3])
def test_adjust_color_by_matches_numpy_at_the_range_ends(channels):
    images = images_like(4, channels)
    brightness = np.array([-0.5, 0.5, 0.0, 0.25], np.float32)
    saturation = np.array([0.0, 2.0, 1.0, 0.5], np.float32)
    contrast = np.array([0.5, 1.5, 1.0, 0.75], np.float32)
    out = run(lambda x: augmentation.adjust_color_by(x, brightness, saturation, contrast), images)
    np.testing.assert_allclose(out, np_color(images, brightness, saturation, contrast), atol=2e-6)
    if channels == 3:  # saturation 0 leaves every pixel gray
        np.testing.assert_allclose(out[0], out[0].mean(axis=-1, keepdims=True).repeat(3, -1),
                                   atol=1e-6)


# --- The random policies ---------------------------------------------------------------------
def test_random_translation_is_a_whole_shift_in_range_and_covers_every_shift():
    images = images_like(256, low=0.1)
    out = augmented(images, ("translation",), 1.0)
    found = []
    for b in range(len(images)):
        matches = [(down, right) for down in range(-MOST_SHIFT, MOST_SHIFT + 1)
                   for right in range(-MOST_SHIFT, MOST_SHIFT + 1)
                   if np.array_equal(out[b], np_translate(images[b:b + 1], [(down, right)])[0])]
        assert len(matches) == 1, f"image {b} is no shift within +-{MOST_SHIFT}"
        found.append(matches[0])
    every = set(range(-MOST_SHIFT, MOST_SHIFT + 1))
    assert {down for down, _ in found} == {right for _, right in found} == every


def test_random_cutout_is_one_clipped_half_side_square_anywhere():
    images = images_like(512, low=0.1)
    out = augmented(images, ("cutout",), 1.0, seed=3)
    centres_seen = set()
    for b in range(len(images)):
        zero = np.all(out[b] == 0, axis=-1)
        np.testing.assert_array_equal(out[b][~zero], images[b][~zero])
        rows, cols = np.nonzero(zero.any(axis=1))[0], np.nonzero(zero.any(axis=0))[0]
        row = rows[0] + HALF_CUT if rows[0] > 0 else rows[-1] + 1 - HALF_CUT
        col = cols[0] + HALF_CUT if cols[0] > 0 else cols[-1] + 1 - HALF_CUT
        np.testing.assert_array_equal(zero, np_square(SIDE, row, col))
        centres_seen |= {row, col}
    assert centres_seen == set(range(SIDE + 1))


def test_random_color_factors_span_their_ranges():
    images = images_like(256)
    out = augmented(images, ("color",), 1.0, seed=4)

    def channel_spread(x):  # scaled by the contrast
        means = x.mean(axis=3, keepdims=True)
        return np.linalg.norm((means - means.mean(axis=(1, 2, 3), keepdims=True))
                              .reshape(len(x), -1), axis=1)

    def pixel_spread(x):  # scaled by saturation x contrast
        return np.linalg.norm((x - x.mean(axis=3, keepdims=True)).reshape(len(x), -1), axis=1)

    brightness = out.mean(axis=(1, 2, 3)) - images.mean(axis=(1, 2, 3))
    contrast = channel_spread(out) / channel_spread(images)
    saturation = pixel_spread(out) / pixel_spread(images) / contrast
    for values, (low, high) in [(brightness, augmentation.BRIGHTNESS_RANGE),
                                (saturation, augmentation.SATURATION_RANGE),
                                (contrast, augmentation.CONTRAST_RANGE)]:
        assert low - 1e-4 <= values.min() < low + 0.1 * (high - low)
        assert high - 0.1 * (high - low) < values.max() <= high + 1e-4


# --- p, gradients, the numbers ---------------------------------------------------------------
@pytest.mark.parametrize("channels,side", [(1, 16), (3, 32), (3, 64)])
def test_p_zero_returns_the_images_bit_for_bit_at_every_size(channels, side):
    images = images_like(8, channels, side)
    out = augmented(images, POLICIES, 0.0)
    assert out.dtype == np.float32 and out.tobytes() == images.tobytes()


@pytest.mark.parametrize("policy", POLICIES)
def test_p_is_a_per_image_probability_and_a_larger_p_only_adds_images(policy):
    images = images_like(400, low=0.1)
    half, most = (augmented(images, (policy,), p, seed=5) for p in (0.5, 0.8))
    changed_half = np.any(half != images, axis=(1, 2, 3))
    changed_most = np.any(most != images, axis=(1, 2, 3))
    assert 0.4 < changed_half.mean() < 0.6 and 0.7 < changed_most.mean() < 0.9  # +-4 sigma
    assert np.all(changed_most[changed_half])  # the same images and more
    assert half[changed_half].tobytes() == most[changed_half].tobytes()  # the same numbers
    assert half[~changed_half].tobytes() == images[~changed_half].tobytes()


@pytest.mark.parametrize("policies,p", [((name,), 1.0) for name in POLICIES] +
                         [(POLICIES, p) for p in (1.0, 0.5, 0.0)])
def test_gradients_reach_the_images_finite_and_nonzero(policies, p):
    images, weights = images_like(16), images_like(16, seed=9)
    numbers = augmentation.draws(6, 0, 16, 1)[:, 0]
    gradient = run(lambda x: tf.gradients(tf.reduce_sum(augmentation.augment(
        x, policies, p, tf.constant(numbers)) * weights), x)[0], images)
    assert np.all(np.isfinite(gradient)) and np.count_nonzero(gradient) > gradient.size // 4
    if p == 0.0:
        np.testing.assert_array_equal(gradient, weights)


def test_the_numbers_are_a_function_of_seed_and_step_and_rows_split_them():
    first = augmentation.draws(3, 10, 8, 2)
    assert first.shape == (8, 2, augmentation.DRAWS_PER_PASS) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() < 1.0
    np.testing.assert_array_equal(first, augmentation.draws(3, 10, 8, 2))
    assert not np.array_equal(first, augmentation.draws(3, 11, 8, 2))
    assert not np.array_equal(first, augmentation.draws(4, 10, 8, 2))


def test_policies_are_parsed_into_the_fixed_order_and_bad_ones_refused():
    assert hyperparameters.augment_policies("cutout, color") == ("color", "cutout")
    for bad in ("colour", "cutout,cutout", "", "translation,,cutout"):
        with pytest.raises(ValueError, match="distinct policies among color, translation"):
            hyperparameters.augment_policies(bad)


# --- ADA's controller ------------------------------------------------------------------------
def controller(batch_size=64, target=0.6):
    """(the session, the mean-sign placeholder, the update op, p, its variables)."""
    graph = tf1.Graph()
    with graph.as_default():
        sign = tf1.placeholder(tf.float32, [])
        adaptive = augmentation.adaptive_p(sign, tf.constant(batch_size), tf.no_op(), target)
        variables = tf1.global_variables()
        sess = tf1.Session(graph=graph)
        sess.run(tf1.global_variables_initializer())
    return sess, sign, adaptive.update, adaptive.p, variables


def steps(session_parts, signs):
    """Runs the update for each mean sign; returns p after each step."""
    sess, sign, update, p, _ = session_parts
    values = []
    for value in signs:
        sess.run(update, {sign: value})
        values.append(float(sess.run(p)))
    return values


def test_p_moves_every_interval_by_its_step_towards_the_target_within_zero_and_one():
    interval = hyperparameters.ADA_INTERVAL
    adjustment = 64 * interval / hyperparameters.ADA_IMAGES_TO_FULL
    up = steps(controller(), [1.0] * (3 * interval))
    assert up[:interval - 1] == [0.0] * (interval - 1)  # only every interval steps
    np.testing.assert_allclose(up[interval - 1::interval],
                               [adjustment, 2 * adjustment, 3 * adjustment], rtol=1e-6)
    parts = controller()
    assert steps(parts, [-1.0] * interval)[-1] == 0.0  # clipped at 0
    everything = int(np.ceil(1 / adjustment)) + 2
    assert steps(controller(), [1.0] * interval * everything)[-1] == 1.0  # clipped at 1
    # r_t is the mean over the interval: 0.7 on average is above 0.6, though one step is not.
    assert steps(controller(), [1.0, 0.5, 0.7, 0.6] * 2)[-1] > 0


def test_the_controller_resumes_exactly_from_its_variables(tmp_path):
    signs = [1.0, 0.9, 1.0, 0.8, 0.2, 1.0, 1.0]
    whole = steps(controller(), signs)
    parts = controller()
    steps(parts, signs[:3])
    sess, _, _, _, variables = parts
    with sess.graph.as_default():
        path = tf1.train.Saver(variables).save(sess, str(tmp_path / "ada"))
    resumed = controller()
    with resumed[0].graph.as_default():
        tf1.train.Saver(resumed[4]).restore(resumed[0], path)
    assert steps(resumed, signs[3:]) == whole[3:]
