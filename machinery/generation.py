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


def write_images(path, images, columns=None, z=None, labels=None):
    """A grid (`columns` per row, default a square) for .png; for .npz, uint8 images under
    'images' and, when given, the float32 z they were drawn from under 'z' and their classes
    under 'labels' (so that an image can be made again anywhere, by an exported generator among
    others)."""
    if path.lower().endswith(".npz"):
        arrays = {"images": data.to_uint8(images)}
        if z is not None:
            arrays["z"] = np.asarray(z, np.float32)
        if labels is not None:
            arrays["labels"] = np.asarray(labels, np.int32)

        def write(handle):
            np.savez_compressed(handle, **arrays)
        durable.atomic_write(path, write)
    else:
        pictures.save_grid_png(path, images, columns or math.ceil(math.sqrt(len(images))))


def class_index(config, wanted):
    """The index of --class `wanted` (an index or a name) among a conditional run's classes.

    Raises:
      RunError: the run is not conditional, or has no such class (one line naming its classes).
    """
    if not sampling.num_classes(config):
        raise errors.RunError("--class goes with a run trained with --conditional; this run "
                              "is not conditional")
    names = config.get("class_names") or [str(index) for index in range(config["num_classes"])]
    if wanted in names:
        return names.index(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    shown = ", ".join(f"{index} ({name})" if name != str(index) else name
                      for index, name in enumerate(names[:12])) + \
        (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    raise errors.RunError(f"--class {wanted}: this run has no such class; its classes are "
                          f"{shown}")


def draw(args, config):
    """(z, labels or None, columns of the grid or None) of what generate.py draws: --num images,
    or --interpolate walks (each of one class), or with --class all a row per class of
    --num / classes images, the same z down each column."""
    rng, z_dim = np.random.default_rng(args.seed), config["z_dim"]
    classes = sampling.num_classes(config)
    chosen = None if args.class_ in (None, "all") else class_index(config, args.class_)
    if args.class_ == "all" and not classes:
        class_index(config, "all")  # says the run is not conditional
    if args.interpolate:
        z = walk_z(rng, args.interpolate, args.walk_steps, args.walk_points, z_dim)
        walks = np.arange(args.interpolate) % classes if args.class_ == "all" else \
            np.full(args.interpolate, chosen) if chosen is not None else \
            np.random.default_rng([args.seed, 11]).integers(0, classes or 1, args.interpolate)
        return z, np.repeat(walks, args.walk_steps) if classes else None, args.walk_steps
    if args.class_ == "all":
        columns = max(1, args.num // classes)
        return (np.tile(sessions.draw_z(rng, columns, z_dim), (classes, 1)),
                np.repeat(np.arange(classes), columns), columns)
    # the z sampling.sample_images would draw, drawn here to be saved with the images
    z = sessions.draw_z(rng, args.num, z_dim)
    return z, None if chosen is None else np.full(args.num, chosen), None


def generate(args):
    """generate.py with its parsed flags: writes the images and says where; returns the exit
    status (a problem is one line on stderr)."""
    devices.warn_if_gpu_unseen()
    run = run_directory.RunDir(args.run)
    try:
        config = run.read_config()
        z, labels, columns = draw(args, config)
        size = run_directory.image_size(config)
        if args.out.lower().endswith(".npz") and len(z) * size * size > MAX_NPZ_PIXELS:
            raise errors.RunError(f"--num must be at most {MAX_NPZ_PIXELS // (size * size):,} "
                                  f"for this run's {size}x{size} images (float32 images are "
                                  f"held in memory while they are generated)")
        samples = sampling.sample_images(run, len(z), args.seed, args.checkpoint, args.raw, z,
                                         labels)
        write_images(args.out, samples.images, columns, z, samples.labels)
    except errors.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"error: cannot write {args.out} ({error.strerror})", file=sys.stderr)
        return 1
    what = f"{args.interpolate} walks of {args.walk_steps}" if args.interpolate else len(z)
    size = samples.images.shape[1]
    print(f"wrote {what} images of {size}x{size} from {samples.checkpoint}, {samples.generator}, "
          f"to {args.out}")
    return 0
