"""The DCGAN graph: generator, discriminator, losses, optimizers and the training step.

TensorFlow 1.x graph mode through `tf.compat.v1`, eager execution disabled on import. No Keras:
Keras 3 (bundled with TF 2.16+) removed `tf.compat.v1.layers`, so every layer here is a few
`tf.compat.v1.get_variable` calls under a `variable_scope` plus a `tf.nn` op. Checkpoint names
therefore read `generator/deconv2/kernel`, `discriminator/bn3/moving_mean`, and so on. How the
convolutions are computed is `convolutions.py`'s business; the variables are the same either way.

Every hyperparameter of the paper (Radford et al. 2015) and of the blog post this project follows
is a named value in hyperparameters.py; nothing else in the project repeats a number of the paper.
No file I/O and no flags live here.
"""
import collections
import contextlib
import threading

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

import convolutions
import data
import devices
from hyperparameters import (
    Z_DIM, LEARNING_RATE, BETA1, ALPHA, SMOOTH, INIT_STDDEV, KERNEL_SIZE, STRIDE,
    BN_EPSILON, BN_MOMENTUM, G_STEPS, IMAGE_SIZE, BASE_SIDE, PRECISIONS, image_size_problem,
    discriminator_filters, generator_filters)

tf1 = tf.compat.v1
tf1.disable_eager_execution()

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"


# --- Layers ----------------------------------------------------------------------------------
def _weight(name, shape, compute_dtype):
    """A float32 master weight ~ N(0, INIT_STDDEV), read (and cast) at the point of use.

    The read op is created where the layer is built, so a layer built under a control dependency
    reads the value the variable has after that dependency ran (resource variables guarantee it).
    """
    var = tf1.get_variable(name, shape, tf.float32,
                           initializer=tf1.random_normal_initializer(0.0, INIT_STDDEV))
    return tf.cast(var, compute_dtype) if compute_dtype != tf.float32 else var


def _bias(name, size, compute_dtype):
    var = tf1.get_variable(name, [size], tf.float32, initializer=tf1.zeros_initializer())
    return tf.cast(var, compute_dtype) if compute_dtype != tf.float32 else var


# A layer followed by batch norm has no bias (use_bias=False): batch norm subtracts the mean, so
# such a bias has an exactly zero gradient, and Adam, which divides by the gradient's RMS, turns
# that gradient's round-off noise into steps as large as the learning rate. Batch norm's beta is
# the bias. The paper's reference code and PyTorch's DCGAN example do the same.
def _dense(x, units, name, use_bias=True):
    with tf1.variable_scope(name):
        y = tf.matmul(x, _weight("kernel", [x.shape[-1], units], x.dtype))
        return tf.nn.bias_add(y, _bias("bias", units, x.dtype)) if use_bias else y


def _conv2d(x, filters, name, implementation, use_bias=True):
    with tf1.variable_scope(name):
        kernel = _weight("kernel", [KERNEL_SIZE, KERNEL_SIZE, x.shape[-1], filters], x.dtype)
        y = convolutions.conv2d(x, kernel, STRIDE, implementation)
        return tf.nn.bias_add(y, _bias("bias", filters, x.dtype)) if use_bias else y


def _conv2d_transpose(x, filters, name, implementation, use_bias=True):
    with tf1.variable_scope(name):
        # A transposed kernel is [height, width, out_channels, in_channels].
        kernel = _weight("kernel", [KERNEL_SIZE, KERNEL_SIZE, filters, x.shape[-1]], x.dtype)
        y = convolutions.conv2d_transpose(x, kernel, STRIDE, implementation)
        return tf.nn.bias_add(y, _bias("bias", filters, x.dtype)) if use_bias else y


def _batch_norm(x, training, name, update_moving_stats=True, momentum=BN_MOMENTUM,
                sync=False):
    """Fused batch norm (NHWC) with float32 parameters and statistics, whatever x's dtype.

    Training mode normalizes with the batch statistics and, if `update_moving_stats`, adds the
    moving-average updates (m <- momentum m + (1 - momentum) batch) to the UPDATE_OPS collection
    (the TF1 convention: the optimizer runs them as control dependencies) and to the list of
    `_recorded_updates`, if one is open in this thread. Inference mode normalizes with the moving
    statistics. With `sync` (training under a tf.distribute strategy), the batch statistics are
    those of every replica's batch together (`_synchronized_batch_norm`).

    The moving statistics are created with a MEAN aggregation: under a strategy each replica's
    update is averaged across replicas, so every copy stays the same; on one device the
    aggregation changes nothing.
    """
    channels = x.shape[-1]
    with tf1.variable_scope(name):
        gamma = tf1.get_variable("gamma", [channels], initializer=tf1.ones_initializer())
        beta = tf1.get_variable("beta", [channels], initializer=tf1.zeros_initializer())
        moving_mean = tf1.get_variable("moving_mean", [channels], trainable=False,
                                       initializer=tf1.zeros_initializer(), **_MOVING_STAT)
        moving_variance = tf1.get_variable("moving_variance", [channels], trainable=False,
                                           initializer=tf1.ones_initializer(), **_MOVING_STAT)
        if not training:
            y, _, _ = tf1.nn.fused_batch_norm(x, gamma, beta, moving_mean, moving_variance,
                                              epsilon=BN_EPSILON, is_training=False)
            return y
        if sync:
            y, batch_mean, batch_variance = _synchronized_batch_norm(x, gamma, beta)
        else:
            y, batch_mean, batch_variance = tf1.nn.fused_batch_norm(x, gamma, beta,
                                                                    epsilon=BN_EPSILON,
                                                                    is_training=True)
        if update_moving_stats:
            decay = 1.0 - momentum
            updates = [tf1.assign_sub(moving_mean, (moving_mean - batch_mean) * decay,
                                      name="update_moving_mean"),
                       tf1.assign_sub(moving_variance, (moving_variance - batch_variance) * decay,
                                      name="update_moving_variance")]
            for update in updates:
                tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, update)
            recording = getattr(_recording, "updates", None)
            if recording is not None:
                recording.extend(updates)
        return y


