"""Draws new images from a trained run: `python generate.py --run runs/svhn --num 64 --out grid.png`.

Restores the newest checkpoint of the run's generator and samples it in inference mode (batch
norm with its moving statistics). `--out *.png` writes a grid; `--out *.npz` writes the images
under the key `images` as uint8 (N, 32, 32, C), the format evaluation tools read.
"""
import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import data  # noqa: E402
import devices  # noqa: E402
import pictures  # noqa: E402
import runs  # noqa: E402

MAX_GRID_IMAGES = 64 * 64      # a 64x64 grid is already a 4,000-pixel-wide picture
MAX_NPZ_IMAGES = 200_000       # 2.4 GB of float32 (3 channels) while generating


def write_images(path, images):
    """A grid for .png, uint8 images under 'images' for .npz."""
    if path.lower().endswith(".npz"):
        def write(handle):
            np.savez_compressed(handle, images=data.to_uint8(images))
        data.atomic_write(path, write)
    else:
        pictures.save_grid_png(path, images, math.ceil(math.sqrt(len(images))))


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
    limit = MAX_GRID_IMAGES if args.out.lower().endswith(".png") else MAX_NPZ_IMAGES
    if not 0 < args.num <= limit:
        parser.error(f"--num must be in 1..{limit} for a {os.path.splitext(args.out)[1]} file "
                     f"(float32 images are held in memory while they are generated)")
    if os.path.splitext(args.out)[1].lower() not in (".png", ".npz"):
        parser.error("--out must end in .png or .npz")
    devices.warn_if_gpu_unseen()
    try:
        images, checkpoint = runs.sample_images(runs.RunDir(args.run), args.num, args.seed,
                                                args.checkpoint)
        write_images(args.out, images)
    except runs.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"error: cannot write {args.out} ({error.strerror})", file=sys.stderr)
        return 1
    print(f"wrote {args.num} images from {checkpoint} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
