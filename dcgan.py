"""The DCGAN (Radford, Metz & Chintala, 2015): generator, discriminator, the paired losses with
one-sided label smoothing, and the two Adams. The first file to read.

TensorFlow 1.x graph mode through `tf.compat.v1`, eager execution off. The layers are
`get_variable` + `tf.nn` ops (machinery/layers.py: Keras 3, bundled with TF 2.16+, removed
`tf.compat.v1.layers`), so checkpoints name `generator/deconv2/kernel`,
`discriminator/bn3/moving_mean`, and so on. Every number of the paper and of the blog post this
project follows is a named value in machinery/hyperparameters.py; one rule there sizes both
networks at every image size (32: the blog post's; 64: the paper's Figure 1).

`model_loss` and `model_optimizers` are the blog post's formulation, two session calls per batch.
Training runs the same computation fused into one op (machinery/training_step.py), and
tests/test_training_step.py checks that the fused step trains what these two train: they are the
reference. No file I/O and no flags live here.
"""
import collections

import tensorflow as tf

from machinery import layers
from machinery.hyperparameters import (ALPHA, BASE_SIDE, BETA1, BN_MOMENTUM, IMAGE_SIZE,
                                       INIT_STDDEV, LEARNING_RATE, SMOOTH,
                                       discriminator_filters, generator_filters,
                                       image_size_problem)

tf1 = tf.compat.v1
tf1.disable_eager_execution()

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"


