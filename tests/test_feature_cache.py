"""feature_cache.py: real images' features computed once per dataset (a folder: per fingerprint)
and feature space, only the rows not yet held computed, and the file never lost or half
written, whatever fails while it is written."""
import errno
import os

import numpy as np
import pytest

import data
from machinery import durable, feature_cache


class CountingSpace:
    """Features: each image's first four pixels; probabilities: two classes. Counts its rows."""

    def __init__(self, classes=True):
        self.rows, self.classes = 0, classes

    def predict(self, images):
        self.rows += len(images)
        flat = images.reshape(len(images), -1)[:, :4].astype(np.float32)
        return (np.eye(2)[flat[:, 0].astype(int) % 2] if self.classes else None), flat


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (50, 32, 32, 1), np.uint8)


def quiet(message):
    pass


def test_rows_are_computed_once_and_given_in_the_order_asked(tmp_path, images):
    path, space = str(tmp_path / "f" / "features-x.npz"), CountingSpace()
    probabilities, features = feature_cache.real_outputs(path, images, [7, 3, 9], space.predict,
                                                         quiet)
    np.testing.assert_array_equal(features, space.predict(images[[7, 3, 9]])[1])
    assert space.rows == 6 and probabilities.shape == (3, 2)
    space.rows = 0
    again = feature_cache.real_outputs(path, images, [9, 7], space.predict, quiet)
    assert space.rows == 0  # all from the file
    np.testing.assert_array_equal(again[1], features[[2, 0]])
    np.testing.assert_array_equal(again[0], probabilities[[2, 0]])
    more = feature_cache.real_outputs(path, images, [1, 3, 40, 9], space.predict, quiet)
    assert space.rows == 2  # only rows 1 and 40
    np.testing.assert_array_equal(more[1], CountingSpace().predict(images[[1, 3, 40, 9]])[1])
    with np.load(path) as stored:
        assert stored["rows"].tolist() == [1, 3, 7, 9, 40]
    assert not [name for name in os.listdir(tmp_path / "f") if name.startswith(".")]


def test_a_space_without_classes_keeps_features_only(tmp_path, images):
    path = str(tmp_path / "features.npz")
    for _ in range(2):
        probabilities, features = feature_cache.real_outputs(path, images, [4, 5],
                                                             CountingSpace(False).predict, quiet)
        assert probabilities is None and features.shape == (2, 4)


def test_each_folder_fingerprint_and_space_has_a_file_of_its_own(tmp_path, images):
    folder = data.Dataset(data.FOLDER, images, None, None, "abc")
    changed = folder._replace(fingerprint="def")
    path = feature_cache.cache_path(folder, str(tmp_path / "pics"), str(tmp_path), "space-1")
    assert path.startswith(str(tmp_path / "folders" / "pics-")) and \
        path.endswith("/features-abc-space-1.npz")
    assert feature_cache.cache_path(changed, str(tmp_path / "pics"), str(tmp_path),
                                    "space-1").endswith("/features-def-space-1.npz")
    named = data.Dataset("mnist", images[:, :16, :16], None)
    assert feature_cache.cache_path(named, None, "d", "k", ["train", "test"]) == \
        os.path.join("d", "features", "mnist-train+test-16px", "features-k.npz")


@pytest.mark.parametrize("damage", [b"", b"garbage", "truncated", "other rows"])
def test_a_damaged_file_is_said_and_computed_again(tmp_path, images, damage):
    path = str(tmp_path / "features.npz")
    feature_cache.real_outputs(path, images, range(10), CountingSpace().predict, quiet)
    content = open(path, "rb").read()
    if damage == "truncated":
        damage = content[:len(content) // 2]
    elif damage == "other rows":
        arrays = dict(np.load(path))
        arrays["rows"] = arrays["rows"][::-1].copy()
        np.savez(path, **arrays)
        damage = open(path, "rb").read()
    open(path, "wb").write(damage)
    messages, space = [], CountingSpace()
    _, features = feature_cache.real_outputs(path, images, [2, 5], space.predict,
                                             messages.append)
    assert space.rows == 2 and len(messages) == 1 and "cannot be read" in messages[0]
    np.testing.assert_array_equal(features, CountingSpace().predict(images[[2, 5]])[1])
    with np.load(path) as stored:  # rewritten whole
        assert stored["rows"].tolist() == [2, 5]


def failing_savez(monkeypatch, error):
    """np.savez writes half of its bytes, then fails as a full disk (or a kill) would."""
    original = np.savez

    def half_then_fail(handle, **arrays):
        handle.write(b"PK\x03\x04 half a file")
        raise error

    monkeypatch.setattr(np, "savez", half_then_fail)
    return original


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   KeyboardInterrupt()])
def test_a_write_that_fails_leaves_the_file_as_it_was(tmp_path, images, monkeypatch, error):
    path = str(tmp_path / "features.npz")
    feature_cache.real_outputs(path, images, range(5), CountingSpace().predict, quiet)
    before = open(path, "rb").read()
    failing_savez(monkeypatch, error)
    messages = []
    if isinstance(error, OSError):  # a full disk: said, and the features used all the same
        _, features = feature_cache.real_outputs(path, images, [1, 30], CountingSpace().predict,
                                                 messages.append)
        assert features.shape == (2, 4)
        assert messages == [f"warning: cannot keep the features in {path} (No space left on "
                            f"device); they are used all the same, and computed again next time"]
    else:  # a kill mid-write: the process ends, the file stays whole
        with pytest.raises(KeyboardInterrupt):
            feature_cache.real_outputs(path, images, [1, 30], CountingSpace().predict, quiet)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["features.npz"]  # no temporary file left
    monkeypatch.undo()
    space = CountingSpace()
    feature_cache.real_outputs(path, images, range(5), space.predict, quiet)
    assert space.rows == 0


def test_an_unwritable_folder_is_a_warning(tmp_path, images, monkeypatch):
    def refuse(path, write):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(durable, "atomic_write", refuse)
    messages = []
    feature_cache.real_outputs(str(tmp_path / "f.npz"), images, [1], CountingSpace().predict,
                               messages.append)
    assert "Permission denied" in messages[0] and not os.path.exists(tmp_path / "f.npz")
