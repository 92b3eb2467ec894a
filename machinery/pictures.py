"""The pictures of a run: sample grids, the training as an animated GIF, the loss plot, the
quality plot and the training-health plot. All matplotlib (and Pillow) lives here, on the Agg
backend (files only, no display: servers and CI), imported on first use because it is slow to
import. Every file is written atomically (durable.atomic_write)."""
import io
import os

import numpy as np

import data
from machinery import durable


def _pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed (servers, CI)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


GRID_GAP = 2      # white pixels between tiles
MIN_TILE_PIXELS = 64  # small samples are enlarged (whole pixels) to tiles at least this wide
TITLE_PIXELS = 24
DPI = 100         # the figure is sized so that one grid pixel is one PNG pixel


def tile_images(images, columns, scale=1):
    """uint8 [n, h, w, c] -> one image of the n tiles, `columns` per row, row by row, white gaps;
    each image pixel repeated scale x scale times (nearest neighbour: no blur)."""
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    grid = np.full((rows * (height + GRID_GAP) - GRID_GAP,
                    columns * (width + GRID_GAP) - GRID_GAP, channels), 255, np.uint8)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + GRID_GAP), column * (width + GRID_GAP)
        grid[top:top + height, left:left + width] = images[index]
    return grid


def tile_scale(image_size):
    """Screen pixels per image pixel in a grid: 32x32 samples drawn 2x2 (64-pixel tiles), 16x16
    4x4, 64x64 and larger 1:1."""
    return max(1, -(-MIN_TILE_PIXELS // image_size))


def save_grid_png(path, images, columns, title=None):
    """Saves a (titled) grid of [-1, 1] images, `columns` per row, as a PNG; returns its bytes.

    The tiles are put together with numpy and drawn as ONE image (a subplot per tile is slow
    enough to hold up the training loop at every epoch's end), at one grid pixel per PNG pixel.
    """
    plt = _pyplot()

    grid = tile_images(data.to_uint8(images), columns, tile_scale(images.shape[1]))
    height, width = grid.shape[:2]
    title_height = TITLE_PIXELS if title else 0
    figure = plt.figure(figsize=(width / DPI, (height + title_height) / DPI))
    axis = figure.add_axes([0, 0, 1, height / (height + title_height)])
    axis.axis("off")
    if grid.shape[-1] == 1:
        axis.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        axis.imshow(grid, interpolation="nearest")
    if title:  # centred in the strip above the grid
        figure.suptitle(title, fontsize=10, y=1 - title_height / 2 / (height + title_height),
                        verticalalignment="center")
    return save_figure(figure, path, dpi=DPI)


def save_pairs_png(path, generated, nearest, title):
    """Saves pairs of uint8 images as a PNG: `generated` in the top row, `nearest` (each one's
    nearest training image) under it."""
    images = data.scale(np.concatenate([generated, nearest]))
    return save_grid_png(path, images, len(generated), title)


def save_progress_gif(path, frame_paths, frame_seconds=0.5, cache=None):
    """Plays the PNGs of frame_paths in order as one looping animated GIF, written atomically.
    A frame of another size (a grid drawn by an older version) is scaled to the last one's.
    `cache` (a dict kept between calls) holds the frames already converted to the GIF's
    256-colour palette, so each call converts only the new ones: the conversion is most of the
    cost, and it would otherwise grow with every epoch."""
    from PIL import Image  # imported here: only the end of an epoch needs it

    cache = {} if cache is None else cache
    with Image.open(frame_paths[-1]) as last:
        size = last.size
    frames = []
    for frame_path in frame_paths:
        key = (frame_path, os.path.getmtime(frame_path), size)
        if key not in cache:
            with Image.open(frame_path) as image:
                frame = image.convert("RGB")
            if frame.size != size:
                frame = frame.resize(size, Image.NEAREST)
            cache[key] = frame.quantize(256)
        frames.append(cache[key])
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=int(frame_seconds * 1000), loop=0)
    gif = buffer.getvalue()
    durable.atomic_write(path, lambda handle: handle.write(gif))


def save_loss_plot(path, rows):
    plt = _pyplot()

    rows = [row for row in rows if "d_loss" in row]
    steps = [row["step"] for row in rows]
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(steps, [row["d_loss"] for row in rows], label="discriminator", alpha=0.8)
    axis.plot(steps, [row["g_loss"] for row in rows], label="generator", alpha=0.8)
    axis.set_xlabel("step (batches)")
    axis.set_ylabel("loss")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def save_quality_plot(path, rows, num_classes=data.NUM_CLASSES):
    """The sample-quality numbers of each evaluation over steps, a panel each: classifier score,
    Frechet distance, KID (with its standard deviation over subsets) and class entropy; the best
    score and the uniform entropy are those of `num_classes` classes. A number no row holds (a
    flat folder's evaluations have no classes) has no panel."""
    plt = _pyplot()

    rows = [row for row in rows if "frechet_distance" in row]
    panels = [(field, title) for field, title in (
        ("classifier_score", f"classifier score (max {num_classes})"),
        ("frechet_distance", "Frechet distance (lower is better)"),
        ("kid", "KID, sd over subsets (lower is better)"),
        ("class_entropy", f"class entropy, nats (uniform {np.log(num_classes or 1):.3f})"))
        if any(field in row for row in rows)]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), squeeze=False)
    for axis, (field, title) in zip(axes[0], panels):
        shown = [row for row in rows if field in row]
        values = [row[field] for row in shown]
        if field == "kid":
            axis.errorbar([row["step"] for row in shown], values, marker="o", capsize=3,
                          yerr=[row.get("kid_std", 0.0) for row in shown])
        else:
            axis.plot([row["step"] for row in shown], values, marker="o")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


