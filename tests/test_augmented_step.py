"""The training step with augmentation (training_step.build_model(augment=...)): nothing of it in
the graph without the flag, p = 0 trains what no augmentation trains, every size, precision and
--g-ema, the adaptive p in the step, and step_feed's numbers and --flip."""
import numpy as np
import pytest
import tensorflow as tf

from machinery import augmentation, hyperparameters, sessions, training_step

tf1 = tf.compat.v1
BATCH, Z_DIM = 8, 100


def fed(model, step=0, seed=0, flip=False):
    rng = np.random.default_rng(step)
    size, channels = model.image_size, model.output_dim
    images = rng.integers(0, 256, (BATCH, size, size, channels), dtype=np.uint8)
    return sessions.step_feed(model, images, np.arange(BATCH), seed, step, flip=flip)


def trained(build, steps=2, initial=None):
    """Builds build() in a fresh graph (seed 0), optionally loads `initial` values by name,
    runs `steps` steps; returns ({variable: value} before, after, the model)."""
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        model = build()
        with tf1.Session(config=sessions.session_config()) as sess:
            sess.run(tf1.global_variables_initializer())
            for variable in tf1.global_variables():
                if initial and variable.op.name in initial:
                    variable.load(initial[variable.op.name], sess)
            before = {v.op.name: sess.run(v) for v in tf1.global_variables()}
            for step in range(steps):
                sess.run(model.train_step, fed(model, step))
            after = {v.op.name: sess.run(v) for v in tf1.global_variables()}
    return before, after, model


def test_without_augment_the_graph_has_none_of_it(graph):
    model = training_step.build_model(1, g_steps=1)
    assert model.augment_draws is None and model.augment_p is None
    assert not [op.name for op in graph.get_operations()
                if "augment" in op.name or "adaptive_p" in op.name]
    assert model.d_real_sign is not None


def test_p_zero_trains_exactly_what_no_augmentation_trains():
    """The augmentation ops are in the graph, but at p = 0 they hand D the very images: from the
    same weights, the same numbers, bit for bit."""
    initial, plain, _ = trained(lambda: training_step.build_model(3, g_steps=2))
    _, augmented, model = trained(lambda: training_step.build_model(
        3, g_steps=2, augment=("color", "translation", "cutout"), augment_p=0.0),
        initial=initial)
    assert model.augment_passes == 3
    for name, value in plain.items():
        np.testing.assert_array_equal(augmented[name], value, err_msg=name)


@pytest.mark.parametrize("size,channels,precision,g_ema", [
    (16, 1, "float32", 0.0), (32, 3, "bfloat16", 0.0), (64, 1, "float32", 0.9)])
def test_augmented_steps_train_at_every_size_precision_and_with_the_average(size, channels,
                                                                            precision, g_ema):
    before, after, model = trained(lambda: training_step.build_model(
        channels, image_size=size, precision=precision, g_ema_decay=g_ema, g_steps=1,
        augment=("translation", "cutout", "color"), augment_p=1.0))
    moved = [name for name in before if name.startswith(("generator/", "discriminator/"))
             and not np.array_equal(before[name], after[name])]
    assert len(moved) > 20
    assert all(np.all(np.isfinite(value)) for value in after.values())


def test_an_adaptive_p_is_a_checkpointed_variable_the_step_moves():
    """A discriminator sure that every image is real (its last bias at 50: every logit on the
    reals positive, a mean sign of 1 above the target) raises p by one adjustment after each
    interval of steps; p starts at 0."""
    interval = hyperparameters.ADA_INTERVAL
    before, after, _ = trained(lambda: training_step.build_model(
        1, image_size=16, g_steps=1, augment=("cutout",), augment_p="adaptive"),
        steps=interval, initial={"discriminator/logits/bias": np.array([50.0], np.float32)})
    assert before["augment/p"] == 0.0
    assert after["augment/sign_steps"] == interval and after["augment/sign_sum"] == 0.0
    np.testing.assert_allclose(after["augment/p"],
                               BATCH * interval / hyperparameters.ADA_IMAGES_TO_FULL, rtol=1e-6)


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


@pytest.mark.parametrize("kwargs,message", [
    (dict(augment=("colour",)), "distinct policies"),
    (dict(augment=("cutout",), augment_p=1.5), "augment_p"),
    (dict(augment=("cutout",), augment_p="sometimes"), "augment_p"),
    (dict(augment=("cutout",), augment_p="adaptive", augment_target=1.0), "augment_target"),
])
def test_bad_augmentation_arguments_are_value_errors(graph, kwargs, message):
    with pytest.raises(ValueError, match=message):
        training_step.build_model(1, image_size=16, **kwargs)
