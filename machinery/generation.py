"""generate.py's work: new images from a run's checkpoint, or walks through z, written as a grid
(.png) or as uint8 images (.npz)."""
import math
import sys

import numpy as np

import data
from machinery import devices, durable, errors, pictures, run_directory, sampling, sessions

# generate.py's --num bound for .npz files (200,000 images) at 32x32, in pixels: the same memory
# at every image size, since float32 images are held in memory while they are generated.
MAX_NPZ_PIXELS = 200_000 * 32 * 32


def walk_z(rng, rows, steps, points, z_dim):
    """`rows` straight walks through z space, each through `points` random z (the first and last
    are its ends), `steps` evenly spaced z per walk: float32 [rows * steps, z_dim], row by row."""
    waypoints = sessions.draw_z(rng, rows * points, z_dim).reshape(rows, points, z_dim)
    position = np.linspace(0.0, points - 1, steps)           # along the polyline, in segments
    segment = np.minimum(position.astype(int), points - 2)   # the last point ends the last one
    fraction = (position - segment)[np.newaxis, :, np.newaxis]
    walks = (1 - fraction) * waypoints[:, segment] + fraction * waypoints[:, segment + 1]
    return walks.reshape(rows * steps, z_dim).astype(np.float32)


def write_images(path, images, columns=None, z=None):
    """A grid (`columns` per row, default a square) for .png; for .npz, uint8 images under
    'images' and, when given, the float32 z they were drawn from under 'z' (so that an image
    can be made again anywhere, by an exported generator among others)."""
    if path.lower().endswith(".npz"):
        arrays = {"images": data.to_uint8(images)}
        if z is not None:
            arrays["z"] = np.asarray(z, np.float32)

        def write(handle):
            np.savez_compressed(handle, **arrays)
        durable.atomic_write(path, write)
    else:
        pictures.save_grid_png(path, images, columns or math.ceil(math.sqrt(len(images))))


def generate(args):
    """generate.py with its parsed flags: writes the images and says where; returns the exit
    status (a problem is one line on stderr)."""
    devices.warn_if_gpu_unseen()
    run = run_directory.RunDir(args.run)
    try:
        config = run.read_config()
        if args.interpolate:
            z = walk_z(np.random.default_rng(args.seed), args.interpolate, args.walk_steps,
                       args.walk_points, config["z_dim"])
        else:  # the z sampling.sample_images would draw, drawn here to be saved with the images
            z = sessions.draw_z(np.random.default_rng(args.seed), args.num, config["z_dim"])
        size = run_directory.image_size(config)
        if args.out.lower().endswith(".npz") and args.num * size * size > MAX_NPZ_PIXELS:
            raise errors.RunError(f"--num must be at most {MAX_NPZ_PIXELS // (size * size):,} "
                                  f"for this run's {size}x{size} images (float32 images are "
                                  f"held in memory while they are generated)")
        samples = sampling.sample_images(run, args.num, args.seed, args.checkpoint, args.raw, z)
        write_images(args.out, samples.images, args.walk_steps if args.interpolate else None, z)
    except errors.RunError as error:
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
