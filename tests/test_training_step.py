"""machinery/training_step.py: build_model's fused step (one session call: the D update, then
g_steps G updates) against the reference, dcgan.model_loss + model_optimizers run as the blog
post runs them, one session call each; the step's ValueErrors; and the seed-0 fixture: the same
seed trains the same numbers as the code before the image-size rule."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import dcgan
from machinery import hyperparameters, sessions, training_step
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
