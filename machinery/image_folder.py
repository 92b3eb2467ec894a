"""A folder of the user's own images, decoded once into a memory-mapped cache.

`load(root, cache_root, size, channels, fit)` finds every JPEG, PNG, BMP, GIF, WebP and TIFF below
`root` (recursively, hidden files and folders left out, in sorted path order, so the same folder
gives the same run), and brings each to one shape: EXIF orientation applied, transparency
composited on white, 16-bit pixels scaled to 8 (not clipped), converted to RGB or grayscale,
centre-cropped to a square (`fit="stretch"`: the whole image, squeezed), resized with Pillow's
Lanczos filter (antialiased when shrinking). Where `root`'s direct sub-folders hold all the images
(torchvision's ImageFolder convention), their sorted names are the classes.

The first load decodes on every core (Pillow releases the GIL while it decodes and resizes, so
threads run in parallel) into `<cache_root>/<folder name>-<hash of its path>/`: a uint8 `.npy`
(N, size, size, C) opened memory-mapped, so a dataset larger than RAM trains and a batch reads only
its rows; the labels; a manifest (format version, the settings, every file's path, size and
modification time); and `skipped-*.txt`, every file that could not be used and why. A file that
cannot be decoded (unreadable, truncated, empty, not an image, beyond Pillow's decompression-bomb
limit) is skipped and counted, never fatal. The next load with the same folder and settings only
lists the folder and opens the cache; a file added, removed or modified is noticed and the cache
rebuilt, saying what changed. Everything is written to temporary names carrying the writer's
host and process id (durable.py) and renamed into place, the manifest last: a killed build leaves
no cache that is trusted, and its leftovers are removed by the next build once their writer is
dead.
"""
import collections
import concurrent.futures
import hashlib
import json
import os
import time
import warnings

import numpy as np

from machinery import durable

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FITS = ("crop", "stretch")
BACKGROUND = (255, 255, 255)  # transparent pixels become white
FORMAT_VERSION = 1
SHOWN_SKIPS = 3               # skipped files named in the one-line summary
_DECODE_WINDOW = 512          # files in flight at once: bounds memory whatever the folder's size
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class FolderError(Exception):
    """A folder that cannot be trained on: missing, not a folder, no usable image, no room."""


FolderImages = collections.namedtuple(
    "FolderImages",
    "images labels classes fingerprint count cache_dir used_cache messages changes")
FolderImages.__doc__ = """images: uint8 (N, size, size, C), memory-mapped; labels: int64 (N,) or
None (a flat folder); classes: the sub-folder names or None; fingerprint: a hash of the manifest;
messages: what the load did, a line each (the caller prints them); changes: what changed in the
folder since its cache was built (describe_change), or None."""


# --- Finding the images ----------------------------------------------------------------------
def scan(root):
    """(files, classes): files is a sorted list of (relative path, size, mtime_ns) of every file
    with an image extension below `root`; classes the sorted names of the direct sub-folders when
    every image lies in one of at least two of them, else None."""
    if not os.path.exists(root):
        raise FolderError(f"{root}: no such folder")
    if not os.path.isdir(root):
        raise FolderError(f"{root}: not a folder (--images takes the folder that holds the images)")
    files = []
    for folder, subfolders, names in os.walk(root, onerror=None):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or not name.lower().endswith(EXTENSIONS):
                continue
            path = os.path.join(folder, name)
            try:
                status = os.stat(path)
            except OSError:
                continue  # vanished or unreadable while listed: as if it were not there
            files.append((os.path.relpath(path, root).replace(os.sep, "/"), status.st_size,
                          status.st_mtime_ns))
    files.sort()
    tops = {path.split("/")[0] for path, _, _ in files if "/" in path}
    labeled = files and all("/" in path for path, _, _ in files) and len(tops) >= 2
    return files, (sorted(tops) if labeled else None)


