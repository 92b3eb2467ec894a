"""machinery/pictures.py: sample tiles are drawn at least 64 pixels wide, a 64x64 sample one to
one (the drawing itself is checked in test_training.py's run)."""
from machinery import pictures


def test_sample_tiles_are_at_least_64_pixels_and_64_is_drawn_one_to_one():
    assert [pictures.tile_scale(size) for size in (16, 32, 64, 128)] == [4, 2, 1, 1]


def test_rolling_means_average_the_values_logged_within_the_window():
    steps = [10, 20, 30, 40, 50]
    values = [1.0, 0.0, 1.0, 0.0, 4.0]
    # a 20-step window holds the row itself and the one before it; the first row is alone
    assert list(pictures.rolling_means(steps, values, window_steps=20)) == [1.0, 0.5, 0.5, 0.5,
                                                                            2.0]
    assert list(pictures.rolling_means(steps, values, window_steps=1000)) == [
        1.0, 0.5, 2 / 3, 0.5, 1.2]


def test_the_health_plot_draws_runs_with_and_without_augmentation(tmp_path):
    """Three panels from metrics rows as metrics.read_metrics returns them: a run without
    augmentation has no augment_p field, and rows from before d_real_sign existed are left out."""
    def rows(p):
        return [{"step": step, "d_loss": 1.0, "g_loss": 2.0, "d_real_sign": 0.5,
                 **({"augment_p": p} if p is not None else {})} for step in range(10, 310, 10)]
    old_layout = [{"step": 5, "d_loss": 1.0, "g_loss": 2.0}]
    path = tmp_path / "health.png"
    pictures.save_health_plot(str(path), [("none", old_layout + rows(None)),
                                          ("adaptive", rows(0.1))], target=0.6, alarm=0.9)
    image = pictures._pyplot().imread(str(path))
    assert image.shape[:2] == (400, 1500)  # 15 x 4 inches at 100 dpi: the three panels