_MOVING_STAT = dict(aggregation=tf.VariableAggregation.MEAN,
                    synchronization=tf.VariableSynchronization.ON_WRITE)
_recording = threading.local()


@contextlib.contextmanager
def _recorded_updates():
    """Collects the moving-statistics updates the batch norms built in this thread add while the
    block runs. Under a strategy each replica builds its pass in a thread of its own, and a
    replica's updates are not named after it (MEAN-aggregated updates live under the first
    replica's names), so neither a scope filter nor a before/after difference of UPDATE_OPS
    finds them; this list does."""
    previous = getattr(_recording, "updates", None)
    _recording.updates = updates = []
    try:
        yield updates
    finally:
        _recording.updates = previous


def _synchronized_batch_norm(x, gamma, beta):
    """Batch norm with the statistics of all replicas' batches together: (y, mean, variance), the
    variance Bessel-corrected for the moving statistics as fused_batch_norm's is. The replicas'
    batches are equal in size, so the mean of their means is the whole batch's mean. The
    variance is a second mean, of the squares about that mean: E[x^2] - E[x]^2 in one pass
    would cost float32 the digits the two nearly equal terms share."""
    x32 = tf.cast(x, tf.float32)
    mean = _cross_replica_mean(tf.reduce_mean(x32, [0, 1, 2]))
    variance = _cross_replica_mean(tf.reduce_mean(tf.square(x32 - mean), [0, 1, 2]))
    y = tf.nn.batch_normalization(x32, mean, variance, beta, gamma, BN_EPSILON)
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    count = tf.cast(tf.size(x32) // x32.shape[-1] * replicas, tf.float32)
    return tf.cast(y, x.dtype), mean, variance * count / tf.maximum(count - 1.0, 1.0)


_ALL_REDUCED_GRADIENT = "DcganAllReducedGradient"


def _cross_replica_mean(x):
    """The mean of x over the replicas, differentiable: each replica's gradient is the mean of
    all replicas' gradients (every replica's loss reads the same mean).

    Built in replica context with merge_call and the strategy's own reduce_to
    (ReplicaContext.all_reduce does not work in a v1 graph in TF 2.21, nor does
    tf.custom_gradient, which looks for `.../replica_1` variables that do not exist). The
    forward value is the reduced one with the gradient of the identity, and an identity op whose
    gradient is all-reduced carries the rest.
    """
    forward = x + tf.stop_gradient(_reduce_mean_across_replicas(x) - x)
    with tf1.get_default_graph().gradient_override_map({"Identity": _ALL_REDUCED_GRADIENT}):
        return tf.identity(forward)


@tf.RegisterGradient(_ALL_REDUCED_GRADIENT)
def _all_reduced_gradient(op, upstream):
    del op  # an identity: only the upstream gradient matters
    return _reduce_mean_across_replicas(upstream)


def _reduce_mean_across_replicas(x):
    context = tf.distribute.get_replica_context()
    return context.merge_call(lambda strategy, value: strategy.extended.reduce_to(
        tf.distribute.ReduceOp.MEAN, value, destinations=value), args=(x,))


# --- Networks --------------------------------------------------------------------------------
def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _implementation(implementation):
    """`implementation`, or if None the one for the device TensorFlow sees."""
    return implementation or convolutions.implementation_for(devices.device_type())


def _compute_dtype(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return tf.bfloat16 if precision == "bfloat16" else tf.float32


def _check_image_size(image_size):
    problem = image_size_problem(image_size)
    if problem:
        raise ValueError(f"image_size: {problem}")


def generator(z, output_dim, reuse=False, training=True, precision="float32",
              implementation=None, stats_momentum=BN_MOMENTUM, image_size=IMAGE_SIZE,
              sync_batch_norm=False):
    """Maps z to a batch of `image_size` x `image_size` images in [-1, 1].

    The layers come from hyperparameters.generator_filters(image_size). At 32: dense -> 4x4x512
    -> BN, ReLU -> deconv 8x8x256 -> BN, ReLU -> deconv 16x16x128 -> BN, ReLU -> deconv
    32x32x`output_dim` -> tanh; at 64 the paper's 4x4x1024 -> 8x8x512 -> ... -> 64x64. All
    deconvolutions 5x5, stride 2, 'SAME'.

    Args:
      z: float tensor [batch, z_dim] with a known z_dim.
      output_dim: number of image channels (3 for SVHN, 1 for MNIST).
      reuse: reuse the variables of an earlier call (a second pass sharing the weights).
      training: batch statistics (and moving-average updates in UPDATE_OPS) if True; the moving
        statistics (inference) if False.
      precision: 'float32' or 'bfloat16' compute; weights and BN statistics stay float32.
      implementation: how the convolutions are computed (convolutions.IMPLEMENTATIONS); None
        picks the one for the device TensorFlow sees. The variables are the same either way.
      stats_momentum: in training mode, the momentum of the moving-statistics updates (0 sets
        them to this batch's statistics).
      image_size: the side of the images (hyperparameters.image_size_problem says which work).
      sync_batch_norm: in training mode under a tf.distribute strategy, normalize with the
        statistics of all replicas' batches together.

    Returns:
      A float32 tensor [batch, image_size, image_size, output_dim] in [-1, 1].

    Raises:
      ValueError: z is not of rank 2 with a known last dimension, output_dim is not a positive
        integer, image_size cannot be built, or precision is unknown.
    """
    _check_positive_int(output_dim, "output_dim")
    _check_image_size(image_size)
    if z.shape.rank != 2 or z.shape[-1] is None:
        raise ValueError(f"z must have shape [batch, z_dim] with a known z_dim, got {z.shape}")
    dtype = _compute_dtype(precision)
    implementation = _implementation(implementation)
    with tf1.variable_scope(GENERATOR_SCOPE, reuse=reuse):
        base_filters, *hidden_filters = generator_filters(image_size)
        x = _dense(tf.cast(z, dtype), BASE_SIDE * BASE_SIDE * base_filters, "dense1",
                   use_bias=False)
        x = tf.reshape(x, [-1, BASE_SIDE, BASE_SIDE, base_filters])
        x = tf.nn.relu(_batch_norm(x, training, "bn1", momentum=stats_momentum,
                                   sync=sync_batch_norm))
        for index, filters in enumerate(hidden_filters, start=2):
            x = _conv2d_transpose(x, filters, f"deconv{index}", implementation, use_bias=False)
            x = tf.nn.relu(_batch_norm(x, training, f"bn{index}", momentum=stats_momentum,
                                       sync=sync_batch_norm))
        logits = _conv2d_transpose(x, output_dim, f"deconv{len(hidden_filters) + 2}",
                                   implementation)
        images = tf.tanh(tf.cast(logits, tf.float32))
    images.shape.assert_is_compatible_with([None, image_size, image_size, output_dim])
    return images


def discriminator(x, reuse=False, alpha=ALPHA, training=True, precision="float32",
                  update_moving_stats=True, implementation=None, sync_batch_norm=False):
    """Scores a batch of images: the probability that each is real, and its logit.

    The layers come from hyperparameters.discriminator_filters of the images' side. At 32: conv
    64 -> leaky ReLU -> conv 128 -> BN, leaky ReLU -> conv 256 -> BN, leaky ReLU -> flatten ->
    dense 1; at 64 a conv 512 more. All convolutions 5x5, stride 2, 'SAME', down to 4x4.

    Args:
      x: float tensor [batch, N, N, channels] in [-1, 1], N a size the networks are built at.
      reuse: reuse the variables of an earlier call.
      alpha: leaky ReLU slope for negative inputs.
      training: batch statistics if True, moving statistics if False.
      precision: 'float32' or 'bfloat16' compute.
      update_moving_stats: in training mode, whether this pass adds its moving-average updates to
        UPDATE_OPS. The training graph lets only the pass over real images update them, so each
        step updates them once, in a fixed order.
      implementation, sync_batch_norm: as in `generator`.

    Returns:
      (probability, logits): two float32 tensors of shape [batch, 1].

    Raises:
      ValueError: x is not [batch, N, N, channels] with known channels and a size N the
        networks are built at, or alpha is negative, or precision is unknown.
    """
    _check_image_shape(x)
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    _, logits = _discriminator_layers(x, reuse, alpha, training, precision, update_moving_stats,
                                      implementation, sync_batch_norm)
    return tf.sigmoid(logits), logits


def _check_image_shape(x):
    """x must be [batch, N, N, channels], channels known, N a size the networks are built at."""
    if x.shape.rank != 4 or x.shape[1] is None or x.shape[1] != x.shape[2] \
            or x.shape[3] is None:
        raise ValueError(f"x must have shape [batch, N, N, channels] with known N and channels, "
                         f"got {x.shape}")
    problem = image_size_problem(x.shape[1])
    if problem:
        raise ValueError(f"x must have shape [batch, N, N, channels] with N a size the networks "
                         f"are built at, got {x.shape}: {problem}")


def _discriminator_layers(x, reuse, alpha, training, precision, update_moving_stats,
                          implementation, sync_batch_norm=False):
    """The discriminator's layers: ([each convolutional layer's output, after leaky ReLU, in the
    compute dtype], float32 logits [batch, 1])."""
    dtype = _compute_dtype(precision)
    implementation = _implementation(implementation)
    activations = []
    with tf1.variable_scope(DISCRIMINATOR_SCOPE, reuse=reuse):
        h = tf.cast(x, dtype)
        for index, filters in enumerate(discriminator_filters(x.shape[1]), start=1):
            batch_norm = index > 1  # no batch norm on the first layer (the paper)
            h = _conv2d(h, filters, f"conv{index}", implementation, use_bias=not batch_norm)
            if batch_norm:
                h = _batch_norm(h, training, f"bn{index}", update_moving_stats,
                                sync=sync_batch_norm)
            h = tf.nn.leaky_relu(h, alpha)
            activations.append(h)
        flat = tf.reshape(h, [-1, h.shape[1] * h.shape[2] * h.shape[3]])
        logits = tf.cast(_dense(flat, 1, "logits"), tf.float32)
    return activations, logits


FEATURE_GRID = 4  # each layer's activations max-pooled to 4x4 (the paper, section 5)


def discriminator_features(x, alpha=ALPHA, precision="float32", implementation=None):
    """The paper's section-5 features: the discriminator in inference mode (moving statistics),
    every convolutional layer's activations max-pooled to a 4x4 grid, flattened, concatenated.

    Args:
      x: float tensor [batch, N, N, channels] in [-1, 1], as in `discriminator`.
      alpha, precision, implementation: as in `discriminator`.

    Returns:
      (features, activations): float32 [batch, 16 x the sum of the layers' filters] (N=32:
      16 * (64 + 128 + 256) = 7,168; N=64: 15,360), and the layers' activations they were
      pooled from.

    Raises:
      ValueError: as `discriminator`.
    """
    _check_image_shape(x)
    activations, _ = _discriminator_layers(x, tf1.AUTO_REUSE, alpha, False, precision, False,
                                           implementation)
    pooled = []
    for h in activations:
        h = tf.cast(h, tf.float32)
        window = h.shape[1] // FEATURE_GRID
        if window > 1:
            h = tf.nn.max_pool2d(h, window, window, "VALID")
        pooled.append(tf.reshape(h, [-1, FEATURE_GRID * FEATURE_GRID * h.shape[-1]]))
    return tf.concat(pooled, axis=1), activations


def sampler(z, output_dim, precision="float32", implementation=None, image_size=IMAGE_SIZE):
    """The generator in inference mode (moving statistics), sharing the trained weights.

    Build it once after the training graph; run it for sample grids and for `generate.py`.
    A sample then depends only on its own z, never on the rest of the batch.
    """
    return generator(z, output_dim, reuse=tf1.AUTO_REUSE, training=False, precision=precision,
                     implementation=implementation, image_size=image_size)


# A Sampler: run `samples` feeding `z` ([batch, z_dim]). An averaged generator's also has
# `refresh_stats`, to run first feeding `stats_z`: it sets the batch-norm statistics (None
# otherwise). `variables`: what a checkpoint must hold to restore it.
Sampler = collections.namedtuple("Sampler", "z samples z_dim refresh_stats stats_z variables")


def build_sampler(output_dim, z_dim=Z_DIM, precision="float32", implementation=None,
                  averaged=False, image_size=IMAGE_SIZE):
    """A graph of a sampler alone, for generating from a checkpoint: the trained generator, or
    with `averaged` the run's averaged generator (see build_model's g_ema_decay)."""
    _check_positive_int(z_dim, "z_dim")
    z = tf1.placeholder(tf.float32, [None, z_dim], name="z")
    if averaged:
        return _averaged_sampler(z, output_dim, precision, implementation, image_size)
    samples = sampler(z, output_dim, precision, implementation, image_size)
    return Sampler(z, samples, z_dim, None, None, tf1.global_variables(GENERATOR_SCOPE + "/"))


# --- The averaged generator (opt-in; not in the paper) ---------------------------------------
# Yazici et al. 2019: sampling from an exponential moving average of the generator's weights
# gives better samples from the same training. The average is a second generator under this
# scope (g_ema/generator/...); its batch-norm statistics are recomputed for its own weights
# before each use ("standing statistics", as in BigGAN), since the moving statistics were
# gathered with the raw weights.
AVERAGE_SCOPE = "g_ema"
STANDING_STATS_BATCH = 256  # z per recomputation of the averaged generator's statistics


def _first_replica_aggregation(next_creator, **kwargs):
    """The averaged generator's variables take the first replica's update under a strategy:
    every replica's trained weights, and so its update, are the same."""
    kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    return next_creator(**kwargs)


def _averaged_generator(z, output_dim, training, precision, implementation, image_size,
                        stats_momentum=0.0):
    with tf1.variable_scope(AVERAGE_SCOPE, reuse=tf1.AUTO_REUSE), \
            tf.variable_creator_scope(_first_replica_aggregation):
        images = generator(z, output_dim, reuse=tf1.AUTO_REUSE, training=training,
                           precision=precision, implementation=implementation,
                           stats_momentum=stats_momentum, image_size=image_size)
    # The copy is not trained: keep it out of the trainable collection.
    trainable = tf1.get_collection_ref(tf1.GraphKeys.TRAINABLE_VARIABLES)
    trainable[:] = [v for v in trainable if not v.op.name.startswith(AVERAGE_SCOPE + "/")]
    return images


def _averaged_sampler(z, output_dim, precision, implementation, image_size):
    """The averaged generator in inference mode, and the op that sets its statistics from a
    batch of `stats_z` (momentum 0: the statistics of that batch)."""
    stats_z = tf1.placeholder(tf.float32, [None, z.shape[-1]], name="stats_z")
    with _recorded_updates() as updates:
        _averaged_generator(stats_z, output_dim, True, precision, implementation, image_size)
    refresh = tf.group(*updates, name="refresh_averaged_stats")
    samples = _averaged_generator(z, output_dim, False, precision, implementation, image_size)
    return Sampler(z, samples, z.shape[-1], refresh, stats_z,
                   [v for v in tf1.global_variables(AVERAGE_SCOPE + "/") if not _is_standing(v)])


def _is_standing(variable):
    """The averaged generator's batch-norm statistics: recomputed before each use, so neither
    saved nor restored (a checkpoint then does not depend on when they were last computed)."""
    return variable.op.name.startswith(AVERAGE_SCOPE + "/") and "/moving_" in variable.op.name


def checkpointed_variables():
    """The variables a training checkpoint holds: all but the averaged generator's statistics."""
    return [v for v in tf1.global_variables() if not _is_standing(v)]


def _average_pairs():
    """(averaged copy, trained variable) for each trainable generator variable."""
    averaged = {v.op.name: v for v in tf1.global_variables(AVERAGE_SCOPE + "/")}
    return [(averaged[f"{AVERAGE_SCOPE}/{v.op.name}"], v)
            for v in _trainable_variables(GENERATOR_SCOPE)]


def _update_average(decay, after):
    """w_avg <- decay * w_avg + (1 - decay) * w for every trained generator weight, reading the
    weights `after` has written."""
    with tf.control_dependencies([after]):
        return tf.group(*[tf1.assign_sub(average, (1.0 - decay) * (average - variable))
                          for average, variable in _average_pairs()], name="update_average")


def prepare_sampler(sess, sampler, seed=0):
    """Makes `sampler` ready to run: an averaged generator gets batch-norm statistics for its
    current weights, from STANDING_STATS_BATCH z drawn with `seed` (deterministic)."""
    if sampler.refresh_stats is not None:
        stats_z = draw_z(np.random.default_rng([seed, 5]), STANDING_STATS_BATCH, sampler.z_dim)
        sess.run(sampler.refresh_stats, {sampler.stats_z: stats_z})


def draw_z(rng, count, z_dim):
    """count vectors z ~ U(-1, 1)^z_dim from a numpy Generator, as float32."""
    return rng.uniform(-1.0, 1.0, (count, z_dim)).astype(np.float32)


def generate_images(sess, sampler, num, rng, batch_size=500):
    """Runs a prepared Sampler on `num` z drawn from rng; returns float32 (num, N, N, C) in
    [-1, 1]."""
    return run_sampler(sess, sampler, draw_z(rng, num, sampler.z_dim), batch_size)


def run_sampler(sess, sampler, z, batch_size=500):
    """Runs a prepared Sampler on the given z, batch_size at a time (bounded memory for any
    count); returns float32 (len(z), N, N, C) in [-1, 1]."""
    return np.concatenate([sess.run(sampler.samples, {sampler.z: z[start:start + batch_size]})
                           for start in range(0, len(z), batch_size)])


def step_z(seed, step, batch_size, z_dim):
    """The z of one training step, a function of (seed, step) alone, so a resumed run draws the
    same z as an uninterrupted one."""
    return draw_z(np.random.default_rng([seed, 2, step]), batch_size, z_dim)


def step_feed(model, images, indices, seed, step, worker=0, workers=1):
    """The feed of one training step: a uint8 batch (scaled in the graph) and its z.

    uint8 is a quarter of float32's bytes to copy; gathering and drawing z take well under a
    millisecond against hundreds for the step, so no input pipeline is needed. With several
    `workers`, each feeds its own share of the global batch `indices` and of its z (worker k the
    k-th), so together they train on exactly what one process would, and each reads only its
    own rows of the images.
    """
    share = len(indices) // workers
    rows = slice(worker * share, (worker + 1) * share)
    return {model.real_images: images[indices[rows]],
            model.z: step_z(seed, step, len(indices), model.z_dim)[rows]}


def scale_pixels(images):
    """uint8 pixels 0..255 -> float32 [-1, 1] inside the graph (data.scale's formula)."""
    return tf.cast(images, tf.float32) / data.PIXEL_HALF_RANGE - 1.0


# --- Losses and optimizers -------------------------------------------------------------------
def _xent(logits, label):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        logits=logits, labels=tf.fill(tf.shape(logits), label)))