HEALTH_WINDOW_STEPS = 100  # one row is one logging interval (r_t of 10 steps): too noisy to read


def rolling_means(steps, values, window_steps=HEALTH_WINDOW_STEPS):
    """Each value replaced by the mean of the values logged in the `window_steps` steps up to and
    including it (fewer at the start): the curve of a noisy per-interval number."""
    steps, values = np.asarray(steps, np.float64), np.asarray(values, np.float64)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    first = np.searchsorted(steps, steps - window_steps, side="right")
    return (sums[1:] - sums[first]) / (np.arange(1, len(values) + 1) - first)


def save_health_plot(path, runs, target=None, alarm=None, window_steps=HEALTH_WINDOW_STEPS):
    """The training health of runs side by side, against the step: d_real_sign (with the
    adaptive p's target and the health line's alarm level, when given), augment_p, and D's and
    G's losses, each a rolling mean over `window_steps` steps. `runs`: (label, metrics rows)."""
    plt = _pyplot()

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, rows in runs:
        rows = [row for row in rows if "d_real_sign" in row]
        steps = [row["step"] for row in rows]
        line, = axes[0].plot(steps, rolling_means(steps, [row["d_real_sign"] for row in rows],
                                                  window_steps), label=label, linewidth=1)
        axes[1].plot(steps, [row.get("augment_p", 0.0) for row in rows], label=label,
                     linewidth=1, color=line.get_color())
        for field, style in (("d_loss", "-"), ("g_loss", ":")):
            axes[2].plot(steps, rolling_means(steps, [row[field] for row in rows], window_steps),
                         style, linewidth=1, color=line.get_color())
    for level, name in ((target, "target"), (alarm, "health line")):
        if level is not None:
            axes[0].axhline(level, color="gray", linestyle="--", linewidth=0.6)
            axes[0].annotate(name, (0, level), fontsize=7, color="gray")
    for axis, title in zip(axes, (f"d_real_sign, mean over {window_steps} steps",
                                  "augment_p",
                                  f"D loss (solid), G loss (dotted), mean over {window_steps} "
                                  f"steps")):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    figure.tight_layout()
    save_figure(figure, path, dpi=100)


def save_figure(figure, path, dpi=80):
    """Writes a figure as PNG atomically, closes it, and returns the PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(figure)
    png = buffer.getvalue()
    durable.atomic_write(path, lambda f: f.write(png))
    return png
