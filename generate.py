"""Draws new images from a trained run: `python generate.py --run runs/svhn` (a grid in runs/svhn/).

Restores the newest checkpoint of the run's generator (its averaged copy, if the run keeps one and
--raw is not given) and samples it in inference mode (batch norm with its moving statistics; the
averaged copy's recomputed for its own weights). `--interpolate K` draws K walks through z
instead. `--out *.png` writes a grid; `--out *.npz` writes the images
under the key `images` as uint8 (count, N, N, C), N the run's --image-size, the format
evaluation tools read.
"""
import math
import os
import sys

import durable
import options
import quiet_start

MAX_GRID_IMAGES = 64 * 64      # a 64x64 grid is already a 4,000-pixel-wide picture
MAX_NPZ_IMAGES = 200_000       # 2.4 GB of float32 (3 channels) while generating, at 32x32
MAX_NPZ_PIXELS = MAX_NPZ_IMAGES * 32 * 32  # the same bound at every image size
NUM = options.bounded_int(1, MAX_NPZ_IMAGES, "float32 images are held in memory while they are "
                                             "generated: 200,000 are 2.4 GB")
WALKS = options.bounded_int(0, MAX_GRID_IMAGES, "0 is off; the walks are rows of one grid")
WALK_LENGTH = options.bounded_int(2, MAX_GRID_IMAGES, "a walk has two ends; it is a row of one "
                                                      "grid")


def build_parser():
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_run_group(parser, "use the trained weights, not their average")
    group = parser.add_argument_group("what to draw")
    add = group.add_argument
    add("--num", type=NUM, default=64, help="how many images")
    add("--seed", type=options.SEED, default=0, help="seed of the z drawn")
    add("--interpolate", type=WALKS, default=0, metavar="K",
        help="instead of --num random images, K rows of walks through z (the paper's section 6.1)")
    add("--walk-steps", type=WALK_LENGTH, default=10, help="images per walk (--interpolate)")
    add("--walk-points", type=WALK_LENGTH, default=2,
        help="random z each walk goes through in a straight line each (2: from one to another)")
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out", default=None,
        help="output file: .png for a grid, .npz for uint8 images under 'images' (default: "
             "generated.png, or walks.png with --interpolate, in the run directory)")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = os.path.join(args.run, "walks.png" if args.interpolate else "generated.png")
    if args.interpolate:
        if args.walk_steps < args.walk_points:
            parser.error("--walk-steps must be at least --walk-points (a walk shows each of its "
                         "points)")
        args.num = args.interpolate * args.walk_steps
    limit = MAX_GRID_IMAGES if args.out.lower().endswith(".png") else MAX_NPZ_IMAGES
    if not 0 < args.num <= limit:
        what = "--interpolate x --walk-steps" if args.interpolate else "--num"
        parser.error(f"{what} must be in 1..{limit} for a {os.path.splitext(args.out)[1]} file "
                     f"(float32 images are held in memory while they are generated)")
    if os.path.splitext(args.out)[1].lower() not in (".png", ".npz"):
        parser.error("--out must end in .png or .npz")
    return args


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

import numpy as np  # noqa: E402

import data  # noqa: E402
import dcgan  # noqa: E402
import devices  # noqa: E402
import pictures  # noqa: E402
import runs  # noqa: E402
import sampling  # noqa: E402


def walk_z(rng, rows, steps, points, z_dim):
    """`rows` straight walks through z space, each through `points` random z (the first and last
    are its ends), `steps` evenly spaced z per walk: float32 [rows * steps, z_dim], row by row."""
    waypoints = dcgan.draw_z(rng, rows * points, z_dim).reshape(rows, points, z_dim)
    position = np.linspace(0.0, points - 1, steps)           # along the polyline, in segments
    segment = np.minimum(position.astype(int), points - 2)   # the last point ends the last one
    fraction = (position - segment)[np.newaxis, :, np.newaxis]
    walks = (1 - fraction) * waypoints[:, segment] + fraction * waypoints[:, segment + 1]
    return walks.reshape(rows * steps, z_dim).astype(np.float32)


def write_images(path, images, columns=None):
    """A grid (`columns` per row, default a square) for .png, uint8 images under 'images' for
    .npz."""
    if path.lower().endswith(".npz"):
        def write(handle):
            np.savez_compressed(handle, images=data.to_uint8(images))
        durable.atomic_write(path, write)
    else:
        pictures.save_grid_png(path, images, columns or math.ceil(math.sqrt(len(images))))


def main(argv=None, args=None):
    args = args or parse_args(argv)
    devices.warn_if_gpu_unseen()
    run = runs.RunDir(args.run)
    try:
        z = None
        if args.interpolate:
            z = walk_z(np.random.default_rng(args.seed), args.interpolate, args.walk_steps,
                       args.walk_points, run.read_config()["z_dim"])
        size = runs.image_size(run.read_config())
        if args.out.lower().endswith(".npz") and args.num * size * size > MAX_NPZ_PIXELS:
            raise runs.RunError(f"--num must be at most {MAX_NPZ_PIXELS // (size * size):,} for "
                                f"this run's {size}x{size} images (float32 images are held in "
                                f"memory while they are generated)")
        samples = sampling.sample_images(run, args.num, args.seed, args.checkpoint, args.raw, z)
        write_images(args.out, samples.images, args.walk_steps if args.interpolate else None)
    except runs.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"error: cannot write {args.out} ({error.strerror})", file=sys.stderr)
        return 1
    what = f"{args.interpolate} walks of {args.walk_steps}" if args.interpolate else args.num
    size = samples.images.shape[1]
    print(f"wrote {what} images of {size}x{size} from {samples.checkpoint}, {samples.generator}, "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(args=ARGS))