def _check_smooth(smooth):
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth!r}")


def discriminator_loss(real_logits, fake_logits, smooth=SMOOTH):
    """Sigmoid cross-entropy with real labels 1 - smooth (one-sided smoothing), fake labels 0."""
    _check_smooth(smooth)
    return _xent(real_logits, 1.0 - smooth) + _xent(fake_logits, 0.0)


def generator_loss(fake_logits):
    """The non-saturating generator loss: sigmoid cross-entropy of D(G(z)) against label 1."""
    return _xent(fake_logits, 1.0)


ModelLoss = collections.namedtuple("ModelLoss", "d_loss g_loss d_real d_fake fake_images")


def model_loss(input_real, input_z, output_dim, alpha=ALPHA, smooth=SMOOTH, precision="float32"):
    """The blog post's losses: D and G sigmoid cross-entropy with one-sided label smoothing.

    Args:
      input_real: float tensor [batch, N, N, output_dim] of real images in [-1, 1]; the
        generator is built for its size N.
      input_z: float tensor [batch, z_dim].
      output_dim: image channels.
      alpha: leaky ReLU slope of the discriminator.
      smooth: real labels are 1 - smooth; must be in [0, 1).
      precision: 'float32' or 'bfloat16' compute.

    Returns:
      ModelLoss(d_loss, g_loss, d_real, d_fake, fake_images): the two scalar losses, mean D(x) and
      mean D(G(z)) for logging, and the generated batch.

    Raises:
      ValueError: smooth outside [0, 1), or any shape error of the networks.
    """
    _check_smooth(smooth)
    _check_channels(input_real, output_dim)
    fake = generator(input_z, output_dim, training=True, precision=precision,
                     image_size=input_real.shape[1])
    real_prob, real_logits = discriminator(input_real, alpha=alpha, precision=precision)
    fake_prob, fake_logits = discriminator(fake, reuse=True, alpha=alpha, precision=precision,
                                           update_moving_stats=False)
    return ModelLoss(discriminator_loss(real_logits, fake_logits, smooth),
                     generator_loss(fake_logits),
                     tf.reduce_mean(real_prob), tf.reduce_mean(fake_prob), fake)