# --- Decoding one image ----------------------------------------------------------------------
def _is_gray(image):
    if image.mode in _GRAY_MODES:
        return True
    if image.mode in ("P", "PA"):
        palette = np.asarray(image.getpalette() or [], np.int64).reshape(-1, 3)
        return bool(np.all(palette == palette[:, :1]))
    return False


def source_is_gray(path):
    """Whether the file's pixels are gray (read from its header and palette only); None when the
    file cannot be opened (it is skipped later, when decoding says why)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return _is_gray(image)
    except Exception:  # noqa: BLE001 -- any unreadable file is the decoder's to report
        return None


def _to_mode(image, channels):
    """A loaded Pillow image as 'L' or 'RGB': 16-bit and float gray scaled down, transparency
    composited on BACKGROUND."""
    from PIL import Image

    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, np.float64)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0  # 0..65535 -> 0..255
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def square(image, size, fit="crop"):
    """A Pillow image as `size` x `size`: its centre square (fit 'crop') or all of it (fit
    'stretch'), resized with Lanczos, which Pillow widens by the reduction factor when it
    shrinks (antialiased). The one resize of the project: image_rows.resize uses it too."""
    from PIL import Image

    if fit == "crop":
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def decode(path, size, channels, fit="crop"):
    """(uint8 array (size, size, channels), None), or (None, the reason it cannot be used).

    Never raises for a bad file: open, load, transpose and convert all sit in one try, since
    Pillow reads only the header on open and finds damage when it decodes.
    """
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: both are skipped.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # the first frame of an animation
                upright = ImageOps.exif_transpose(image)
                pixels = np.asarray(square(_to_mode(upright, channels), size, fit), np.uint8)
    except Exception as error:  # noqa: BLE001 -- every decoder failure is a reason to skip
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return None, f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__
    return pixels.reshape(size, size, channels), None


# --- The cache -------------------------------------------------------------------------------
def cache_folder(root, cache_root):
    """<cache_root>/<folder name>-<10 hex digits of the folder's absolute path>."""
    absolute = os.path.realpath(root)
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:10]
    name = os.path.basename(absolute.rstrip(os.sep)) or "root"
    return os.path.join(cache_root, f"{name}-{digest}")


def _key(size, channels, fit):
    return f"{size}px-{channels or 'auto'}ch-{fit}"


def _remove_dead_writers_files(folder):
    """Temporary files of builds whose process is gone (a killed build); a live build's stay."""
    for name in os.listdir(folder):
        if durable.left_by_dead(name):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass  # another build removed it first


def _write_text(path, text):
    durable.atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def fingerprint(manifest):
    """A short hash of what the images are made from: the files and the settings."""
    essential = {key: manifest[key] for key in ("format_version", "settings", "files")}
    return hashlib.sha256(json.dumps(essential, sort_keys=True).encode()).hexdigest()[:16]


def describe_change(old_files, new_files):
    """'2 added (a.png, b.png), 1 removed (c.jpg), 1 modified (d.jpg)'."""
    old = {path: (size, mtime) for path, size, mtime in old_files}
    new = {path: (size, mtime) for path, size, mtime in new_files}
    groups = (("added", sorted(set(new) - set(old))), ("removed", sorted(set(old) - set(new))),
              ("modified", sorted(path for path in set(old) & set(new) if old[path] != new[path])))
    words = []
    for what, paths in groups:
        if paths:
            shown = ", ".join(paths[:SHOWN_SKIPS]) + (", ..." if len(paths) > SHOWN_SKIPS else "")
            words.append(f"{len(paths)} {what} ({shown})")
    return ", ".join(words) or "no file changed"


