"""machinery/image_rows.py: rows of a memory-mapped cache read a chunk at a time, and resized as
resize does (resize itself, as the datasets load: test_data.py)."""
import numpy as np

from machinery import image_rows


def test_rows_are_read_a_chunk_at_a_time_and_resized_as_resize_does(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (23, 16, 16, 3)).astype(np.uint8)
    np.save(tmp_path / "images.npy", images)
    cache = np.load(tmp_path / "images.npy", mmap_mode="r")
    monkeypatch.setattr(image_rows, "READ_CHUNK", 4)
    rows = np.array([0, 3, 4, 9, 10, 11, 22])
    np.testing.assert_array_equal(image_rows.read_rows(cache, rows), images[rows])
    np.testing.assert_array_equal(image_rows.read_rows(cache, rows, 8),
                                  image_rows.resize(images[rows], 8))
    lazy = image_rows.ImageRows(cache, rows, 8)
    assert len(lazy) == 7
    np.testing.assert_array_equal(lazy[2:5], image_rows.resize(images[rows[2:5]], 8))
    assert image_rows.read_rows(cache, []).shape == (0, 16, 16, 3)
