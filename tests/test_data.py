"""data.py: parsing the real formats, scaling, batching, resizing as the datasets load, and every
error path.

The files are written (helpers.py) in the exact formats of the published ones: SVHN as a MATLAB
.mat with X (32, 32, 3, N) uint8 and y (N, 1) where 10 means the digit 0; MNIST as gzipped IDX with
big-endian headers and magic numbers 2051 (images) and 2049 (labels); CIFAR-10's binary version as
a format-exact archive (fixed-length records of a label byte and three 1,024-byte colour planes, in
cifar-10-batches-bin/), read without extracting.
"""
import os
import tarfile

import numpy as np
import pytest
import scipy.io

import data
from machinery import image_rows
from helpers import (add_member, archive_path, idx_bytes, write_cifar10, write_gzip,
                     write_mnist_split, write_svhn)


def test_svhn_layout_labels_and_default_splits(tmp_path):
    train_x, train_y = write_svhn(str(tmp_path / "svhn" / "train_32x32.mat"), 12, seed=1)
    test_x, _ = write_svhn(str(tmp_path / "svhn" / "test_32x32.mat"), 7, seed=2)
    dataset = data.load_dataset("svhn", str(tmp_path), verify=False, download=False)
    assert dataset.images.shape == (19, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert dataset.labels.shape == (19,)
    np.testing.assert_array_equal(dataset.images[3], train_x[:, :, :, 3])
    np.testing.assert_array_equal(dataset.images[12 + 4], test_x[:, :, :, 4])
    assert dataset.labels[9] == 0 and train_y[9, 0] == 10  # 10 means the digit 0
    np.testing.assert_array_equal(dataset.labels[:12],
                                  np.arange(12) % 10 + 1 - 10 * (np.arange(12) % 10 == 9))
    only_test = data.load_dataset("svhn", str(tmp_path), ["test"], verify=False, download=False)
    assert len(only_test.images) == 7
    assert data.channels("svhn") == 3 and data.channels("mnist") == 1


def test_mnist_padding_and_default_splits(tmp_path):
    digits, labels = write_mnist_split(str(tmp_path / "mnist"), "train", 20)
    write_mnist_split(str(tmp_path / "mnist"), "test", 5, seed=1)
    dataset = data.load_dataset("mnist", str(tmp_path), verify=False, download=False)
    assert dataset.images.shape == (25, 32, 32, 1) and dataset.images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.images[0, 2:30, 2:30, 0], digits[0])
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(dataset.images[:, border, 0] == 0)  # padded with the background value
    np.testing.assert_array_equal(dataset.labels[:20], labels)


def test_mnist_sample_ships_5000_real_digits():
    dataset = data.load_dataset("mnist-sample")
    assert dataset.images.shape == (5000, 32, 32, 1) and dataset.images.dtype == np.uint8
    assert set(np.unique(dataset.labels)) == set(range(10))
    assert dataset.images[:, :2].max() == 0  # the padding rows
    assert dataset.images.max() == 255


def test_scale_maps_to_minus_one_one():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    scaled = data.scale(pixels)
    assert scaled.dtype == np.float32
    assert scaled.min() == -1.0 and scaled.max() == 1.0
    np.testing.assert_allclose(scaled.ravel(), np.arange(256) / 127.5 - 1, atol=1e-6)


def test_the_datasets_are_resized_once_at_load(data_dir):
    small = data.load_dataset("svhn", data_dir, verify=False, download=False)
    large = data.load_dataset("svhn", data_dir, verify=False, download=False, image_size=64)
    assert large.images.shape == (64, 64, 64, 3) and large.images.dtype == np.uint8
    np.testing.assert_array_equal(large.labels, small.labels)
    np.testing.assert_array_equal(large.images, image_rows.resize(small.images, 64))
    assert image_rows.resize(small.images, 32) is small.images
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], (32, 1, 1))[None]
    back = image_rows.resize(image_rows.resize(ramp, 64), 32).astype(int)
    assert np.abs(back - ramp).max() <= 1  # a smooth picture survives up and down
    flat = np.full((2, 32, 32, 1), 200, np.uint8)  # an antialiasing filter keeps a flat field
    assert np.all(image_rows.resize(flat, 16) == 200)
    assert np.all(image_rows.resize(flat, 128) == 200)