# --- Checks, at graph-construction time ------------------------------------------------------
def check_positive_int(value, name):
    """Raises ValueError unless `value` is an int > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_image_size(image_size):
    """Raises ValueError unless the networks can be built at `image_size` x `image_size`."""
    problem = image_size_problem(image_size)
    if problem:
        raise ValueError(f"image_size: {problem}")


def check_smooth(smooth):
    """Raises ValueError unless the label smoothing is in [0, 1)."""
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth!r}")


# --- The networks ----------------------------------------------------------------------------
def generator(z, output_dim, reuse=False, training=True, precision="float32",
              implementation=None, stats_momentum=BN_MOMENTUM, image_size=IMAGE_SIZE,
              sync_batch_norm=False, labels=None, num_classes=None):
    """Maps z (and, conditional, a class) to a batch of `image_size` x `image_size` images in
    [-1, 1].

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
      implementation: how the convolutions are computed (machinery/convolutions.py); None
        picks the one for the device TensorFlow sees. The variables are the same either way.
      stats_momentum: in training mode, the momentum of the moving-statistics updates (0 sets
        them to this batch's statistics).
      image_size: the side of the images (hyperparameters.image_size_problem says which work).
      sync_batch_norm: in training mode under a tf.distribute strategy, normalize with the
        statistics of all replicas' batches together.
      labels, num_classes: a conditional generator's int32 classes [batch], of `num_classes`:
        z is joined with the class as one-hot (num_classes values).

    Returns:
      A float32 tensor [batch, image_size, image_size, output_dim] in [-1, 1].

    Raises:
      ValueError: z is not of rank 2 with a known last dimension, output_dim is not a positive
        integer, image_size cannot be built, precision is unknown, or labels come without a
        positive num_classes.
    """
    check_positive_int(output_dim, "output_dim")
    check_image_size(image_size)
    if z.shape.rank != 2 or z.shape[-1] is None:
        raise ValueError(f"z must have shape [batch, z_dim] with a known z_dim, got {z.shape}")
    dtype = layers.compute_dtype(precision)
    implementation = layers.convolution_implementation(implementation)
    _check_labels(labels, num_classes)
    with tf1.variable_scope(GENERATOR_SCOPE, reuse=reuse):
        base_filters, *hidden_filters = generator_filters(image_size)
        x = tf.cast(z, dtype)
        if labels is not None:
            x = tf.concat([x, tf.one_hot(labels, num_classes, dtype=dtype)], 1)
        x = layers.dense(x, BASE_SIDE * BASE_SIDE * base_filters, "dense1", use_bias=False)
        x = tf.reshape(x, [-1, BASE_SIDE, BASE_SIDE, base_filters])
        x = tf.nn.relu(layers.batch_norm(x, training, "bn1", momentum=stats_momentum,
                                         sync=sync_batch_norm))
        for index, filters in enumerate(hidden_filters, start=2):
            x = layers.conv2d_transpose(x, filters, f"deconv{index}", implementation,
                                        use_bias=False)
            x = tf.nn.relu(layers.batch_norm(x, training, f"bn{index}",
                                             momentum=stats_momentum, sync=sync_batch_norm))
        logits = layers.conv2d_transpose(x, output_dim, f"deconv{len(hidden_filters) + 2}",
                                         implementation)
        images = tf.tanh(tf.cast(logits, tf.float32))
    images.shape.assert_is_compatible_with([None, image_size, image_size, output_dim])
    return images


def discriminator(x, reuse=False, alpha=ALPHA, training=True, precision="float32",
                  update_moving_stats=True, implementation=None, sync_batch_norm=False,
                  labels=None, num_classes=None):
    """Scores a batch of images (and, conditional, their classes): the probability that each is
    real, and its logit.

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
      labels, num_classes: a conditional discriminator's classes of the images: a projection
        discriminator (Miyato & Koyama 2018), whose logit gains <V[label], phi(x)>, phi(x) the
        flattened last features and V a learned [num_classes, |phi|] table.

    Returns:
      (probability, logits): two float32 tensors of shape [batch, 1].

    Raises:
      ValueError: x is not [batch, N, N, channels] with known channels and a size N the
        networks are built at, or alpha is negative, or precision is unknown.
    """
    _check_image_shape(x)
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    _check_labels(labels, num_classes)
    _, logits = _discriminator_layers(x, reuse, alpha, training, precision, update_moving_stats,
                                      implementation, sync_batch_norm, labels, num_classes)
    return tf.sigmoid(logits), logits


def _check_labels(labels, num_classes):
    if labels is not None:
        check_positive_int(num_classes, "num_classes")


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
                          implementation, sync_batch_norm=False, labels=None, num_classes=None):
    """The discriminator's layers: ([each convolutional layer's output, after leaky ReLU, in the
    compute dtype], float32 logits [batch, 1])."""
    dtype = layers.compute_dtype(precision)
    implementation = layers.convolution_implementation(implementation)
    activations = []
    with tf1.variable_scope(DISCRIMINATOR_SCOPE, reuse=reuse):
        h = tf.cast(x, dtype)
        for index, filters in enumerate(discriminator_filters(x.shape[1]), start=1):
            batch_norm = index > 1  # no batch norm on the first layer (the paper)
            h = layers.conv2d(h, filters, f"conv{index}", implementation, use_bias=not batch_norm)
            if batch_norm:
                h = layers.batch_norm(h, training, f"bn{index}", update_moving_stats,
                                      sync=sync_batch_norm)
            h = tf.nn.leaky_relu(h, alpha)
            activations.append(h)
        flat = tf.reshape(h, [-1, h.shape[1] * h.shape[2] * h.shape[3]])
        logits = tf.cast(layers.dense(flat, 1, "logits"), tf.float32)
        if labels is not None:  # the projection: the class's vector against the features
            projection = layers.class_embedding(labels, num_classes, flat.shape[-1],
                                                "projection", INIT_STDDEV)
            logits += tf.reduce_sum(projection * tf.cast(flat, tf.float32), 1, keepdims=True)
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


def sampler(z, output_dim, precision="float32", implementation=None, image_size=IMAGE_SIZE,
            labels=None, num_classes=None):
    """The generator in inference mode (moving statistics), sharing the trained weights.

    Build it once after the training graph; run it for sample grids and for `generate.py`.
    A sample then depends only on its own z (and class), never on the rest of the batch.
    """
    return generator(z, output_dim, reuse=tf1.AUTO_REUSE, training=False, precision=precision,
                     implementation=implementation, image_size=image_size, labels=labels,
                     num_classes=num_classes)


# --- Losses and optimizers: the blog post's reference ------------------------------------------
def _xent(logits, label):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        logits=logits, labels=tf.fill(tf.shape(logits), label)))


def discriminator_loss(real_logits, fake_logits, smooth=SMOOTH):
    """Sigmoid cross-entropy with real labels 1 - smooth (one-sided smoothing), fake labels 0."""
    check_smooth(smooth)
    return _xent(real_logits, 1.0 - smooth) + _xent(fake_logits, 0.0)


def generator_loss(fake_logits):
    """The non-saturating generator loss: sigmoid cross-entropy of D(G(z)) against label 1."""
    return _xent(fake_logits, 1.0)


ModelLoss = collections.namedtuple("ModelLoss", "d_loss g_loss d_real d_fake fake_images")


def model_loss(input_real, input_z, output_dim, alpha=ALPHA, smooth=SMOOTH, precision="float32",
               real_labels=None, fake_labels=None, num_classes=None):
    """The blog post's losses: D and G sigmoid cross-entropy with one-sided label smoothing.

    Args:
      input_real: float tensor [batch, N, N, output_dim] of real images in [-1, 1]; the
        generator is built for its size N.
      input_z: float tensor [batch, z_dim].
      output_dim: image channels.
      alpha: leaky ReLU slope of the discriminator.
      smooth: real labels are 1 - smooth; must be in [0, 1).
      precision: 'float32' or 'bfloat16' compute.
      real_labels, fake_labels, num_classes: a conditional DCGAN's classes of the real images
        and of those to generate (int32 [batch]), of `num_classes`; the losses are the same.

    Returns:
      ModelLoss(d_loss, g_loss, d_real, d_fake, fake_images): the two scalar losses, mean D(x) and
      mean D(G(z)) for logging, and the generated batch.

    Raises:
      ValueError: smooth outside [0, 1), or any shape error of the networks.
    """
    check_smooth(smooth)
    _check_channels(input_real, output_dim)
    fake = generator(input_z, output_dim, training=True, precision=precision,
                     image_size=input_real.shape[1], labels=fake_labels, num_classes=num_classes)
    real_prob, real_logits = discriminator(input_real, alpha=alpha, precision=precision,
                                           labels=real_labels, num_classes=num_classes)
    fake_prob, fake_logits = discriminator(fake, reuse=True, alpha=alpha, precision=precision,
                                           update_moving_stats=False, labels=fake_labels,
                                           num_classes=num_classes)
    return ModelLoss(discriminator_loss(real_logits, fake_logits, smooth),
                     generator_loss(fake_logits),
                     tf.reduce_mean(real_prob), tf.reduce_mean(fake_prob), fake)


def _check_channels(images, output_dim):
    if images.shape.rank != 4 or images.shape[-1] != output_dim:
        raise ValueError(f"real images must have shape [batch, N, N, {output_dim}], got "
                         f"{images.shape}")
    _check_image_shape(images)


def trainable_variables(scope):
    """The trainable variables of one network (GENERATOR_SCOPE or DISCRIMINATOR_SCOPE)."""
    return tf1.get_collection(tf1.GraphKeys.TRAINABLE_VARIABLES, scope=scope + "/")


def _moving_stat_updates(scope):
    """The batch-norm moving-average updates of the first pass built under `scope` (a reused
    pass gets the name scope `scope`_1, ...)."""
    return tf1.get_collection(tf1.GraphKeys.UPDATE_OPS, scope=scope + "/")


def adam(learning_rate, beta1, name):
    """An Adam optimizer (the paper's: lr 2e-4, beta1 0.5), learning rate and beta1 checked."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"beta1 must be in [0, 1), got {beta1!r}")
    return tf1.train.AdamOptimizer(learning_rate, beta1=beta1, name=name)


def model_optimizers(d_loss, g_loss, learning_rate=LEARNING_RATE, beta1=BETA1):
    """Two Adam optimizers, each over exactly its own network's variables.

    Each update runs its network's batch-norm moving-average updates (from UPDATE_OPS) as control
    dependencies. This is the two-`sess.run` formulation of the blog post, the reference
    training_step.build_model's fused op is checked against.

    Args:
      d_loss, g_loss: the scalar losses of `model_loss`.
      learning_rate, beta1: Adam settings shared by both optimizers.

    Returns:
      (d_train_opt, g_train_opt): the two update ops.

    Raises:
      ValueError: learning_rate <= 0 or beta1 outside [0, 1).
    """
    d_vars = trainable_variables(DISCRIMINATOR_SCOPE)
    g_vars = trainable_variables(GENERATOR_SCOPE)
    d_optimizer = adam(learning_rate, beta1, "d_adam")
    g_optimizer = adam(learning_rate, beta1, "g_adam")
    with tf.control_dependencies(_moving_stat_updates(DISCRIMINATOR_SCOPE)):
        d_train_opt = d_optimizer.minimize(d_loss, var_list=d_vars)
    with tf.control_dependencies(_moving_stat_updates(GENERATOR_SCOPE)):
        g_train_opt = g_optimizer.minimize(g_loss, var_list=g_vars)
    return d_train_opt, g_train_opt