def _check_channels(images, output_dim):
    if images.shape.rank != 4 or images.shape[-1] != output_dim:
        raise ValueError(f"real images must have shape [batch, N, N, {output_dim}], got "
                         f"{images.shape}")
    _check_image_shape(images)


def _trainable_variables(scope):
    return tf1.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES, scope=scope + "/")


def _moving_stat_updates(scope):
    """The batch-norm moving-average updates of the first pass built under `scope` (a reused
    pass gets the name scope `scope`_1, ...)."""
    return tf1.get_collection(tf1.GraphKeys.UPDATE_OPS, scope=scope + "/")


def _adam(learning_rate, beta1, name):
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"beta1 must be in [0, 1), got {beta1!r}")
    return tf1.train.AdamOptimizer(learning_rate, beta1=beta1, name=name)


def model_optimizers(d_loss, g_loss, learning_rate=LEARNING_RATE, beta1=BETA1):
    """Two Adam optimizers, each over exactly its own network's variables.

    Each update runs its network's batch-norm moving-average updates (from UPDATE_OPS) as control
    dependencies. This is the two-`sess.run` formulation of the blog post; `build_model` builds
    the same computation as one op.

    Args:
      d_loss, g_loss: the scalar losses of `model_loss`.
      learning_rate, beta1: Adam settings shared by both optimizers.

    Returns:
      (d_train_opt, g_train_opt): the two update ops.

    Raises:
      ValueError: learning_rate <= 0 or beta1 outside [0, 1).
    """
    d_vars = _trainable_variables(DISCRIMINATOR_SCOPE)
    g_vars = _trainable_variables(GENERATOR_SCOPE)
    d_optimizer = _adam(learning_rate, beta1, "d_adam")
    g_optimizer = _adam(learning_rate, beta1, "g_adam")
    with tf.control_dependencies(_moving_stat_updates(DISCRIMINATOR_SCOPE)):
        d_train_opt = d_optimizer.minimize(d_loss, var_list=d_vars)
    with tf.control_dependencies(_moving_stat_updates(GENERATOR_SCOPE)):
        g_train_opt = g_optimizer.minimize(g_loss, var_list=g_vars)
    return d_train_opt, g_train_opt


