"""Sampling a run's checkpoint: the generator of a run directory, restored in a graph of its own
and run in inference mode; what generate.py and evaluate.py draw their images from, and what
export.py saves.
"""
import collections
import contextlib

import numpy as np
import tensorflow as tf

import dcgan
from machinery import averaged_generator, checkpoints, errors, run_directory, sessions
from machinery.hyperparameters import IMAGE_SIZE, Z_DIM

tf1 = tf.compat.v1

Samples = collections.namedtuple("Samples", "images checkpoint generator labels")
Restored = collections.namedtuple("Restored", "session sampler checkpoint generator config")


def build_sampler(output_dim, z_dim=Z_DIM, precision="float32", implementation=None,
                  averaged=False, image_size=IMAGE_SIZE, num_classes=None):
    """A graph of a sampler alone, for generating from a checkpoint: the trained generator, or
    with `averaged` the run's averaged generator (averaged_generator.py); a sessions.Sampler,
    which takes labels too for a conditional generator of `num_classes` classes."""
    dcgan.check_positive_int(z_dim, "z_dim")
    z = tf1.placeholder(tf.float32, [None, z_dim], name="z")
    labels = tf1.placeholder(tf.int32, [None], name="labels") if num_classes else None
    if averaged:
        return averaged_generator.averaged_sampler(z, output_dim, precision, implementation,
                                                   image_size, labels, num_classes)
    samples = dcgan.sampler(z, output_dim, precision, implementation, image_size, labels,
                            num_classes)
    return sessions.Sampler(z, samples, z_dim, None, None,
                            tf1.global_variables(dcgan.GENERATOR_SCOPE + "/"), labels, None,
                            num_classes)


def num_classes(config):
    """A conditional run's number of classes (train.py --conditional), or None."""
    return config.get("num_classes") if config.get("conditional") else None


@contextlib.contextmanager
def restored_generator(run, seed, checkpoint=None, raw=False):
    """A session holding a generator of a run_directory.RunDir's checkpoint, restored and made
    ready to sample in inference mode, in a graph of its own that the caller may add to: what
    generate.py, evaluate.py and export.py all sample from.

    Args:
      run: the run_directory.RunDir.
      seed: the seed of the averaged generator's statistics batch.
      checkpoint: a checkpoint prefix instead of the newest that restores.
      raw: the trained weights even where the run keeps an average (--g-ema).

    Yields:
      Restored(session; sampler: a prepared sessions.Sampler; checkpoint: the prefix restored;
      generator: 'averaged generator (decay D)' or 'trained generator'; config: the run's
      settings).

    Raises:
      RunError: not a run directory, no checkpoint, damaged ones only, or one of another model.
    """
    config = run.read_config()
    decay = config.get("g_ema", 0.0)
    averaged = bool(decay) and not raw
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)  # the restore overwrites the initial weights; set for determinism
        sampler = build_sampler(config["output_dim"], config["z_dim"],
                                config.get("precision", "float32"), averaged=averaged,
                                image_size=run_directory.image_size(config),
                                num_classes=num_classes(config))
        saver = tf1.train.Saver(sampler.variables)
        init = tf1.global_variables_initializer()  # what the checkpoint does not hold
    with graph.as_default(), tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(init)
        restored = checkpoints.restore(run.checkpoint_dir, sess, saver, sampler.variables,
                                       checkpoint)
        if not restored:
            raise errors.RunError(f"{run.checkpoint_dir} holds no checkpoint yet; a run saves one "
                                  f"after its first epoch")
        averaged_generator.prepare_sampler(sess, sampler, seed)
        yield Restored(sess, sampler, restored, f"averaged generator (decay {decay})"
                       if averaged else "trained generator", config)


def sample_images(run, num, seed, checkpoint=None, raw=False, z=None, labels=None):
    """Samples a generator of a run_directory.RunDir's checkpoint (default: the newest that
    restores) in inference mode: the averaged generator when the run keeps one (--g-ema) and
    not `raw`, else the trained one (restored_generator).

    Args:
      run, seed, checkpoint, raw: as restored_generator's; `seed` also draws the z.
      num: how many images, of z ~ U(-1, 1) drawn with `seed` (ignored when `z` is given).
      z: float32 [n, z_dim] to sample instead of random z.
      labels: a conditional run's classes of the images (int [n]); default: drawn uniformly
        over its classes with `seed`.

    Returns:
      Samples(images: float32 in [-1, 1] of shape (n, N, N, C), N the run's image size;
      checkpoint: the prefix restored; generator: which generator; labels: the classes, or
      None for an unconditional run).

    Raises:
      RunError: as restored_generator.
    """
    with restored_generator(run, seed, checkpoint, raw) as restored:
        restored.session.graph.finalize()
        if z is None:
            z = sessions.draw_z(np.random.default_rng(seed), num, restored.config["z_dim"])
        classes = num_classes(restored.config)
        if classes and labels is None:
            labels = sessions.draw_labels(np.random.default_rng([seed, 11]), len(z),
                                          np.full(classes, 1.0 / classes))
        labels = np.asarray(labels, np.int32) if classes else None
        images = sessions.run_sampler(restored.session, restored.sampler, z, labels=labels)
    return Samples(images, restored.checkpoint, restored.generator, labels)
