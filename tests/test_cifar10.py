"""CIFAR-10's binary version: a format-exact archive written here (fixed-length records of a label
byte and three 1,024-byte colour planes, in cifar-10-batches-bin/), read without extracting."""
import os
import tarfile

import numpy as np
import pytest

import data
from helpers import add_member, archive_path, write_cifar10


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
    with pytest.raises(data.DatasetError, match="checksum mismatch.*c32a1d4ab5d03f1284b67883e8d87530"):
        data.load_dataset("cifar10", str(tmp_path), download=False)


def test_without_the_archive_and_downloading_off_the_message_says_where_to_get_it(tmp_path):
    with pytest.raises(data.DatasetError) as raised:
        data.load_dataset("cifar10", str(tmp_path), download=False)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in str(raised.value)
    assert "c32a1d4ab5d03f1284b67883e8d87530" in str(raised.value)


def test_train_runs_on_cifar10_and_resumes(tmp_path, capsys):
    import train

    write_cifar10(archive_path(tmp_path / "data"), per_batch=8)
    argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--skip-checksum",
            "--no-download", "--batch-size", "8", "--sample-grid", "2", "--out",
            str(tmp_path / "run"), "--epochs", "1"]
    assert train.main(argv) == 0
    assert "--dataset cifar10 --splits train" in capsys.readouterr().out  # 40 images: 5 steps
    assert train.main(argv[:-1] + ["2"]) == 0
    assert "done: 10 steps, 2 epochs" in capsys.readouterr().out