# --- The training step as one op -------------------------------------------------------------
Model = collections.namedtuple(
    "Model", "real_images z train_step d_loss g_loss d_real d_fake global_step output_dim "
             "z_dim precision implementation sampler averaged start_average image_size "
             "replicas")


def build_model(output_dim, *, z_dim=Z_DIM, g_steps=G_STEPS, learning_rate=LEARNING_RATE,
                beta1=BETA1, alpha=ALPHA, smooth=SMOOTH, precision="float32",
                implementation=None, g_ema_decay=0.0, image_size=IMAGE_SIZE, strategy=None,
                sync_batch_norm=False):
    """Builds the whole training graph: placeholders, one fused training op, and the sampler.

    One run of `train_step` is exactly what the blog post's two `sess.run` calls per batch do
    (one D update, then `g_steps` G updates on the same z), with two savings that change no
    number: the G forward pass of the D update is reused by the first G update (same z, same G
    weights), and the D update, the G updates and the step counter run in one session call.
    Each G update reads the weights the D update wrote: the layers of the G updates are built
    under a control dependency on it, and resource variables read after their dependencies.

    Under a tf.distribute `strategy` the step is the same, run by every replica on its slice of
    the batch fed to this process (`_replicated_step`); the strategy sums the replicas' gradients
    and keeps every copy of every variable the same.

    Args:
      output_dim: image channels.
      z_dim: size of z.
      g_steps: generator updates per discriminator update (>= 1).
      learning_rate, beta1: Adam settings of both optimizers.
      alpha: leaky ReLU slope of the discriminator.
      smooth: one-sided label smoothing of the real labels.
      precision: 'float32' or 'bfloat16' compute (weights, BN statistics and losses stay float32).
      implementation: how the convolutions are computed (convolutions.IMPLEMENTATIONS); None
        picks the one for the device TensorFlow sees.
      g_ema_decay: if > 0, after each G update the step also updates an averaged copy of the
        generator's weights, w_avg <- decay w_avg + (1 - decay) w (not in the paper; opt-in).
      image_size: the side N of the images both networks are built for
        (hyperparameters.generator_filters and discriminator_filters).
      strategy: None (one device: the graph above, nothing distributed), or a
        tf.compat.v1.distribute strategy (MirroredStrategy, MultiWorkerMirroredStrategy) whose
        scope the model is built in; the batch fed must divide by its local replicas.
      sync_batch_norm: with a strategy, batch norm in training mode uses the statistics of all
        replicas' batches together (so N replicas at B/N compute what one device does at B).

    Returns:
      A Model: `real_images` (uint8 placeholder [batch, N, N, output_dim], scaled to [-1, 1] in
      the graph) and `z` (float32 placeholder [batch, z_dim]) to feed; `train_step` to run;
      `d_loss` (before the D update), `g_loss` (of the first G update, against the updated D),
      mean D(x) `d_real` and mean D(G(z)) `d_fake` to log (means over all replicas); `sampler`,
      the inference-mode generator on `z` (a Sampler); the int64 `global_step` (batches
      trained); the settings it was built with; with g_ema_decay, `averaged` (the averaged
      generator's Sampler) and `start_average` (copies the weights into the average: run it once
      after initialising), else None for both; `replicas`, the replicas in sync (1 without a
      strategy).

    Raises:
      ValueError: any argument out of range.
    """
    _check_positive_int(output_dim, "output_dim")
    _check_positive_int(z_dim, "z_dim")
    _check_positive_int(g_steps, "g_steps")
    _check_smooth(smooth)
    if not 0.0 <= g_ema_decay < 1.0:
        raise ValueError(f"g_ema_decay must be in [0, 1), got {g_ema_decay!r}")
    if sync_batch_norm and strategy is None:
        raise ValueError("sync_batch_norm needs a strategy: one device has nothing to sync")
    _check_image_size(image_size)
    implementation = _implementation(implementation)
    settings = _StepSettings(output_dim, g_steps, alpha, smooth, g_ema_decay,
                             dict(precision=precision, implementation=implementation,
                                  sync_batch_norm=sync_batch_norm), image_size)
    optimizers = (_adam(learning_rate, beta1, "d_adam"), _adam(learning_rate, beta1, "g_adam"))
    real_images = tf1.placeholder(tf.uint8, [None, image_size, image_size, output_dim],
                                  name="real_images")
    z = tf1.placeholder(tf.float32, [None, z_dim], name="z")
    global_step = tf1.train.get_or_create_global_step()
    if strategy is None:
        step = _training_step(scale_pixels(real_images), z, settings, optimizers)
        last_update, replicas = step.last_update, 1
    else:
        with strategy.scope():
            step = _replicated_step(strategy, real_images, z, settings, optimizers)
        last_update, replicas = step.last_update, strategy.num_replicas_in_sync
    with tf.control_dependencies([last_update]):
        train_step = tf1.assign_add(global_step, 1, name="train_step")

    generates = dict(precision=precision, implementation=implementation, image_size=image_size)
    samples = sampler(z, output_dim, **generates)
    averaged = step.averaged
    start_average = tf.group(*[average.assign(variable) for average, variable in _average_pairs()],
                             name="start_average") if averaged else None
    return Model(real_images, z, train_step, step.d_loss, step.g_loss, step.d_real, step.d_fake,
                 global_step, output_dim, z_dim, precision, implementation,
                 Sampler(z, samples, z_dim, None, None, step.g_vars), averaged, start_average,
                 image_size, replicas)


