"""Differentiable augmentation (train.py --augment): DiffAugment's policies (Zhao et al. 2020), each
applied to each image with a probability p, fixed or steered as ADA steers it (Karras et al. 2020).

The discriminator sees every image, real or generated, through `augment`, in the D and the G
updates alike, so it cannot learn a few hundred training images by heart; every op is
differentiable, so the generator's gradient passes through and G still learns the un-augmented
images. The policies, for images in [-1, 1], in this order:
  color        brightness + U(-0.5, 0.5); saturation x U(0, 2) about each pixel's channel mean;
               contrast x U(0.5, 1.5) about the image's mean
  translation  a shift of up to 1/8 of the side along each axis, the uncovered pixels 0
  cutout       a square of half the side set to 0, its centre anywhere in the image

Every random number is drawn in NumPy from (seed, step) and fed with the batch (`draws`), as z
is: a resumed run augments exactly as an uninterrupted one, and N replicas or workers, each
taking its rows, augment exactly as one device. An image's numbers do not depend on p: a larger
p augments more images, never others.
"""
import collections

import numpy as np
import tensorflow as tf

from machinery.hyperparameters import ADA_IMAGES_TO_FULL, ADA_INTERVAL, AUGMENT_TARGET

tf1 = tf.compat.v1
# An image's numbers in one pass: for each policy, whether to apply it, then its parameters.
_COLUMNS = {"color": slice(0, 4), "translation": slice(4, 7), "cutout": slice(7, 10)}
DRAWS_PER_PASS = 10
# DiffAugment's ranges (its DiffAugment_tf.py), for images in [-1, 1].
BRIGHTNESS_RANGE = (-0.5, 0.5)
SATURATION_RANGE = (0.0, 2.0)
CONTRAST_RANGE = (0.5, 1.5)
TRANSLATION_FRACTION = 8   # shifts of up to side / 8 pixels per axis
CUTOUT_FRACTION = 2        # a square of side / 2


def draws(seed, step, batch_size, passes):
    """The random numbers of one training step: float32 U[0, 1) [batch_size, passes,
    DRAWS_PER_PASS], a function of (seed, step) alone; pass k augments the k-th batch the step
    puts through D (the reals, the fakes of the D and first G update, one per further G update)."""
    rng = np.random.default_rng([seed, 6, step])
    return rng.random((batch_size, passes, DRAWS_PER_PASS), np.float32)


def augment(images, policies, p, pass_draws):
    """Applies `policies` (in the order given), each to each image with probability p.

    Args:
      images: float32 tensor [batch, N, N, channels] in [-1, 1].
      policies: names among hyperparameters.AUGMENT_POLICIES (augment_policies).
      p: a scalar float32 tensor or number: 0 returns the images exactly, 1 augments every one.
      pass_draws: float32 tensor [batch, DRAWS_PER_PASS] of U[0, 1) numbers, this pass's.

    Returns:
      The augmented images, the same shape; differentiable with respect to `images`.
    """
    p = tf.convert_to_tensor(p, tf.float32)
    ops = {"color": _color, "translation": _translation, "cutout": _cutout}
    with tf1.name_scope("augment"):
        for name in policies:
            numbers = pass_draws[:, _COLUMNS[name]]
            with tf1.name_scope(name):
                images = _for_some(images, numbers[:, 0] < p, numbers[:, 1:], ops[name])
    return images


def _for_some(images, apply, numbers, augmented):
    """augmented(images[apply], numbers[apply]) put back in place, the other images untouched.

    The chosen images are gathered, augmented and scattered back, so the work grows with p and
    the rest of the batch is copied bit for bit; with no image chosen (p = 0, where ADA starts)
    the cond skips even the copies.
    """
    chosen = tf.where(apply)  # [k, 1]
    # Gathered outside the cond: inside, the gather's gradient (IndexedSlices) breaks cond_v2's
    # gradient (its two branches would return different structures).
    chosen_numbers = tf.gather_nd(numbers, chosen)

    def some():
        changed = augmented(tf.gather_nd(images, chosen), chosen_numbers)
        return tf.tensor_scatter_nd_update(images, chosen, changed)
    return tf.cond(tf.reduce_any(apply), some, lambda: tf.identity(images))


def _in_range(uniform, low_high):
    low, high = low_high
    return low + uniform * (high - low)


def _integers(uniform, low, high):
    """Integers uniform on low..high (inclusive) from U[0, 1) numbers."""
    count = high - low + 1
    # float32 rounding can lift u * count to count for u just below 1: clamp it back.
    return tf.minimum(tf.cast(tf.floor(uniform * count), tf.int32), count - 1) + low


def _color(images, numbers):
    return adjust_color_by(images, _in_range(numbers[:, 0], BRIGHTNESS_RANGE),
                           _in_range(numbers[:, 1], SATURATION_RANGE),
                           _in_range(numbers[:, 2], CONTRAST_RANGE))


def _translation(images, numbers):
    most = images.shape[1] // TRANSLATION_FRACTION
    return translate_by(images, _integers(numbers, -most, most))


def _cutout(images, numbers):
    # Centres 0..N, N + 1 of them (DiffAugment's): a square is cut by the top border as often as
    # by the bottom one.
    return cut_out_at(images, _integers(numbers, 0, images.shape[1]))


