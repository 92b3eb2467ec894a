"""machinery/training_health.py: the line a run says once when its discriminator learns the
training images by heart (without augmentation), or has won."""
import math

import pytest

from machinery import training_health


# --- The health line -------------------------------------------------------------------------
def test_a_discriminator_sure_of_every_real_image_is_said_once_without_augmentation():
    health = training_health.TrainingHealth(0.1, augmenting=False)
    lines = [health.observe(1.0, 2.0, 0.0) for _ in range(training_health.WINDOW)]
    assert lines == [None] * training_health.WINDOW  # D unsure of the reals: nothing to say
    lines = [health.observe(0.8, 2.5, 0.95) for _ in range(training_health.WINDOW)]
    said = [line for line in lines if line]
    assert len(said) == 1 and "learning them by heart" in said[0]
    assert "--augment translation,cutout,color" in said[0]
    # Said when the window's mean passes the bound: after 190 steps at 0.95 (190 x 0.95 / 200).
    assert lines.index(said[0]) == math.ceil(training_health.MEMORISING_SIGN *
                                             training_health.WINDOW / 0.95) - 1
    augmented = training_health.TrainingHealth(0.1, augmenting=True)
    assert not any(augmented.observe(0.8, 2.5, 0.95) for _ in range(3 * training_health.WINDOW))


def test_a_discriminator_at_its_floor_while_the_generator_rises_has_won():
    floor = training_health.loss_floor(0.1)
    assert floor == pytest.approx(0.3251, abs=1e-4)  # the binary entropy of 0.9
    assert training_health.loss_floor(0.0) == 0.0
    health = training_health.TrainingHealth(0.1, augmenting=True)
    window = training_health.WINDOW
    lines = [health.observe(floor + 0.02, 3.0 + step / window, 0.5) for step in range(2 * window)]
    said = [line for line in lines if line]
    assert len(said) == 1 and "has won" in said[0] and "0.325" in said[0]
    steady = training_health.TrainingHealth(0.1, augmenting=True)  # G's loss does not rise
    assert not any(steady.observe(floor + 0.02, 3.0, 0.5) for _ in range(3 * window))
    fighting = training_health.TrainingHealth(0.1, augmenting=True)  # D is not at its floor
    assert not any(fighting.observe(1.1, 2.0 + step / window, 0.3) for step in range(3 * window))


# --- A resume --------------------------------------------------------------------------------
def loss_rows(first, last, every, d_real_sign, d_loss=0.8, g_loss=2.5):
    """metrics.csv rows of losses, one every `every` steps from `first` to `last`."""
    return [{"step": step, "epoch": 1, "d_loss": d_loss, "g_loss": g_loss,
             "d_real_sign": d_real_sign} for step in range(first, last + 1, every)]


def test_a_resume_goes_on_with_the_steps_metrics_csv_holds():
    window = training_health.WINDOW
    # 190 steps at 0.95 before the resume (19 rows of 10): one more step at 0.95 passes the bound
    # (191 x 0.95 / 200 > 0.9), as in one run; without the rows it would take 190 more.
    rows = loss_rows(10, 190, 10, 0.95)
    rows.insert(5, {"step": 60, "epoch": 1, "frechet_distance": 40.0})  # an evaluation row
    resumed = training_health.TrainingHealth(0.1, augmenting=False)
    resumed.resume(rows)
    assert resumed.observe(0.8, 2.5, 0.95) is None  # 191 steps: still short of the window
    lines = [resumed.observe(0.8, 2.5, 0.95) for _ in range(window)]
    assert lines.index(next(line for line in lines if line)) == 8  # at step 200
    fresh = training_health.TrainingHealth(0.1, augmenting=False)
    assert not any(fresh.observe(0.8, 2.5, 0.95) for _ in range(window - 1))
    # d_real_sign is each row's mean over its interval, so the window's mean is exact.
    mixed = training_health.TrainingHealth(0.1, augmenting=False)
    mixed.resume(loss_rows(10, 100, 10, 1.0) + loss_rows(110, 200, 10, 0.8))
    assert training_health._mean(list(mixed.recent), 2) == pytest.approx(0.9)


def test_a_resume_does_not_join_steps_across_a_gap_or_an_older_layout():
    window = training_health.WINDOW
    gap = training_health.TrainingHealth(0.1, augmenting=False)
    gap.resume(loss_rows(10, 190, 10, 0.95) + loss_rows(190 + window + 10, 190 + window + 10,
                                                        10, 0.95))
    assert len(gap.recent) == 1  # the row after the gap stands for its own step only
    older = training_health.TrainingHealth(0.1, augmenting=False)
    rows = loss_rows(10, 190, 10, 0.95)
    rows[-1] = {key: value for key, value in rows[-1].items() if key != "d_real_sign"}
    older.resume(rows + loss_rows(200, 200, 10, 0.95))
    assert len(older.recent) == 10
    empty = training_health.TrainingHealth(0.1, augmenting=False)
    empty.resume([])
    assert not empty.recent


def test_the_trainer_starts_its_window_from_the_resumed_runs_metrics():
    from types import SimpleNamespace

    from machinery import training_loop

    log = SimpleNamespace(rows=loss_rows(10, 100, 10, 0.95))  # a MetricsLog's kept rows
    trainer = training_loop.Trainer(
        SimpleNamespace(smooth=0.1, augment=None), None, SimpleNamespace(model=None), None, log,
        None, None, None, 100, None)
    assert list(trainer.health.recent) == [(0.8, 2.5, 0.95)] * 100
