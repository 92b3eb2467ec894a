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