def adjust_color_by(images, brightness, saturation, contrast):
    """DiffAugment's color ops with given factors, in its order: brightness, saturation, contrast.

    x + b; then (x - channel mean) s + channel mean; then (x - image mean) c + image mean. All
    three are affine in the pixel, so they fold into one 3x3 color matrix c (s I + (1 - s) / 3)
    and an offset b + (1 - c) mean(x) per image: one small batched matmul instead of seven
    passes over the batch (measured 3x faster, forward and backward).

    Args:
      images: float tensor [batch, N, N, channels].
      brightness, saturation, contrast: [batch] values (saturation does nothing to 1 channel).
    """
    def per_image(values, rank):
        return tf.reshape(tf.cast(values, images.dtype), [-1] + [1] * (rank - 1))
    contrast4 = per_image(contrast, 4)
    offset = per_image(brightness, 4) + (1.0 - contrast4) * tf.reduce_mean(
        images, axis=[1, 2, 3], keepdims=True)
    channels = images.shape[-1]
    if channels == 1:
        return images * contrast4 + offset
    saturation3 = per_image(saturation, 3)
    color_matrix = per_image(contrast, 3) * (
        saturation3 * tf.eye(channels, dtype=images.dtype) + (1.0 - saturation3) / channels)
    pixels = tf.reshape(images, [-1, images.shape[1] * images.shape[2], channels])
    return tf.reshape(tf.matmul(pixels, color_matrix), tf.shape(images)) + offset


def translate_by(images, shifts):
    """Shifts each image by whole pixels; the pixels it uncovers are 0 (mid-gray in [-1, 1]).

    Args:
      images: float tensor [batch, N, N, channels].
      shifts: int32 [batch, 2], (down, right) in pixels; negative shifts go up or left.

    Returns:
      out[b, i, j] = images[b, i - down, j - right] where that is inside the image, else 0.
    """
    side = images.shape[1]
    positions = tf.range(side)[None, :]

    def sources(shift):
        """Where each output row (or column) reads from, clamped, and 1.0 where that is inside."""
        source = positions - shift
        inside = tf.cast((source >= 0) & (source < side), images.dtype)
        return tf.clip_by_value(source, 0, side - 1), inside

    rows, rows_inside = sources(shifts[:, :1])
    cols, cols_inside = sources(shifts[:, 1:])
    # Both shifts gather whole rows of contiguous memory (the column shift on the transposed
    # images): measured 20-25% faster, forward and backward, than gathering single pixels.
    x = tf.gather(images, rows, axis=1, batch_dims=1) * rows_inside[:, :, None, None]
    x = tf.transpose(x, [0, 2, 1, 3])
    x = tf.gather(x, cols, axis=1, batch_dims=1) * cols_inside[:, :, None, None]
    return tf.transpose(x, [0, 2, 1, 3])


def cut_out_at(images, centres):
    """Zeroes a square of half the side around each centre, clipped at the image's borders.

    Args:
      images: float tensor [batch, N, N, channels].
      centres: int32 [batch, 2], (row, column) in 0..N: the square covers rows
        centre - N/4 .. centre + N/4 - 1 (likewise columns), the part inside the image.
    """
    side = images.shape[1]
    half = side // CUTOUT_FRACTION // 2
    positions = tf.range(side)[None, :]

    def covered(centre):
        return (positions >= centre - half) & (positions < centre + half)

    square = covered(centres[:, :1])[:, :, None] & covered(centres[:, 1:])[:, None, :]
    return images * tf.cast(~square, images.dtype)[..., None]


# --- The adaptive p (ADA) -----------------------------------------------------------------------
AdaptiveP = collections.namedtuple("AdaptiveP", "p update")
_SCOPE = "augment"


def _state(name, dtype):
    return tf1.get_variable(name, [], dtype, initializer=tf1.zeros_initializer(),
                            trainable=False)


def adaptive_p_variable():
    """ADA's p: a float32 variable starting at 0, checkpointed with the run."""
    with tf1.variable_scope(_SCOPE, reuse=tf1.AUTO_REUSE):
        return _state("p", tf.float32)


def adaptive_p(mean_sign, batch_size, after, target=AUGMENT_TARGET):
    """The op that steers adaptive_p_variable(), run with each training step (after `after`).

    Every ADA_INTERVAL steps, r_t, the mean over those steps of `mean_sign` (this step's mean of
    sign(D's logit) on the augmented real images, over every replica), moves p by
    batch_size x ADA_INTERVAL / ADA_IMAGES_TO_FULL: up while r_t is above `target`, down while
    below, within [0, 1]. Everything it needs to resume (p, the sum and count of the interval's
    signs) is in variables, so a checkpoint holds it.

    Returns:
      AdaptiveP(p: the variable, update: the op).
    """
    adjustment = tf.cast(batch_size * ADA_INTERVAL, tf.float32) / ADA_IMAGES_TO_FULL
    p = adaptive_p_variable()
    with tf1.variable_scope(_SCOPE, reuse=tf1.AUTO_REUSE):
        sign_sum = _state("sign_sum", tf.float64)
        steps = _state("sign_steps", tf.int64)
    with tf1.name_scope("adaptive_p"):
        with tf.control_dependencies([after]):
            added = [sign_sum.assign_add(tf.cast(mean_sign, tf.float64), read_value=False),
                     steps.assign_add(1, read_value=False)]
        # One read of each variable, used everywhere below: an assign's own result is read
        # again at each use, and a use after the reset would read 0.
        with tf.control_dependencies(added):
            total, counted, p_before = (v.read_value() for v in (sign_sum, steps, p))
        due = tf.equal(counted % ADA_INTERVAL, 0)
        r_t = total / ADA_INTERVAL
        moved = tf.clip_by_value(
            p_before + tf.cast(tf.sign(r_t - target), tf.float32) * adjustment, 0.0, 1.0)
        update = tf.group(p.assign(tf.where(due, moved, p_before)),
                          sign_sum.assign(tf.where(due, tf.zeros_like(total), total)),
                          name="update")
    return AdaptiveP(p, update)
