"""data.py: parsing the real formats, scaling, batching, downloads and every error path.

The files are written here in the exact formats of the published ones: SVHN as a MATLAB .mat
with X (32, 32, 3, N) uint8 and y (N, 1) where 10 means the digit 0; MNIST as gzipped IDX with
big-endian headers and magic numbers 2051 (images) and 2049 (labels).
"""
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest
import scipy.io

import data
from machinery import downloads, image_rows
from helpers import idx_bytes, write_gzip, write_mnist_split, write_svhn


def test_svhn_layout_labels_and_default_splits(tmp_path):
    train_x, train_y = write_svhn(str(tmp_path / "svhn" / "train_32x32.mat"), 12, seed=1)
    test_x, _ = write_svhn(str(tmp_path / "svhn" / "test_32x32.mat"), 7, seed=2)
    dataset = data.load_dataset("svhn", str(tmp_path), verify=False, download=False)
    assert dataset.images.shape == (19, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert dataset.labels.shape == (19,)
    np.testing.assert_array_equal(dataset.images[3], train_x[:, :, :, 3])
    np.testing.assert_array_equal(dataset.images[12 + 4], test_x[:, :, :, 4])
    assert dataset.labels[9] == 0 and train_y[9, 0] == 10  # 10 means the digit 0
    np.testing.assert_array_equal(dataset.labels[:12], np.arange(12) % 10 + 1 - 10 * (np.arange(12) % 10 == 9))
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


def test_rows_are_read_a_chunk_at_a_time_and_resized_as_resize_does(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (23, 16, 16, 3)).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    cache = np.load(tmp_path / "images.npy", mmap_mode="r")
    monkeypatch.setattr(image_rows, "READ_CHUNK", 4)
    rows = np.array([0, 3, 4, 9, 10, 11, 22])
    np.testing.assert_array_equal(image_rows.read_rows(cache, rows), images[rows])
    np.testing.assert_array_equal(image_rows.read_rows(cache, rows, 8), image_rows.resize(images[rows], 8))
    lazy = image_rows.ImageRows(cache, rows, 8)
    assert len(lazy) == 7
    np.testing.assert_array_equal(lazy[2:5], image_rows.resize(images[rows[2:5]], 8))
    assert image_rows.read_rows(cache, []).shape == (0, 16, 16, 3)


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


class LocalServer:
    """A stand-in for the dataset hosts on 127.0.0.1: serves `files`, 404 for the rest."""

    def __init__(self, files):
        files_ = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files_.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mnist_files(tmp_path):
    source = str(tmp_path / "source")
    write_mnist_split(source, "train", 30)
    files = {}
    for name in os.listdir(source):
        with open(os.path.join(source, name), "rb") as handle:
            files[name] = handle.read()
    return files


def test_download_tries_mirrors_verifies_and_never_downloads_twice(tmp_path, monkeypatch, mnist_files):
    server = LocalServer(mnist_files)
    try:
        dead = "http://127.0.0.1:9/"  # nothing listens on the discard port: the first mirror fails
        monkeypatch.setattr(data, "_MNIST_MIRRORS", (dead, server.url))
        md5s = {name: hashlib.md5(body).hexdigest() for name, body in mnist_files.items()}
        monkeypatch.setitem(data.MNIST_FILES, "train", tuple(
            (name, md5s[name]) for name, _ in data.MNIST_FILES["train"]))
        dataset = data.load_dataset("mnist", str(tmp_path / "d"), ["train"])
        assert dataset.images.shape == (30, 32, 32, 1)
        folder = tmp_path / "d" / "mnist"
        assert sorted(os.listdir(folder)) == sorted(mnist_files)  # no temporary files left
        server.close()  # a second load must not need the network
        assert len(data.load_dataset("mnist", str(tmp_path / "d"), ["train"]).images) == 30
    finally:
        server.close()


def test_download_checksum_mismatch_leaves_no_file(tmp_path, monkeypatch, mnist_files):
    server = LocalServer(mnist_files)
    try:
        monkeypatch.setattr(data, "_MNIST_MIRRORS", (server.url,))
        with pytest.raises(data.DatasetError, match="checksum mismatch") as error:
            data.load_dataset("mnist", str(tmp_path), ["train"])  # the real MD5s: mismatch
        assert "To place it by hand" in str(error.value)
        assert os.listdir(tmp_path / "mnist") == []
    finally:
        server.close()


def test_download_failure_names_url_and_path(tmp_path, monkeypatch):
    server = LocalServer({})  # every file 404
    try:
        monkeypatch.setattr(data, "_SVHN_URL", server.url)
        with pytest.raises(data.DatasetError) as error:
            data.load_dataset("svhn", str(tmp_path), ["test"])
        message = str(error.value)
        assert server.url + "test_32x32.mat" in message and "Not Found" in message
        assert os.path.join(str(tmp_path), "svhn", "test_32x32.mat") in message
        assert os.listdir(tmp_path / "svhn") == []
    finally:
        server.close()


def test_downloaded_files_get_the_usual_permissions(tmp_path, mnist_files, umask):
    server = LocalServer(mnist_files)
    try:
        name = "train-images-idx3-ubyte.gz"
        target = tmp_path / name
        downloads.download_file(server.url + name, str(target), hashlib.md5(mnist_files[name]).hexdigest())
        assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)
        assert target.read_bytes() == mnist_files[name]
    finally:
        server.close()
