"""Draws new images from a trained run: `python generate.py --run runs/svhn` (a grid in runs/svhn/).

Restores the newest checkpoint of the run's generator (its averaged copy, if the run keeps one and
--raw is not given) and samples it in inference mode (batch norm with its moving statistics; the
averaged copy's recomputed for its own weights). `--interpolate K` draws K walks through z
instead. `--out *.png` writes a grid; `--out *.npz` writes the images under the key `images` as
uint8 (count, N, N, C), N the run's --image-size, the format evaluation tools read, and the z
they were drawn from under `z`, float32 (count, z_dim): an exported generator (export.py) given
that z makes the same pixels; a conditional run's under `labels`, int32 (count,).
"""
import os
import sys

from machinery import options, quiet_start

MAX_GRID_IMAGES = 64 * 64      # a 64x64 grid is already a 4,000-pixel-wide picture
MAX_NPZ_IMAGES = 200_000       # 2.4 GB of float32 (3 channels) while generating, at 32x32
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
    add("--class", dest="class_", default=None, metavar="CLASS",
        help="a run trained with --conditional: the class to draw, by index or by name (a "
             "folder's sub-folder, a dataset's class: 0..9, or airplane .. truck for cifar10); "
             "all: a row per class, the same z down each column; a walk keeps its class "
             "(default: classes drawn at random)")
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out", default=None,
        help="output file: .png for a grid, .npz for uint8 images under 'images' and their z "
             "under 'z' (default: "
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

from machinery import generation  # noqa: E402  (TensorFlow: after the flags)


def main(argv=None, args=None):
    return generation.generate(args or parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(args=ARGS))
