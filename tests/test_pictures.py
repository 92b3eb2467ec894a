"""machinery/pictures.py: sample tiles are drawn at least 64 pixels wide, a 64x64 sample one to
one (the drawing itself is checked in test_training.py's run)."""
from machinery import pictures


def test_sample_tiles_are_at_least_64_pixels_and_64_is_drawn_one_to_one():
    assert [pictures.tile_scale(size) for size in (16, 32, 64, 128)] == [4, 2, 1, 1]
