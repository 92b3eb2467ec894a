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


def test_a_conditional_feed_holds_the_rows_classes_and_classes_drawn_with_their_shares(graph):
    model = training_step.build_model(1, image_size=16, g_steps=1, num_classes=3)
    images = np.zeros((300, 16, 16, 1), np.uint8)
    labels = np.repeat([0, 1, 2], [200, 50, 50])  # shares 2/3, 1/6, 1/6
    classes = sessions.class_labels(labels, 3)
    np.testing.assert_allclose(classes.shares, [2 / 3, 1 / 6, 1 / 6])
    indices = np.random.default_rng(0).permutation(300)[:240]
    whole = sessions.step_feed(model, images, indices, 5, 9, classes=classes)
    np.testing.assert_array_equal(whole[model.real_labels], labels[indices])
    drawn = np.bincount(whole[model.fake_labels], minlength=3) / 240
    assert abs(drawn[0] - 2 / 3) < 0.1 and drawn.min() > 0
    for worker in range(2):  # each worker its rows of both
        share = sessions.step_feed(model, images, indices, 5, 9, worker, 2, classes=classes)
        rows = slice(worker * 120, (worker + 1) * 120)
        np.testing.assert_array_equal(share[model.fake_labels], whole[model.fake_labels][rows])
        np.testing.assert_array_equal(share[model.real_labels], whole[model.real_labels][rows])
