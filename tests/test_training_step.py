"""machinery/training_step.py: build_model's fused step (one session call: the D update, then
g_steps G updates) against the reference, dcgan.model_loss + model_optimizers run as the blog
post runs them, one session call each; the step's ValueErrors; and the seed-0 fixture: the same
seed trains the same numbers as the code before the image-size rule; and the step with
augmentation: nothing of it without the flag, p = 0 training what no augmentation trains, every
size, precision and --g-ema, the adaptive p."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import dcgan
from machinery import augmentation, averaged_generator, hyperparameters, sessions, training_step
from helpers import ROOT, session, values_by_name

tf1 = tf.compat.v1
BATCH = 8
HALF_AN_ADAM_STEP = hyperparameters.LEARNING_RATE / 2


def two_call_reference(channels, g_steps, batches):
    """The blog post's training: sess.run(d_opt), then g_steps x sess.run(g_opt), per batch."""
    with tf.Graph().as_default() as graph:
        tf1.set_random_seed(7)
        real = tf1.placeholder(tf.float32, [None, 32, 32, channels])
        z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
        losses = dcgan.model_loss(real, z, channels)
        d_opt, g_opt = dcgan.model_optimizers(losses.d_loss, losses.g_loss)
        with session(graph) as sess:
            sess.run(tf1.global_variables_initializer())
            initial = values_by_name(sess)
            for images, noise in batches:
                feed = {real: images.astype(np.float32) / np.float32(127.5) - 1, z: noise}
                sess.run(d_opt, feed)
                for _ in range(g_steps):
                    sess.run(g_opt, feed)
            return initial, values_by_name(sess)


def fused(channels, g_steps, batches, initial):
    with tf.Graph().as_default() as graph:
        tf1.set_random_seed(7)
        model = training_step.build_model(channels, g_steps=g_steps)
        with session(graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for variable in tf1.global_variables():
                if variable.op.name in initial:
                    variable.load(initial[variable.op.name], sess)
            for images, noise in batches:
                sess.run(model.train_step, {model.real_images: images, model.z: noise})
            return values_by_name(sess)


# The reference check: one G update in the fast tier, two (another copy of G and D) in the slow.
@pytest.mark.parametrize("g_steps", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_the_fused_step_equals_the_reference_model_loss_and_model_optimizers(g_steps):
    rng = np.random.default_rng(11)
    batches = [(rng.integers(0, 256, (BATCH, 32, 32, 3), dtype=np.uint8),
                rng.uniform(-1, 1, (BATCH, hyperparameters.Z_DIM)).astype(np.float32))
               for _ in range(3)]
    initial, expected = two_call_reference(3, g_steps, batches)
    got = fused(3, g_steps, batches, initial)
    assert set(got) - set(expected) == {"global_step"} and got["global_step"] == 3
    assert set(expected) <= set(got)
    # Equal up to round-off, which Adam amplifies: its early steps are lr * m / (sqrt(v) + eps),
    # so where a weight's gradient changes sign or sits near eps the two graphs' round-off (they
    # may pick other kernels) becomes visible. So, per variable, the mean difference must stay
    # under 10% of the mean distance moved. Measured for this fused step: at most 1.1% with TF
    # 2.21, 3.9% with TF 2.16 (other oneDNN kernels); with the G update reading the D weights from
    # before the D update, 75% to 160% on most G variables.
    moved = 0
    for name, value in expected.items():
        distance = np.abs(value - initial[name]).mean()
        difference = np.abs(got[name] - value).mean()
        assert difference <= 0.10 * distance, (name, difference, distance)
        moved += distance > 0
    # Every trainable weight, its two Adam slots and the statistics moved: not vacuous.
    assert moved >= 3 * 20


def test_build_model_value_errors(graph):
    """Split from test_dcgan.py's test_value_errors: the checks of the step's own arguments."""
    for smooth in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match="smooth"):
            training_step.build_model(3, smooth=smooth)
    with pytest.raises(ValueError, match="g_steps"):
        training_step.build_model(3, g_steps=0)
    with pytest.raises(ValueError, match="z_dim"):
        training_step.build_model(3, z_dim=0)


@pytest.mark.slow
def test_at_32_the_same_seed_trains_the_same_numbers():
    """Three steps from seed 0 against the numbers main's code gave before the rule existed."""
    with open(os.path.join(ROOT, "tests", "fixtures", "training_numbers_v1.json")) as handle:
        expected = json.load(handle)
    tf.config.experimental.enable_op_determinism()  # process-wide, as train.py --deterministic
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        model = training_step.build_model(3)
        init = tf1.global_variables_initializer()
    images = np.random.default_rng(7).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    losses = []
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(init)
        for step in range(3):
            feed = sessions.step_feed(model, images, np.arange(8), 0, step)
            losses.append(sess.run([model.train_step, model.d_loss, model.g_loss],
                                   feed)[1:])
        with graph.as_default():
            variables = tf1.trainable_variables()
            sums = dict(zip([v.op.name for v in variables],
                            [float(np.abs(value).sum()) for value in sess.run(variables)]))
    assert model.image_size == 32
    assert set(sums) == set(expected["abs_sums"])
    # Bit-identical on the machine that wrote them (an AMD EPYC). Other CPUs' kernels round
    # differently, and Adam turns a near-zero gradient's round-off into a step of up to the
    # learning rate, so a sum may also differ by half of one weight's Adam step: on an Intel Xeon
    # (Emerald Rapids, AMX) the discriminator's sums are bit-identical and the generator's differ
    # by at most 3.1e-5 (deconv4/kernel; bn3/beta by 1.4e-5, 1.6e-4 of its sum). Another seed or
    # another order of building the graph moves the sums of the kernels by whole percents.
    np.testing.assert_allclose(losses, expected["losses"], rtol=1e-4)
    for name, value in expected["abs_sums"].items():
        np.testing.assert_allclose(sums[name], value, rtol=1e-4, atol=HALF_AN_ADAM_STEP,
                                   err_msg=name)


# --- With augmentation (--augment) -----------------------------------------------------------
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


@pytest.mark.slow
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
    (16, 1, "float32", 0.0), pytest.param(32, 3, "bfloat16", 0.0, marks=pytest.mark.slow),
    pytest.param(64, 1, "float32", 0.9, marks=pytest.mark.slow)])
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


