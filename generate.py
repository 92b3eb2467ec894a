"""Draws new images from a trained run: `python generate.py --run runs/svhn --num 64 --out grid.png`.

Restores the newest checkpoint of the run's generator and samples it in inference mode (batch
norm with its moving statistics). `--out *.png` writes a grid; `--out *.npz` writes the images
under the key `images` as uint8 (N, 32, 32, C), the format evaluation tools read.
"""
import argparse
import json
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import data  # noqa: E402
import train  # noqa: E402


class GenerateError(Exception):
    pass


def read_run_config(run_dir, required=("dataset", "output_dim", "z_dim")):
    """The settings train.py saved in a run directory, as a dict.

    Raises:
      GenerateError: no config.json (not a run directory), unreadable, or a required key missing.
    """
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise GenerateError(f"{run_dir} is not a run directory (config.json not found); train "
                            f"first: python train.py --out {run_dir}") from None
    except (OSError, ValueError) as error:
        raise GenerateError(f"{path}: unreadable run settings ({error})") from None
    missing = [key for key in required if not isinstance(config, dict) or key not in config]
    if missing:
        raise GenerateError(f"{path}: run settings lack {', '.join(missing)}")
    return config


def sample_images(run_dir, num, seed, checkpoint=None):
    """Returns (float32 images in [-1, 1] of shape (num, 32, 32, C), the checkpoint used)."""
    import tensorflow as tf

    import dcgan
    tf1 = tf.compat.v1

    config = read_run_config(run_dir)
    output_dim, z_dim = int(config["output_dim"]), int(config["z_dim"])
    precision = config.get("precision", "float32")
    checkpoint = checkpoint or tf1.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if not checkpoint:
        raise GenerateError(f"{run_dir}/checkpoints holds no checkpoint yet; a run saves one "
                            f"after its first epoch")
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)  # the restore overwrites the initial weights; determinism wants it
        z = tf1.placeholder(tf.float32, [None, z_dim])
        samples = dcgan.sampler(z, output_dim, precision)
        saver = tf1.train.Saver(tf1.global_variables(dcgan.GENERATOR_SCOPE + "/"))
    graph.finalize()
    rng = np.random.default_rng(seed)
    with tf1.Session(graph=graph, config=dcgan.session_config()) as sess:
        problem = train.checkpoint_mismatch(checkpoint, tf1.global_variables())
        if problem:
            raise GenerateError(f"{checkpoint}: does not match this run's model ({problem})")
        saver.restore(sess, checkpoint)
        images = train.generate_images(sess, samples, z, num, z_dim, rng)
    return images, checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="run directory of train.py")
    parser.add_argument("--num", type=int, default=64, help="how many images")
    parser.add_argument("--out", default="samples.png",
                        help="output file: .png for a grid, .npz for uint8 images under 'images'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the z drawn")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint prefix to use instead of the run's newest")
    args = parser.parse_args(argv)
    if args.num <= 0:
        parser.error("--num must be positive")
    extension = os.path.splitext(args.out)[1].lower()
    if extension not in (".png", ".npz"):
        parser.error("--out must end in .png or .npz")
    try:
        images, checkpoint = sample_images(args.run, args.num, args.seed, args.checkpoint)
        if extension == ".npz":
            def write(handle):
                np.savez_compressed(handle, images=train.to_uint8(images))
            data.atomic_write(args.out, write)
        else:
            side = math.ceil(math.sqrt(args.num))
            train.save_grid_png(args.out, images, side)
    except GenerateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write {args.out} ({error.strerror})", file=sys.stderr)
        return 1
    print(f"wrote {args.num} images from {checkpoint} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