def _open_cache(folder, key, files, settings):
    """((images, labels, manifest), None, None) from the cache for exactly these files and
    settings, or (None, the reason it cannot be used -- None when nothing is cached --, what
    changed in the folder or None)."""
    manifest_path = os.path.join(folder, f"manifest-{key}.json")
    if not os.path.exists(manifest_path):
        return None, None, None
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
        if manifest.get("format_version") != FORMAT_VERSION:
            return None, "it was written by another version of this program", None
        old_files = [tuple(entry) for entry in manifest["files"]]
        if old_files != files:
            changes = describe_change(old_files, files)
            return None, f"the folder changed: {changes}", changes
        if manifest["settings"]["requested_channels"] != settings["requested_channels"]:
            return None, "its settings differ", None
        images = np.load(os.path.join(folder, manifest["images_file"]), mmap_mode="r")
        labels = np.load(os.path.join(folder, manifest["labels_file"])) \
            if manifest.get("labels_file") else None
        expected = (manifest["count"], settings["size"], settings["size"],
                    manifest["settings"]["channels"])
        if images.dtype != np.uint8 or images.shape != expected or (
                labels is not None and labels.shape != (manifest["count"],)):
            return None, f"its images file does not hold {expected} uint8 images", None
        return (images, labels, manifest), None, None
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"it is damaged ({type(error).__name__}: {error})", None


def _resolve_channels(root, files, channels, workers):
    if channels:
        return channels
    paths = [os.path.join(root, path) for path, _, _ in files]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        gray = list(pool.map(source_is_gray, paths))
    return 1 if all(value is not False for value in gray) else 3


def _build(root, folder, key, files, classes, settings, workers, progress):
    """Decodes every file into the cache folder: (images, labels, manifest, seconds, skipped)."""
    from tqdm import tqdm

    size, channels, fit = settings["size"], settings["channels"], settings["fit"]
    images_path = os.path.join(folder, f"images-{key}.npy")
    labels_path = os.path.join(folder, f"labels-{key}.npy")
    temporary = durable.temporary_path(folder, ".npy")
    kept_rows = durable.temporary_path(folder, ".npy")
    labels, skipped = [], []
    start = time.perf_counter()
    try:
        buffer = np.lib.format.open_memmap(temporary, "w+", np.uint8,
                                           (max(len(files), 1), size, size, channels))
        kept = 0
        with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
                tqdm(total=len(files), unit="image", desc="decoding", leave=False,
                     disable=None if progress else True) as bar:  # None: on a terminal only
            for first in range(0, len(files), _DECODE_WINDOW):
                window = files[first:first + _DECODE_WINDOW]
                results = pool.map(lambda entry: decode(os.path.join(root, entry[0]), size,
                                                        channels, fit), window)
                for (path, _, _), (pixels, reason) in zip(window, results):
                    bar.update(1)
                    if pixels is None:
                        skipped.append((path, reason))
                        continue
                    buffer[kept] = pixels
                    if classes:
                        labels.append(classes.index(path.split("/")[0]))
                    kept += 1
        if kept == 0:
            raise FolderError(_no_usable_image(root, files, skipped))
        if kept < len(buffer):  # skipped files: the final file holds the kept rows only
            final = np.lib.format.open_memmap(kept_rows, "w+", np.uint8,
                                              (kept, size, size, channels))
            for row in range(0, kept, 4096):
                end = min(row + 4096, kept)
                final[row:end] = buffer[row:end]
            final.flush()
            del buffer, final
            os.replace(kept_rows, temporary)
        else:
            buffer.flush()
            del buffer
        durable.move_into_place(temporary, images_path)
        if classes:
            durable.atomic_write(labels_path,
                                 lambda handle: np.save(handle, np.asarray(labels, np.int64)))
    finally:
        for leftover in (temporary, kept_rows):
            if os.path.exists(leftover):
                os.remove(leftover)
    seconds = time.perf_counter() - start
    skipped_name = f"skipped-{key}.txt"
    _write_text(os.path.join(folder, skipped_name),
                "".join(f"{path}\t{reason}\n" for path, reason in skipped))
    manifest = {"format_version": FORMAT_VERSION, "root": os.path.realpath(root),
                "settings": settings, "files": [list(entry) for entry in files],
                "classes": classes, "count": kept, "skipped": len(skipped),
                "skipped_file": skipped_name, "images_file": os.path.basename(images_path),
                "labels_file": os.path.basename(labels_path) if classes else None,
                "decode_seconds": round(seconds, 3)}
    _write_text(os.path.join(folder, f"manifest-{key}.json"), json.dumps(manifest))
    images = np.load(images_path, mmap_mode="r")
    return images, (np.load(labels_path) if classes else None), manifest, seconds, skipped


