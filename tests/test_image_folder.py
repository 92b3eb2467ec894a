"""image_folder.py: every image kind decoded to the pixels it should give, every bad kind skipped
and listed, labels from sub-folders, and a cache that is reused, invalidated and never trusted
half-written."""
import io
import json
import os
import socket

import numpy as np
import pytest
from PIL import Image

from machinery import image_folder

SIZE = 8
WHITE = 255


def save(path, image, **options):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **options)


def solid(mode, size, color):
    return Image.new(mode, size, color)


def write_good_images(root):
    """{relative path: expected (SIZE, SIZE, 3) uint8 pixels, or a checking function}."""
    expected = {}

    def add(name, image, pixels, **options):
        save(os.path.join(root, name), image, **options)
        expected[name] = pixels

    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    add("a_rgb.png", solid("RGB", (20, 20), (200, 30, 60)), rgb + (200, 30, 60))
    add("b_gray.png", solid("L", (20, 20), 90), rgb + 90)
    # Fully transparent: white; half transparent: blended with white.
    add("c_rgba_clear.png", solid("RGBA", (12, 12), (10, 20, 30, 0)), rgb + WHITE)
    blended = np.rint(np.array([0, 100, 200]) * 128 / 255 + WHITE * (1 - 128 / 255))
    add("d_rgba_half.png", solid("RGBA", (12, 12), (0, 100, 200, 128)), rgb + blended)
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 40, 160, 220] + [0, 0, 0] * 254)
    add("e_palette.png", palette, rgb + (40, 160, 220))
    clear_palette = Image.new("P", (16, 16), 1)
    clear_palette.putpalette([0, 0, 0, 40, 160, 220] + [0, 0, 0] * 254)
    add("f_palette_transparent.png", clear_palette, rgb + WHITE, transparency=1)
    # 16-bit: 128 * 257 must become 128, not be clipped to 255 (torchvision's #2218).
    sixteen = Image.fromarray(np.full((10, 10), 128 * 257, np.uint16))
    add("g_16bit.png", sixteen, rgb + 128)
    add("h_cmyk.jpg", solid("CMYK", (16, 16), (0, 255, 255, 0)),
        lambda pixels: np.abs(pixels.astype(int) - (255, 0, 0)).max() <= 12, quality=100)
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the left half becomes the top.
    wide = Image.new("RGB", (16, 8))
    wide.paste((255, 0, 0), (0, 0, 8, 8))
    wide.paste((0, 0, 255), (8, 0, 16, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    add("i_exif_rotated.png", wide,
        lambda pixels: (pixels[0, :, 0] > 200).all() and (pixels[-1, :, 2] > 200).all(),
        exif=exif)
    frames = [solid("RGB", (10, 10), (0, 200, 0)), solid("RGB", (10, 10), (0, 0, 200))]
    gif = os.path.join(root, "j_animated.gif")
    os.makedirs(root, exist_ok=True)
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    expected["j_animated.gif"] = lambda pixels: np.abs(pixels.astype(int) - (0, 200, 0)).max() <= 3
    add("k_tiny.png", solid("RGB", (1, 1), (5, 250, 5)), rgb + (5, 250, 5))
    # 30x10: black | white | black; the centre square is the white third.
    strip = Image.new("L", (30, 10), 0)
    strip.paste(WHITE, (10, 0, 20, 10))
    add("l_non_square.png", strip, rgb + WHITE)
    add("m.bmp", solid("RGB", (9, 9), (1, 2, 3)), rgb + (1, 2, 3))
    add("n.webp", solid("RGB", (9, 9), (100, 100, 100)),
        lambda pixels: np.abs(pixels.astype(int) - 100).max() <= 2, lossless=True)
    add("o.TIFF", solid("RGB", (9, 9), (7, 77, 177)), rgb + (7, 77, 177))
    return expected


def write_bad_files(root, monkeypatch):
    """{relative path: a word its skip reason must hold}."""
    os.makedirs(root, exist_ok=True)
    buffer = io.BytesIO()
    noisy = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(buffer, "JPEG")
    with open(os.path.join(root, "x_truncated.jpg"), "wb") as handle:
        handle.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    open(os.path.join(root, "x_empty.png"), "wb").close()
    with open(os.path.join(root, "x_text.jpg"), "w") as handle:
        handle.write("not an image\n")
    solid("RGB", (40, 40), (0, 0, 0)).save(os.path.join(root, "x_bomb.png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40 // 2 - 1)  # the bomb: over twice it
    return {"x_truncated.jpg": "truncated", "x_empty.png": "cannot identify",
            "x_text.jpg": "cannot identify", "x_bomb.png": "Decompression"}


def test_every_image_kind_gives_its_reference_pixels_and_every_bad_file_is_skipped(
        tmp_path, monkeypatch):
    root = tmp_path / "pictures"
    expected = write_good_images(str(root))
    bad = write_bad_files(str(root), monkeypatch)
    os.makedirs(root / ".ipynb_checkpoints")
    solid("RGB", (4, 4), 0).save(root / ".ipynb_checkpoints" / "hidden.png")
    (root / "notes.txt").write_text("ignored: not an image extension")
    loaded = image_folder.load(str(root), str(tmp_path / "cache"), SIZE, 3, progress=False)
    names = sorted(expected)
    assert loaded.count == len(names) and loaded.images.shape == (len(names), SIZE, SIZE, 3)
    assert loaded.labels is None and loaded.classes is None and not loaded.used_cache
    for index, name in enumerate(names):  # sorted path order
        pixels, reference = loaded.images[index], expected[name]
        if callable(reference):
            assert reference(pixels), name
        else:
            assert np.abs(pixels.astype(int) - reference).max() <= 1, name
    skip_file = os.path.join(loaded.cache_dir, f"skipped-{SIZE}px-3ch-crop.txt")
    listed = dict(line.split("\t") for line in open(skip_file).read().splitlines())
    assert sorted(listed) == sorted(bad)
    for name, word in bad.items():
        assert word.lower() in listed[name].lower(), (name, listed[name])
    summary = [message for message in loaded.messages if message.startswith("skipped")]
    assert len(summary) == 1 and "skipped 4 files" in summary[0] and "and 1 more" in summary[0]
    assert isinstance(loaded.images, np.memmap)


def test_grayscale_by_default_when_every_image_is_gray(tmp_path):
    root = tmp_path / "gray"
    save(str(root / "a.png"), solid("L", (10, 10), 10))
    save(str(root / "b.png"), Image.fromarray(np.full((10, 10), 200 * 257, np.uint16)))
    save(str(root / "c.gif"), solid("L", (10, 10), 200).convert("P"))  # a gray palette
    loaded = image_folder.load(str(root), str(tmp_path / "cache"), SIZE, progress=False)
    assert loaded.images.shape == (3, SIZE, SIZE, 1)
    save(str(root / "d.png"), solid("RGB", (10, 10), (1, 2, 3)))
    assert image_folder.load(str(root), str(tmp_path / "cache"), SIZE,
                             progress=False).images.shape == (4, SIZE, SIZE, 3)


def test_stretch_keeps_the_whole_image(tmp_path):
    root = tmp_path / "strip"
    strip = Image.new("L", (30, 10), 0)
    strip.paste(WHITE, (10, 0, 20, 10))
    save(str(root / "s.png"), strip)
    cropped = image_folder.load(str(root), str(tmp_path / "c"), 6, 1, "crop", progress=False)
    stretched = image_folder.load(str(root), str(tmp_path / "c"), 6, 1, "stretch", progress=False)
    assert cropped.images.min() >= 250
    assert stretched.images[0, :, 0].max() < 60 and stretched.images[0, :, 3].min() > 200


def test_sub_folders_are_the_classes(tmp_path):
    root = tmp_path / "labeled"
    for label, name in enumerate(["cats", "dogs", "zebras"]):
        for index in range(label + 1):
            save(str(root / name / "deeper" / f"{index}.png"), solid("L", (5, 5), 40 * label))
    loaded = image_folder.load(str(root), str(tmp_path / "cache"), SIZE, progress=False)
    assert loaded.classes == ["cats", "dogs", "zebras"]
    assert loaded.labels.tolist() == [0, 1, 1, 2, 2, 2]
    assert [int(image[0, 0, 0]) for image in loaded.images] == [0, 40, 40, 80, 80, 80]
    save(str(root / "loose.png"), solid("L", (5, 5), 0))  # an image beside the classes: flat
    assert image_folder.load(str(root), str(tmp_path / "cache"), SIZE,
                             progress=False).classes is None


def test_the_cache_is_reused_and_rebuilt_when_the_folder_changes(tmp_path):
    root, cache = tmp_path / "photos", str(tmp_path / "cache")
    for index in range(3):
        save(str(root / f"{index}.png"), solid("RGB", (6, 6), (index, 0, 0)))
    first = image_folder.load(str(root), cache, SIZE, progress=False)
    second = image_folder.load(str(root), cache, SIZE, progress=False)
    assert second.used_cache and "from the cache" in second.messages[0]
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(np.asarray(second.images), np.asarray(first.images))
    assert not any(cache in path for path in map(str, root.rglob("*")))  # never inside the folder

    save(str(root / "3.png"), solid("RGB", (6, 6), (3, 0, 0)))
    os.remove(root / "0.png")
    save(str(root / "1.png"), solid("RGB", (7, 7), (9, 9, 9)))
    os.utime(root / "1.png", ns=(1, 1))
    third = image_folder.load(str(root), cache, SIZE, progress=False)
    assert not third.used_cache and third.fingerprint != first.fingerprint
    assert third.messages[0] == (f"rebuilding the cache of {root}: the folder changed: "
                                 f"1 added (3.png), 1 removed (0.png), 1 modified (1.png)")
    assert [int(image[0, 0, 0]) for image in third.images] == [9, 2, 3]


def test_a_damaged_cache_is_rebuilt(tmp_path):
    root, cache = tmp_path / "photos", str(tmp_path / "cache")
    save(str(root / "a.png"), solid("RGB", (6, 6), (1, 2, 3)))
    first = image_folder.load(str(root), cache, SIZE, progress=False)
    images_file = os.path.join(first.cache_dir, f"images-{SIZE}px-autoch-crop.npy")
    with open(images_file, "r+b") as handle:
        handle.truncate(100)
    again = image_folder.load(str(root), cache, SIZE, progress=False)
    assert not again.used_cache and "damaged" in again.messages[0]
    assert again.images[0, 0, 0].tolist() == [1, 2, 3]


def test_a_killed_builds_leftovers_go_and_a_live_ones_stay(tmp_path):
    root, cache = tmp_path / "photos", str(tmp_path / "cache")
    save(str(root / "a.png"), solid("RGB", (6, 6), (1, 2, 3)))
    folder = image_folder.cache_folder(str(root), cache)
    os.makedirs(folder)
    host = socket.gethostname()
    dead = os.path.join(folder, f".tmp-{host}-999999999-abc123.npy")  # no such process
    live = os.path.join(folder, f".tmp-{host}-{os.getppid()}-abc123.npy")  # the parent runs
    for path in (dead, live):
        open(path, "wb").close()
    image_folder.load(str(root), cache, SIZE, progress=False)
    assert not os.path.exists(dead) and os.path.exists(live)
    manifest = json.load(open(os.path.join(folder, "manifest-8px-autoch-crop.json")))
    assert manifest["files"][0][0] == "a.png" and manifest["format_version"] == 1


@pytest.mark.parametrize("make, words", [
    (lambda root: None, "no such folder"),
    (lambda root: open(root, "w").close(), "not a folder"),
    (lambda root: os.makedirs(root), "no image found"),
    (lambda root: (os.makedirs(root), open(os.path.join(root, "a.png"), "w").close()),
     "none of its 1 image files could be decoded"),
])
def test_a_folder_that_cannot_be_trained_on_is_one_clear_error(tmp_path, make, words):
    root = str(tmp_path / "in")
    make(root)
    with pytest.raises(image_folder.FolderError) as raised:
        image_folder.load(root, str(tmp_path / "cache"), SIZE, progress=False)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_the_cache_may_not_live_inside_the_image_folder(tmp_path):
    save(str(tmp_path / "a.png"), solid("RGB", (6, 6), (1, 2, 3)))
    with pytest.raises(image_folder.FolderError, match="inside the image folder"):
        image_folder.load(str(tmp_path), str(tmp_path / "data"), SIZE, progress=False)