def test_batches_are_shuffled_deterministically_per_seed():
    def epochs(seed, count=2):
        iterator = data.BatchIterator(10, 3, seed)
        return [[list(b) for b in iterator.epoch_batches()] for _ in range(count)]
    first, again, other = epochs(5), epochs(5), epochs(6)
    assert first == again and first != other
    assert first[0] != first[1]  # a new order every epoch
    assert all(len(batch) == 3 for epoch in first for batch in epoch)
    assert len(first[0]) == 3  # the partial batch of 1 is dropped
    seen = sorted(i for batch in first[0] for i in batch)
    assert len(set(seen)) == 9 and set(seen) <= set(range(10))
    kept = data.BatchIterator(10, 3, 5, drop_remainder=False)
    last_epoch = list(kept.epoch_batches())
    assert len(last_epoch) == 4 and len(last_epoch[-1]) == 1
    assert sorted(i for batch in last_epoch for i in batch) == list(range(10))


def test_iterator_state_restores_the_exact_batches():
    reference = data.BatchIterator(50, 8, seed=3)
    expected = [list(b) for _ in range(3) for b in reference.epoch_batches()]
    resumed = data.BatchIterator(50, 8, seed=3)
    got = []
    for index, batch in enumerate(resumed.epoch_batches()):
        got.append(list(batch))
        if index == 3:
            break
    state = resumed.state()
    assert state == {"seed": 3, "epoch": 0, "batch_index": 4}
    fresh = data.BatchIterator(50, 8, seed=3)
    fresh.restore(state)
    while fresh.epoch < 3:
        got.extend(list(b) for b in fresh.epoch_batches())
    assert got == expected
    with pytest.raises(ValueError, match="seed"):
        data.BatchIterator(50, 8, seed=4).restore(state)
    finished = data.BatchIterator(16, 8)
    for _ in zip(range(2), finished.epoch_batches()):
        pass
    finished.finish_epoch_if_done()
    assert finished.state()["epoch"] == 1 and finished.state()["batch_index"] == 0


def test_iterator_rejects_impossible_batches():
    with pytest.raises(ValueError, match="exceeds"):
        data.BatchIterator(5, 8)
    with pytest.raises(ValueError, match="empty"):
        data.BatchIterator(0, 8)


@pytest.mark.parametrize("damage, message", [
    ("truncate", "not a readable MATLAB"),
    ("keys", "missing variable"),
    ("dtype", "must be uint8"),
    ("count", "must have shape"),
    ("labels", "labels must be 1..10"),
])
def test_svhn_format_errors(tmp_path, damage, message):
    path = str(tmp_path / "svhn" / "train_32x32.mat")
    write_svhn(path, 6)
    if damage == "truncate":
        with open(path, "rb") as handle:
            content = handle.read()
        with open(path, "wb") as handle:
            handle.write(content[:len(content) // 2])
    elif damage == "keys":
        scipy.io.savemat(path, {"images": np.zeros((32, 32, 3, 2), np.uint8)})
    elif damage == "dtype":
        scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.float32), "y": np.ones((2, 1))})
    elif damage == "count":
        scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))})
    else:
        scipy.io.savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.zeros((2, 1))})
    with pytest.raises(data.DatasetError, match=message) as error:
        data.load_dataset("svhn", str(tmp_path), ["train"], verify=False, download=False)
    assert path in str(error.value)


