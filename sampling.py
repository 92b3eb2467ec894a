"""Sampling a run's checkpoint: the generator of a run directory, restored in a graph of its own
and run in inference mode; what generate.py and evaluate.py draw their images from.
"""
import collections

import numpy as np
import tensorflow as tf

import dcgan
import runs

tf1 = tf.compat.v1

Samples = collections.namedtuple("Samples", "images checkpoint generator")


def sample_images(run, num, seed, checkpoint=None, raw=False, z=None):
    """Restores a generator of a runs.RunDir's checkpoint (default: the newest that restores) and
    samples it in inference mode: the averaged generator when the run keeps one (--g-ema) and
    not `raw`, else the trained one.

    Args:
      run: the runs.RunDir.
      num: how many images, of z ~ U(-1, 1) drawn with `seed` (ignored when `z` is given).
      seed: the seed of the z, and of the averaged generator's statistics batch.
      checkpoint: a checkpoint prefix instead of the newest.
      raw: the trained weights even where the run keeps an average.
      z: float32 [n, z_dim] to sample instead of random z.

    Returns:
      Samples(images: float32 in [-1, 1] of shape (n, N, N, C), N the run's image size;
      checkpoint: the prefix restored; generator: 'averaged generator (decay D)' or 'trained
      generator').

    Raises:
      RunError: not a run directory, no checkpoint, damaged ones only, or one of another model.
    """
    config = run.read_config()
    decay = config.get("g_ema", 0.0)
    averaged = bool(decay) and not raw
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)  # the restore overwrites the initial weights; set for determinism
        sampler = dcgan.build_sampler(config["output_dim"], config["z_dim"],
                                      config.get("precision", "float32"), averaged=averaged,
                                      image_size=runs.image_size(config))
        saver = tf1.train.Saver(sampler.variables)
        init = tf1.global_variables_initializer()  # what the checkpoint does not hold
    graph.finalize()
    with tf1.Session(graph=graph, config=dcgan.session_config()) as sess:
        sess.run(init)
        restored = run.restore(sess, saver, sampler.variables, checkpoint)
        if not restored:
            raise runs.RunError(f"{run.checkpoint_dir} holds no checkpoint yet; a run saves one "
                                f"after its first epoch")
        dcgan.prepare_sampler(sess, sampler, seed)
        if z is None:
            z = dcgan.draw_z(np.random.default_rng(seed), num, config["z_dim"])
        images = dcgan.run_sampler(sess, sampler, z)
    return Samples(images, restored,
                   f"averaged generator (decay {decay})" if averaged else "trained generator")
