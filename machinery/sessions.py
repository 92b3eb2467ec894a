"""The session and what it is fed: session settings, z, the uint8 batches of a training step, and
running a sampler (a generator in inference mode) over any number of z.

Every z of a run is a function of seeds alone (numpy Generators), so a resumed run, an evaluation
and a sample grid draw the same z on every machine.
"""
import collections

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

import data
from machinery import augmentation

tf1 = tf.compat.v1


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


# A Sampler: run `samples` feeding `z` ([batch, z_dim]), and a conditional generator's `labels`
# (int32 [batch], of `num_classes`). An averaged generator's also has `refresh_stats`, to run
# first feeding `stats_z` (and `stats_labels`): it sets the batch-norm statistics (None
# otherwise). `variables`: what a checkpoint must hold to restore it.
Sampler = collections.namedtuple(
    "Sampler", "z samples z_dim refresh_stats stats_z variables labels stats_labels num_classes",
    defaults=(None, None, None))
# A conditional run's classes: every image's label, and each class's share of the images (the
# generated images' classes are drawn with those shares).
ClassLabels = collections.namedtuple("ClassLabels", "labels shares")


def class_labels(labels, num_classes):
    """The ClassLabels of a dataset's int labels in 0 .. num_classes - 1."""
    counts = np.bincount(labels, minlength=num_classes)
    return ClassLabels(np.asarray(labels), counts / counts.sum())


def draw_labels(rng, count, shares):
    """count classes drawn with the given shares, as int32."""
    return rng.choice(len(shares), count, p=shares).astype(np.int32)


def draw_z(rng, count, z_dim):
    """count vectors z ~ U(-1, 1)^z_dim from a numpy Generator, as float32."""
    return rng.uniform(-1.0, 1.0, (count, z_dim)).astype(np.float32)


def step_z(seed, step, batch_size, z_dim):
    """The z of one training step, a function of (seed, step) alone, so a resumed run draws the
    same z as an uninterrupted one."""
    return draw_z(np.random.default_rng([seed, 2, step]), batch_size, z_dim)


def step_feed(model, images, indices, seed, step, worker=0, workers=1, flip=False,
              classes=None):
    """The feed of one training step: a uint8 batch (scaled in the graph), its z, with
    augmentation the step's random numbers (augmentation.draws), and for a conditional model
    the classes of the real images and of those to generate (drawn with `classes`' shares, a
    ClassLabels).

    uint8 is a quarter of float32's bytes to copy; gathering and drawing z take well under a
    millisecond against hundreds for the step, so no input pipeline is needed. With several
    `workers`, each feeds its own share of the global batch `indices` and of its random numbers
    (worker k the k-th), so together they train on exactly what one process would, and each
    reads only its own rows of the images. With `flip`, each real image is mirrored left to
    right with probability 1/2 (drawn, like z, from the seed and the step).
    """
    share = len(indices) // workers
    rows = slice(worker * share, (worker + 1) * share)
    batch = images[indices[rows]]
    if flip:
        mirrored = np.random.default_rng([seed, 7, step]).random(len(indices))[rows] < 0.5
        batch[mirrored] = batch[mirrored, :, ::-1]
    feed = {model.real_images: batch,
            model.z: step_z(seed, step, len(indices), model.z_dim)[rows]}
    if model.augment_draws is not None:
        feed[model.augment_draws] = augmentation.draws(seed, step, len(indices),
                                                       model.augment_passes)[rows]
    if model.real_labels is not None:
        feed[model.real_labels] = classes.labels[indices[rows]].astype(np.int32)
        feed[model.fake_labels] = draw_labels(np.random.default_rng([seed, 8, step]),
                                              len(indices), classes.shares)[rows]
    return feed


def scale_pixels(images):
    """uint8 pixels 0..255 -> float32 [-1, 1] inside the graph (data.scale's formula)."""
    return tf.cast(images, tf.float32) / data.PIXEL_HALF_RANGE - 1.0


def run_sampler(sess, sampler, z, batch_size=500, labels=None):
    """Runs a prepared Sampler on the given z (and a conditional one's labels), batch_size at a
    time (bounded memory for any count); returns float32 (len(z), N, N, C) in [-1, 1]."""
    def feed(rows):
        fed = {sampler.z: z[rows]}
        if sampler.labels is not None:
            fed[sampler.labels] = labels[rows]
        return fed
    return np.concatenate([sess.run(sampler.samples, feed(slice(start, start + batch_size)))
                           for start in range(0, len(z), batch_size)])


def generate_images(sess, sampler, num, rng, batch_size=500, labels=None):
    """Runs a prepared Sampler on `num` z drawn from rng (and a conditional one's labels);
    returns float32 (num, N, N, C) in [-1, 1]."""
    return run_sampler(sess, sampler, draw_z(rng, num, sampler.z_dim), batch_size, labels)
