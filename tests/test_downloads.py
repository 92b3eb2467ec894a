"""machinery/downloads.py, through data.py's datasets and on its own, against a stand-in for the
dataset hosts on 127.0.0.1: mirrors tried in turn, the MD5 checked, nothing left behind by a
failure, a message naming the URL and the path, the usual permissions, never downloaded twice."""
import hashlib
import os

import pytest

import data
from machinery import downloads
from helpers import LocalServer, write_mnist_split


@pytest.fixture
def mnist_files(tmp_path):
    source = str(tmp_path / "source")
    write_mnist_split(source, "train", 30)
    files = {}
    for name in os.listdir(source):
        with open(os.path.join(source, name), "rb") as handle:
            files[name] = handle.read()
    return files


def test_download_tries_mirrors_verifies_and_never_downloads_twice(tmp_path, monkeypatch,
                                                                   mnist_files):
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
        downloads.download_file(server.url + name, str(target),
                                hashlib.md5(mnist_files[name]).hexdigest())
        assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)
        assert target.read_bytes() == mnist_files[name]
    finally:
        server.close()
