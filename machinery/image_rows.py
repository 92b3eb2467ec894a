"""Rows of uint8 image arrays (N, size, size, C): resized with Pillow's Lanczos filter, and read a
chunk at a time from a memory-mapped folder cache that may be larger than RAM."""
import numpy as np

from machinery import image_folder

# Rows read from a (memory-mapped) image array at a time by read_rows: a folder's cache may be
# larger than RAM, so what reads many of its rows holds only this many at their full size at once.
READ_CHUNK = 1024


def resize(images, size):
    """uint8 (N, h, w, C) -> (N, size, size, C) with Pillow's Lanczos filter; the same array when
    it already has that size.

    Lanczos (a windowed sinc, 3 lobes) is sharp when enlarging, and when shrinking Pillow widens
    it by the reduction factor, so every source pixel is weighed in (antialiased, unlike a
    sampling resize): image_folder.square, which resizes the user's pictures too.
    """
    if images.shape[1:3] == (size, size):
        return images
    from PIL import Image  # imported here: only another image size needs it

    resized = np.empty((len(images), size, size, images.shape[3]), np.uint8)
    for index, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
        resized[index] = np.asarray(image_folder.square(picture, size),
                                    np.uint8).reshape(size, size, -1)
    return resized


def read_rows(images, indices, size=None):
    """images[indices] as a uint8 array, resized to `size` (resize) when given, read and resized
    READ_CHUNK rows at a time: of a memory-mapped folder cache only those rows are read, and only
    one chunk of them is in memory at the cache's size."""
    indices = np.asarray(indices, np.int64)
    size = size or images.shape[1]
    out = np.empty((len(indices), size, size, images.shape[3]), np.uint8)
    for start in range(0, len(indices), READ_CHUNK):
        chunk = indices[start:start + READ_CHUNK]
        out[start:start + len(chunk)] = resize(np.asarray(images[chunk]), size)
    return out


class ImageRows:
    """The rows `indices` of an image array (a folder's memory-mapped cache) at `size`, read and
    resized only when sliced (rows[start:stop], by read_rows): a model runs over them a batch at
    a time without all of them in memory."""

    def __init__(self, images, indices, size=None):
        self.images, self.indices, self.size = images, np.asarray(indices, np.int64), size

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, positions):
        return read_rows(self.images, self.indices[positions], self.size)