@pytest.mark.parametrize("damage, message", [
    ("magic", "wrong IDX magic number 2049, expected 2051"),
    ("truncate", "truncated"),
    ("gzip", "not a readable gzip"),
    ("count", "holds 10 images but"),
    ("size", "must be 28x28"),
])
def test_mnist_format_errors(tmp_path, damage, message):
    folder = str(tmp_path / "mnist")
    write_mnist_split(folder, "train", 10)
    images_path = os.path.join(folder, "train-images-idx3-ubyte.gz")
    labels_path = os.path.join(folder, "train-labels-idx1-ubyte.gz")
    digits = np.zeros((10, 28, 28), np.uint8)
    if damage == "magic":
        write_gzip(images_path, idx_bytes(digits, 2049))
    elif damage == "truncate":
        write_gzip(images_path, idx_bytes(digits, 2051)[:-100])
    elif damage == "gzip":
        with open(images_path, "wb") as handle:
            handle.write(b"this is not gzip")
    elif damage == "count":
        write_gzip(labels_path, idx_bytes(np.zeros(9), 2049))
    else:
        write_gzip(images_path, idx_bytes(np.zeros((10, 27, 27)), 2051))
    with pytest.raises(data.DatasetError, match=message):
        data.load_dataset("mnist", str(tmp_path), ["train"], verify=False, download=False)


def test_unknown_names_and_missing_files(tmp_path):
    with pytest.raises(data.DatasetError, match="unknown dataset"):
        data.load_dataset("cifar", str(tmp_path))
    with pytest.raises(data.DatasetError, match="unknown split"):
        data.load_dataset("svhn", str(tmp_path), ["validation"])
    with pytest.raises(data.DatasetError, match="downloading is off") as error:
        data.load_dataset("svhn", str(tmp_path), ["train"], download=False)
    message = str(error.value)
    assert "http://ufldl.stanford.edu/housenumbers/train_32x32.mat" in message
    assert os.path.join(str(tmp_path), "svhn", "train_32x32.mat") in message
    assert "e26dedcc434d2e4c54c9b2d4a06d8373" in message


def test_checksum_mismatch_of_a_file_placed_by_hand(tmp_path):
    write_svhn(str(tmp_path / "svhn" / "train_32x32.mat"), 4)
    with pytest.raises(data.DatasetError, match="checksum mismatch"):
        data.load_dataset("svhn", str(tmp_path), ["train"])
    # verify=False skips only the checksum: the file still loads.
    assert len(data.load_dataset("svhn", str(tmp_path), ["train"], verify=False).images) == 4


# --- CIFAR-10 -------------------------------------------------------------------------------------


def test_train_is_the_default_split_and_every_pixel_is_where_it_belongs(tmp_path):
    written = write_cifar10(archive_path(tmp_path))
    dataset = data.load_dataset("cifar10", str(tmp_path), verify=False, download=False)
    train = data.CIFAR10_MEMBERS["train"]
    expected = np.concatenate([written[member][0] for member in train])
    assert dataset.images.shape == (15, 32, 32, 3) and dataset.images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.images, expected)
    np.testing.assert_array_equal(dataset.labels,
                                  np.concatenate([written[member][1] for member in train]))
    test = data.load_dataset("cifar10", str(tmp_path), ["test"], verify=False, download=False)
    np.testing.assert_array_equal(test.images, written[data.CIFAR10_MEMBERS["test"][0]][0])
    assert data.channels("cifar10") == 3


def test_one_pixel_lands_in_its_row_column_and_channel(tmp_path):
    """A hand-built record: red plane byte 1 + 32*5 + 7 is row 5, column 7, channel 0."""
    payload = bytearray(data._CIFAR10_RECORD)
    payload[0] = 4
    payload[1 + 32 * 5 + 7] = 200                # red
    payload[1 + 1024 + 32 * 9 + 2] = 100         # green
    payload[1 + 2048 + 32 * 31 + 31] = 50        # blue
    path = archive_path(tmp_path)
    os.makedirs(os.path.dirname(path))
    with tarfile.open(path, "w:gz") as archive:
        for member in data.CIFAR10_MEMBERS["test"]:
            add_member(archive, member, bytes(payload))
    image = data.load_dataset("cifar10", str(tmp_path), ["test"], verify=False,
                              download=False).images[0]
    assert image[5, 7, 0] == 200 and image[9, 2, 1] == 100 and image[31, 31, 2] == 50
    assert int(image.sum()) == 350