# What one replica's step is built from: the settings, and (d_optimizer, g_optimizer).
_StepSettings = collections.namedtuple(
    "_StepSettings", "output_dim g_steps alpha smooth g_ema_decay networks image_size")
# A built step: the op that ends it, the losses and mean D(x), D(G(z)) to log, the averaged
# generator's Sampler (or None) and the generator's trainable variables.
_Step = collections.namedtuple("_Step", "last_update d_loss g_loss d_real d_fake averaged g_vars")


def _training_step(real, z, settings, optimizers, loss_scale=1.0, build_averaged=None):
    """One D update then g_steps G updates on (real, z), built in this thread; see build_model.

    `loss_scale` multiplies the losses the optimizers minimize (not those logged): under a
    strategy it is 1 / replicas, since the strategy sums the replicas' gradients. With
    settings.g_ema_decay, `build_averaged()` builds the averaged generator's Sampler after the
    first G update (by default, here, for z).
    """
    d_optimizer, g_optimizer = optimizers
    networks, output_dim = settings.networks, settings.output_dim
    generates = dict(networks, image_size=settings.image_size)
    scaled = (lambda loss: loss) if loss_scale == 1.0 else (lambda loss: loss * loss_scale)

    # (1) Update D: maximize log D(x) + log(1 - D(G(z))).
    with _recorded_updates() as g_stat_updates:
        fake = generator(z, output_dim, training=True, **generates)
    with _recorded_updates() as d_stat_updates:
        real_prob, real_logits = discriminator(real, alpha=settings.alpha, **networks)
    fake_prob, fake_logits = discriminator(fake, reuse=True, alpha=settings.alpha,
                                           update_moving_stats=False, **networks)
    d_loss = discriminator_loss(real_logits, fake_logits, settings.smooth)
    d_real, d_fake = tf.reduce_mean(real_prob), tf.reduce_mean(fake_prob)
    g_vars = _trainable_variables(GENERATOR_SCOPE)
    with tf.control_dependencies(d_stat_updates):
        last_update = d_optimizer.minimize(scaled(d_loss), var_list=_trainable_variables(
            DISCRIMINATOR_SCOPE))

    # (2) Update G, g_steps times: maximize log D(G(z)) against the updated D.
    build_averaged = build_averaged or (lambda: _step_averaged_sampler(z, settings))
    g_losses, averaged = [], None
    for index in range(settings.g_steps):
        with tf.control_dependencies([last_update]):
            if index > 0:  # G changed in the previous update: its forward pass is new
                with _recorded_updates() as g_stat_updates:
                    fake = generator(z, output_dim, reuse=True, training=True, **generates)
            _, fake_logits_after = discriminator(fake, reuse=True, alpha=settings.alpha,
                                                 update_moving_stats=False, **networks)
            g_losses.append(generator_loss(fake_logits_after))
        with tf.control_dependencies([last_update] + g_stat_updates):
            last_update = g_optimizer.minimize(scaled(g_losses[-1]), var_list=g_vars)
        if settings.g_ema_decay:
            if index == 0:  # the averaged generator's variables, once
                averaged = build_averaged()
            last_update = _update_average(settings.g_ema_decay, last_update)
    return _Step(last_update, d_loss, g_losses[0], d_real, d_fake, averaged, g_vars)


