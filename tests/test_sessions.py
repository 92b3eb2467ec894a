"""machinery/sessions.py: a training step's feed (its rows of the augmentation's numbers for
each worker, --flip's mirrored real images)."""
import numpy as np
import pytest

from machinery import augmentation, sessions, training_step

BATCH = 8


@pytest.mark.parametrize("workers", [1, 2])
def test_the_step_feed_carries_the_numbers_of_each_worker_rows(graph, workers):
    model = training_step.build_model(1, image_size=16, g_steps=2, augment=("color",))
    images = np.random.default_rng(0).integers(0, 256, (BATCH, 16, 16, 1), dtype=np.uint8)
    whole = augmentation.draws(5, 3, BATCH, 3)
    for worker in range(workers):
        feed = sessions.step_feed(model, images, np.arange(BATCH), 5, 3, worker, workers)
        rows = slice(worker * BATCH // workers, (worker + 1) * BATCH // workers)
        np.testing.assert_array_equal(feed[model.augment_draws], whole[rows])


def test_flip_mirrors_about_half_the_real_images_and_nothing_else(graph):
    model = training_step.build_model(3, image_size=16, g_steps=1)
    images = np.random.default_rng(1).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    indices = np.arange(64)
    plain = sessions.step_feed(model, images, indices, 0, 4)[model.real_images]
    flipped = sessions.step_feed(model, images, indices, 0, 4, flip=True)[model.real_images]
    mirrored = np.array([np.array_equal(f, p[:, ::-1]) for f, p in zip(flipped, plain)])
    same = np.array([np.array_equal(f, p) for f, p in zip(flipped, plain)])
    assert np.all(mirrored | same) and 16 < mirrored.sum() < 48
    again = sessions.step_feed(model, images, indices, 0, 4, flip=True)[model.real_images]
    np.testing.assert_array_equal(again, flipped)  # a function of (seed, step)
    assert images.tobytes() == np.random.default_rng(1).integers(
        0, 256, (64, 16, 16, 3), dtype=np.uint8).tobytes()  # the dataset is untouched
