"""The pictures of a run: sample grids, the loss plot and the quality plot. All matplotlib lives
here, on the Agg backend (files only, no display: servers and CI), imported on first use because
it is slow to import. Every file is written atomically (data.atomic_write)."""
import io

import numpy as np

import data


def _pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed (servers, CI)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


GRID_GAP = 2  # white pixels between tiles


def tile_images(images, side):
    """uint8 [n, h, w, c] -> one [side*h + gaps, side*w + gaps, c] image, row by row, white gaps."""
    count, height, width, channels = images.shape
    grid = np.full((side * (height + GRID_GAP) - GRID_GAP, side * (width + GRID_GAP) - GRID_GAP,
                    channels), 255, np.uint8)
    for index in range(min(count, side * side)):
        row, column = divmod(index, side)
        top, left = row * (height + GRID_GAP), column * (width + GRID_GAP)
        grid[top:top + height, left:left + width] = images[index]
    return grid


def save_grid_png(path, images, side, title=None):
    """Saves a titled grid of [-1, 1] images as a PNG; returns the PNG bytes.

    The tiles are put together with numpy and drawn as ONE image (a subplot per tile is slow
    enough to hold up the training loop at every epoch's end).
    """
    plt = _pyplot()

    grid = tile_images(data.to_uint8(images), side)
    title_inches = 0.3 if title else 0.0
    figure = plt.figure(figsize=(side, side + title_inches))
    axis = figure.add_axes([0, 0, 1, side / (side + title_inches)])
    axis.axis("off")
    if grid.shape[-1] == 1:
        axis.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        axis.imshow(grid, interpolation="nearest")
    if title:
        # centred in the strip of title_inches above the grid
        figure.suptitle(title, fontsize=9, y=1 - title_inches / 2 / (side + title_inches),
                        verticalalignment="center")
    return save_figure(figure, path, dpi=64)


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


def save_quality_plot(path, rows):
    """Classifier score, Frechet distance and class entropy of each evaluation, over steps."""
    plt = _pyplot()

    rows = [row for row in rows if "classifier_score" in row]
    steps = [row["step"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for axis, field, title in zip(axes, ("classifier_score", "frechet_distance", "class_entropy"),
                                  ("classifier score (max 10)", "Frechet distance (lower is better)",
                                   "class entropy, nats (uniform 2.303)")):
        axis.plot(steps, [row[field] for row in rows], marker="o")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def save_figure(figure, path, dpi=80):
    """Writes a figure as PNG atomically, closes it, and returns the PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(figure)
    png = buffer.getvalue()
    data.atomic_write(path, lambda f: f.write(png))
    return png