def _step_averaged_sampler(z, settings):
    """The averaged generator's Sampler on `z`, built with the step's settings."""
    return _averaged_sampler(z, settings.output_dim, settings.networks["precision"],
                             settings.networks["implementation"], settings.image_size)


def _replica_loss_scale(strategy):
    """What each replica's losses are multiplied by: the strategy sums their gradients."""
    return 1.0 / strategy.num_replicas_in_sync


def _replicated_step(strategy, real_images, z, settings, optimizers):
    """The step run by every replica of `strategy` on its slice of the batch fed here.

    Each replica's losses are divided by the number of replicas in sync: the v1 optimizers sum
    the replicas' gradients, so undivided, N replicas would step N times too far. The logged
    numbers are the means over all replicas (on every worker). Nothing here writes summaries:
    they do not work inside the replica function (TensorFlow #44352).
    """
    local_replicas = len(strategy.extended.worker_devices)
    loss_scale = _replica_loss_scale(strategy)
    averaged = []

    def build_averaged():
        """The averaged generator, once for all replicas, outside them (merge_call), where the
        one-device graph builds it: its sampler is the whole model's, on the whole z."""
        def build(_):
            if not averaged:
                averaged.append(_step_averaged_sampler(z, settings))
        tf.distribute.get_replica_context().merge_call(build)
        return averaged[0]

    def replica_step():
        context = tf.distribute.get_replica_context()
        # Replica ids run worker by worker (worker k holds k L ... k L + L - 1 of L each), so
        # the id modulo L is the replica's place on this worker, and in the batch fed here.
        local = context.replica_id_in_sync_group % local_replicas
        share = tf.shape(real_images)[0] // local_replicas
        rows = slice(local * share, (local + 1) * share)
        step = _training_step(scale_pixels(real_images[rows]), z[rows], settings, optimizers,
                              loss_scale, build_averaged)
        return step.last_update, step.d_loss, step.g_loss, step.d_real, step.d_fake

    # do_not_convert: the function builds graph ops once; AutoGraph has nothing to convert.
    updates, *logged = strategy.extended.call_for_each_replica(
        tf.autograph.experimental.do_not_convert(replica_step))
    means = [strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for value in logged]
    return _Step(strategy.group(updates), *means, averaged[0] if averaged else None,
                 _trainable_variables(GENERATOR_SCOPE))


def session_config(intra_op_threads=0, inter_op_threads=0, cpu_devices=1):
    """The session settings every training, benchmark and sampling session uses.

    Grappler's remapper is switched off: on this graph it tries to fuse conv + bias + leaky ReLU
    although the leaky ReLU's gradient reads the bias output, fails with an error in the log, and
    then applies nothing, so turning it off loses no speed (measured: bench.py) and no log line.
    0 threads means TensorFlow's choice (one per core). `cpu_devices` > 1 gives the session that
    many CPU devices (a ConfigProto, unlike the default session, ignores the logical devices of
    tf.config), for several replicas on a machine without GPUs.
    """
    config = tf1.ConfigProto(intra_op_parallelism_threads=intra_op_threads,
                             inter_op_parallelism_threads=inter_op_threads,
                             allow_soft_placement=True)
    if cpu_devices > 1:
        config.device_count["CPU"] = cpu_devices
    config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    return config
