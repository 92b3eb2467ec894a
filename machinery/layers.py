"""The DCGAN's layers: weights, dense, convolutions and batch norm, as `get_variable` + `tf.nn`.

TensorFlow 1.x graph mode through `tf.compat.v1`; no Keras: Keras 3 (bundled with TF 2.16+)
removed `tf.compat.v1.layers`, so every layer here is a few `tf.compat.v1.get_variable` calls
under a `variable_scope` plus a `tf.nn` op, and checkpoint names read `generator/deconv2/kernel`,
`discriminator/bn3/moving_mean`, and so on. How a convolution is computed is convolutions.py's
business; the variables are the same either way.

Batch norm keeps float32 parameters and statistics whatever the compute precision, adds its
moving-statistics updates to UPDATE_OPS (the TF1 convention), and under a tf.distribute strategy
can normalize with the statistics of every replica's batch together (synchronized batch norm).
"""
import contextlib
import threading

import tensorflow as tf

from machinery import convolutions, devices
from machinery.hyperparameters import (BN_EPSILON, BN_MOMENTUM, INIT_STDDEV, KERNEL_SIZE,
                                       PRECISIONS, STRIDE)

tf1 = tf.compat.v1
tf1.disable_eager_execution()


def compute_dtype(precision):
    """The dtype the layers compute in: float32, or bfloat16 (weights stay float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return tf.bfloat16 if precision == "bfloat16" else tf.float32


def convolution_implementation(implementation):
    """`implementation`, or if None the one for the device TensorFlow sees."""
    return implementation or convolutions.implementation_for(devices.device_type())


def _weight(name, shape, dtype):
    """A float32 master weight ~ N(0, INIT_STDDEV), read (and cast) at the point of use.

    The read op is created where the layer is built, so a layer built under a control dependency
    reads the value the variable has after that dependency ran (resource variables guarantee it).
    """
    var = tf1.get_variable(name, shape, tf.float32,
                           initializer=tf1.random_normal_initializer(0.0, INIT_STDDEV))
    return tf.cast(var, dtype) if dtype != tf.float32 else var


def _bias(name, size, dtype):
    var = tf1.get_variable(name, [size], tf.float32, initializer=tf1.zeros_initializer())
    return tf.cast(var, dtype) if dtype != tf.float32 else var


# A layer followed by batch norm has no bias (use_bias=False): batch norm subtracts the mean, so
# such a bias has an exactly zero gradient, and Adam, which divides by the gradient's RMS, turns
# that gradient's round-off noise into steps as large as the learning rate. Batch norm's beta is
# the bias. The paper's reference code and PyTorch's DCGAN example do the same.
def dense(x, units, name, use_bias=True):
    """x [batch, in] @ kernel [in, units] (+ bias), in x's dtype."""
    with tf1.variable_scope(name):
        y = tf.matmul(x, _weight("kernel", [x.shape[-1], units], x.dtype))
        return tf.nn.bias_add(y, _bias("bias", units, x.dtype)) if use_bias else y


def class_embedding(labels, num_classes, size, name, stddev, dtype=tf.float32):
    """A learned vector of `size` values per class (a [num_classes, size] table ~ N(0, stddev)),
    looked up for int labels [batch]: [batch, size] in `dtype`."""
    with tf1.variable_scope(name):
        table = tf1.get_variable("embedding", [num_classes, size], tf.float32,
                                 initializer=tf1.random_normal_initializer(0.0, stddev))
        vectors = tf.gather(table, labels)
        return tf.cast(vectors, dtype) if dtype != tf.float32 else vectors


def conv2d(x, filters, name, implementation, use_bias=True):
    """A KERNEL_SIZE x KERNEL_SIZE, stride-STRIDE, 'SAME' convolution to `filters` channels."""
    with tf1.variable_scope(name):
        kernel = _weight("kernel", [KERNEL_SIZE, KERNEL_SIZE, x.shape[-1], filters], x.dtype)
        y = convolutions.conv2d(x, kernel, STRIDE, implementation)
        return tf.nn.bias_add(y, _bias("bias", filters, x.dtype)) if use_bias else y


def conv2d_transpose(x, filters, name, implementation, use_bias=True):
    """The transposed convolution that doubles the side (KERNEL_SIZE, STRIDE, 'SAME')."""
    with tf1.variable_scope(name):
        # A transposed kernel is [height, width, out_channels, in_channels].
        kernel = _weight("kernel", [KERNEL_SIZE, KERNEL_SIZE, filters, x.shape[-1]], x.dtype)
        y = convolutions.conv2d_transpose(x, kernel, STRIDE, implementation)
        return tf.nn.bias_add(y, _bias("bias", filters, x.dtype)) if use_bias else y


def batch_norm(x, training, name, update_moving_stats=True, momentum=BN_MOMENTUM, sync=False):
    """Fused batch norm (NHWC) with float32 parameters and statistics, whatever x's dtype.

    Training mode normalizes with the batch statistics and, if `update_moving_stats`, adds the
    moving-average updates (m <- momentum m + (1 - momentum) batch) to the UPDATE_OPS collection
    (the TF1 convention: the optimizer runs them as control dependencies) and to the list of
    `recorded_updates`, if one is open in this thread. Inference mode normalizes with the moving
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
def recorded_updates():
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