def _no_usable_image(root, files, skipped):
    if not files:
        return (f"{root}: no image found (looked for {', '.join(EXTENSIONS)} files, hidden "
                f"ones left out, in every sub-folder)")
    return (f"{root}: none of its {len(files)} image files could be decoded "
            f"({_skip_summary(skipped)})")


def _skip_summary(skipped):
    named = "; ".join(f"{path}: {reason}" for path, reason in skipped[:SHOWN_SKIPS])
    more = f"; and {len(skipped) - SHOWN_SKIPS} more" if len(skipped) > SHOWN_SKIPS else ""
    return named + more


def load(root, cache_root, size, channels=None, fit="crop", workers=None, progress=True):
    """The folder's images at `size` x `size`, from the cache or decoded into it.

    Args:
      root: the folder of images.
      cache_root: the folder the caches live under (never inside `root`).
      size: the side of the square images.
      channels: 1 or 3; None: 1 when every image is gray, else 3.
      fit: 'crop' (centre square) or 'stretch' (the whole image, squeezed into the square).
      workers: decoding threads (default: one per core).
      progress: draw a progress bar while decoding (on a terminal only).

    Returns:
      FolderImages.

    Raises:
      FolderError: `root` missing or not a folder, no usable image in it, or the cache cannot
        be written (the message names the path and the cause).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    files, classes = scan(root)
    if not files:
        raise FolderError(_no_usable_image(root, files, []))
    workers = workers or os.cpu_count() or 1
    folder = cache_folder(root, cache_root)
    if os.path.realpath(folder).startswith(os.path.realpath(root) + os.sep):
        raise FolderError(f"the cache {folder} would lie inside the image folder {root}: give "
                          f"--data-dir a folder outside it")
    key = _key(size, channels, fit)
    requested = {"size": size, "requested_channels": channels, "fit": fit,
                 "background": list(BACKGROUND)}
    cached, reason, changes = _open_cache(folder, key, files, requested)
    messages = []
    if cached:
        images, labels, manifest = cached
        messages.append(f"{root}: {manifest['count']:,} images from the cache in {folder}")
        if manifest["skipped"]:
            messages.append(f"({manifest['skipped']:,} files skipped when it was built; all of "
                            f"them in {os.path.join(folder, manifest['skipped_file'])})")
        return FolderImages(images, labels, manifest["classes"], fingerprint(manifest),
                            manifest["count"], folder, True, messages, None)
    if reason:
        messages.append(f"rebuilding the cache of {root}: {reason}")
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_dead_writers_files(folder)
        settings = dict(requested, channels=_resolve_channels(root, files, channels, workers))
        images, labels, manifest, seconds, skipped = _build(
            root, folder, key, files, classes, settings, workers, progress)
    except OSError as error:
        raise FolderError(f"cannot write the image cache in {folder} "
                          f"({error.strerror or error})") from None
    threads = f"{workers} thread" + ("s" if workers != 1 else "")
    messages.append(f"decoded {manifest['count']:,} of {len(files):,} images in {seconds:.1f} s "
                    f"({len(files) / max(seconds, 1e-9):.0f} images/s on {threads}) into {folder}")
    if skipped:
        messages.append(f"skipped {len(skipped):,} files that cannot be used "
                        f"({_skip_summary(skipped)}); all of them in "
                        f"{os.path.join(folder, manifest['skipped_file'])}")
    return FolderImages(images, labels, classes, fingerprint(manifest), manifest["count"],
                        folder, False, messages, changes)
