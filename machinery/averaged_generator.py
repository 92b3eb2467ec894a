"""The averaged generator (--g-ema; opt-in, not in the paper).

Yazici et al. 2019: sampling from an exponential moving average of the generator's weights gives
better samples from the same training. The average is a second generator under its own scope
(g_ema/generator/...), updated by the training step after each G update; its batch-norm statistics
are recomputed for its own weights before each use ("standing statistics", as in BigGAN), since
the moving statistics were gathered with the raw weights.
"""
import numpy as np
import tensorflow as tf

import dcgan
from machinery import layers, sessions

tf1 = tf.compat.v1

AVERAGE_SCOPE = "g_ema"
STANDING_STATS_BATCH = 256  # z per recomputation of the averaged generator's statistics


def _first_replica_aggregation(next_creator, **kwargs):
    """The averaged generator's variables take the first replica's update under a strategy:
    every replica's trained weights, and so its update, are the same."""
    kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    return next_creator(**kwargs)


def _averaged_generator(z, output_dim, training, precision, implementation, image_size,
                        labels=None, num_classes=None, stats_momentum=0.0):
    with tf1.variable_scope(AVERAGE_SCOPE, reuse=tf1.AUTO_REUSE), \
            tf.variable_creator_scope(_first_replica_aggregation):
        images = dcgan.generator(z, output_dim, reuse=tf1.AUTO_REUSE, training=training,
                                 precision=precision, implementation=implementation,
                                 stats_momentum=stats_momentum, image_size=image_size,
                                 labels=labels, num_classes=num_classes)
    # The copy is not trained: keep it out of the trainable collection.
    trainable = tf1.get_collection_ref(tf1.GraphKeys.TRAINABLE_VARIABLES)
    trainable[:] = [v for v in trainable if not v.op.name.startswith(AVERAGE_SCOPE + "/")]
    return images


def averaged_sampler(z, output_dim, precision, implementation, image_size, labels=None,
                     num_classes=None):
    """The averaged generator in inference mode on `z` (and a conditional one's `labels`), as a
    sessions.Sampler whose `refresh_stats` sets its statistics from a batch fed to `stats_z`
    (and `stats_labels`; momentum 0: the statistics of that batch); prepare_sampler runs it."""
    stats_z = tf1.placeholder(tf.float32, [None, z.shape[-1]], name="stats_z")
    stats_labels = None if labels is None else \
        tf1.placeholder(tf.int32, [None], name="stats_labels")
    with layers.recorded_updates() as updates:
        _averaged_generator(stats_z, output_dim, True, precision, implementation, image_size,
                            stats_labels, num_classes)
    refresh = tf.group(*updates, name="refresh_averaged_stats")
    samples = _averaged_generator(z, output_dim, False, precision, implementation, image_size,
                                  labels, num_classes)
    return sessions.Sampler(z, samples, z.shape[-1], refresh, stats_z,
                            [v for v in tf1.global_variables(AVERAGE_SCOPE + "/")
                             if not _is_standing(v)], labels, stats_labels, num_classes)


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
            for v in dcgan.trainable_variables(dcgan.GENERATOR_SCOPE)]


def update_average(decay, after):
    """w_avg <- decay * w_avg + (1 - decay) * w for every trained generator weight, reading the
    weights `after` has written."""
    with tf.control_dependencies([after]):
        return tf.group(*[tf1.assign_sub(average, (1.0 - decay) * (average - variable))
                          for average, variable in _average_pairs()], name="update_average")


def start_average():
    """The op that copies the trained weights into the average: run it once after initialising
    a new run."""
    return tf.group(*[average.assign(variable) for average, variable in _average_pairs()],
                    name="start_average")


def prepare_sampler(sess, sampler, seed=0):
    """Makes a sessions.Sampler ready to run: an averaged generator gets batch-norm statistics for
    its current weights, from STANDING_STATS_BATCH z drawn with `seed` (deterministic); the
    trained generator's sampler needs nothing."""
    if sampler.refresh_stats is not None:
        stats_z = sessions.draw_z(np.random.default_rng([seed, 5]), STANDING_STATS_BATCH,
                                  sampler.z_dim)
        feed = {sampler.stats_z: stats_z}
        if sampler.stats_labels is not None:  # every class alike
            feed[sampler.stats_labels] = np.arange(STANDING_STATS_BATCH) % sampler.num_classes
        sess.run(sampler.refresh_stats, feed)