@pytest.mark.parametrize("kwargs,message", [
    (dict(augment=("colour",)), "distinct policies"),
    (dict(augment=("cutout",), augment_p=1.5), "augment_p"),
    (dict(augment=("cutout",), augment_p="sometimes"), "augment_p"),
    (dict(augment=("cutout",), augment_p="adaptive", augment_target=1.0), "augment_target"),
])
def test_bad_augmentation_arguments_are_value_errors(graph, kwargs, message):
    with pytest.raises(ValueError, match=message):
        training_step.build_model(1, image_size=16, **kwargs)


# --- A conditional step (--conditional) ------------------------------------------------------
def conditional_batches(channels, count=3, classes=4):
    rng = np.random.default_rng(12)
    return [(rng.integers(0, 256, (BATCH, 32, 32, channels), dtype=np.uint8),
             rng.uniform(-1, 1, (BATCH, hyperparameters.Z_DIM)).astype(np.float32),
             rng.integers(0, classes, BATCH).astype(np.int32),
             rng.integers(0, classes, BATCH).astype(np.int32)) for _ in range(count)]


@pytest.mark.slow
def test_the_conditional_fused_step_equals_the_conditional_reference():
    """model_loss + model_optimizers given the real images' classes and those to generate: the
    fused step trains the same, as for the unconditional DCGAN."""
    batches = conditional_batches(1)
    with tf.Graph().as_default() as graph:
        tf1.set_random_seed(7)
        real = tf1.placeholder(tf.float32, [None, 32, 32, 1])
        z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
        real_labels, fake_labels = (tf1.placeholder(tf.int32, [None]) for _ in range(2))
        losses = dcgan.model_loss(real, z, 1, real_labels=real_labels, fake_labels=fake_labels,
                                  num_classes=4)
        d_opt, g_opt = dcgan.model_optimizers(losses.d_loss, losses.g_loss)
        with session(graph) as sess:
            sess.run(tf1.global_variables_initializer())
            initial = values_by_name(sess)
            for images, noise, reals, fakes in batches:
                feed = {real: images.astype(np.float32) / np.float32(127.5) - 1, z: noise,
                        real_labels: reals, fake_labels: fakes}
                sess.run(d_opt, feed)
                sess.run(g_opt, feed)
            expected = values_by_name(sess)
    with tf.Graph().as_default() as graph:
        tf1.set_random_seed(7)
        model = training_step.build_model(1, g_steps=1, num_classes=4)
        with session(graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for variable in tf1.global_variables():
                if variable.op.name in initial:
                    variable.load(initial[variable.op.name], sess)
            for images, noise, reals, fakes in batches:
                sess.run(model.train_step, {model.real_images: images, model.z: noise,
                                            model.real_labels: reals, model.fake_labels: fakes})
            got = values_by_name(sess)
    assert "discriminator/projection/embedding" in expected
    for name, value in expected.items():  # the bound and its reasons: the unconditional test's
        distance = np.abs(value - initial[name]).mean()
        assert np.abs(got[name] - value).mean() <= 0.10 * distance, name


@pytest.mark.parametrize("image_size, precision, augment", [
    (16, "float32", ()), (16, "bfloat16", ("translation", "cutout", "color")),
    pytest.param(64, "float32", ("cutout",), marks=pytest.mark.slow)])
def test_a_conditional_model_takes_both_classes_and_its_sampler_the_generated_ones(
        graph, image_size, precision, augment):
    model = training_step.build_model(1, image_size=image_size, g_steps=1, num_classes=3,
                                      g_ema_decay=0.9, precision=precision, augment=augment)
    assert model.num_classes == 3 and model.sampler.labels is model.fake_labels
    assert model.averaged.labels is model.fake_labels and model.averaged.num_classes == 3
    rng = np.random.default_rng(0)
    feed = {model.real_images: rng.integers(0, 256, (BATCH, image_size, image_size, 1),
                                            dtype=np.uint8),
            model.z: rng.uniform(-1, 1, (BATCH, 100)).astype(np.float32),
            model.real_labels: np.arange(BATCH) % 3, model.fake_labels: np.arange(BATCH) % 3}
    if augment:  # the class is not augmented: the labels are fed as they are
        feed[model.augment_draws] = augmentation.draws(0, 0, BATCH, model.augment_passes)
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(model.start_average)
        losses = sess.run([model.train_step, model.d_loss, model.g_loss], feed)[1:]
        averaged_generator.prepare_sampler(sess, model.averaged)
        one, two = (sessions.run_sampler(sess, model.averaged, feed[model.z][:2],
                                         labels=np.array([label, label], np.int32))
                    for label in (0, 2))
    assert all(np.isfinite(losses)) and not np.allclose(one, two)  # the class changes the image