def test_no_member_is_extracted_to_disk(tmp_path):
    outside = tmp_path / "evil.txt"
    write_cifar10(archive_path(tmp_path / "data"),
                  extra=[(f"../../{outside.name}", b"x"), ("/tmp/absolute-evil", b"x")])
    data.load_dataset("cifar10", str(tmp_path / "data"), verify=False, download=False)
    assert not outside.exists() and sorted(os.listdir(tmp_path / "data" / "cifar10")) == \
        [data.CIFAR10_ARCHIVE[0]]


@pytest.mark.parametrize("damage, message", [
    (lambda path: write_cifar10(path, skip=(data.CIFAR10_MEMBERS["train"][2],)),
     "lacks cifar-10-batches-bin/data_batch_3.bin"),
    (lambda path: write_cifar10(path, extra=()) and _truncate(path), "not a readable"),
    (lambda path: open(path, "wb").write(b"not a tar"), "not a readable"),
])
def test_a_damaged_archive_is_one_clear_error(tmp_path, damage, message):
    path = archive_path(tmp_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    damage(path)
    with pytest.raises(data.DatasetError, match=message):
        data.load_dataset("cifar10", str(tmp_path), verify=False, download=False)


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    return True


def test_records_of_the_wrong_length_and_labels_out_of_range(tmp_path):
    path = archive_path(tmp_path)
    os.makedirs(os.path.dirname(path))
    with tarfile.open(path, "w:gz") as archive:
        add_member(archive, data.CIFAR10_MEMBERS["test"][0], b"\x01" * (data._CIFAR10_RECORD + 5))
    with pytest.raises(data.DatasetError, match="not a whole number of 3073-byte records"):
        data.load_dataset("cifar10", str(tmp_path), ["test"], verify=False, download=False)
    os.remove(path)
    with tarfile.open(path, "w:gz") as archive:
        add_member(archive, data.CIFAR10_MEMBERS["test"][0], b"\x0c" * data._CIFAR10_RECORD)
    with pytest.raises(data.DatasetError, match="labels must be 0..9, found 12"):
        data.load_dataset("cifar10", str(tmp_path), ["test"], verify=False, download=False)


def test_the_archive_is_checked_against_its_published_md5(tmp_path):
    write_cifar10(archive_path(tmp_path))
    with pytest.raises(data.DatasetError,
                       match="checksum mismatch.*c32a1d4ab5d03f1284b67883e8d87530"):
        data.load_dataset("cifar10", str(tmp_path), download=False)


def test_without_the_archive_and_downloading_off_the_message_says_where_to_get_it(tmp_path):
    with pytest.raises(data.DatasetError) as raised:
        data.load_dataset("cifar10", str(tmp_path), download=False)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in str(raised.value)
    assert "c32a1d4ab5d03f1284b67883e8d87530" in str(raised.value)


def test_every_labeled_dataset_names_its_classes(tmp_path):
    assert data.class_names(data.Dataset("svhn", None, None)) == [str(d) for d in range(10)]
    assert data.class_names(data.Dataset("cifar10", None, None))[:3] == ["airplane",
                                                                         "automobile", "bird"]
    labels = np.array([0, 1, 1])
    folder = data.Dataset(data.FOLDER, None, labels, ("cats", "dogs"), "f", None)
    assert data.class_names(folder) == ["cats", "dogs"]
    flat = data.Dataset(data.FOLDER, None, None, None, "f", None)
    assert data.class_names(flat) is None
