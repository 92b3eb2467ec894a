"""dcgan.py: shapes, variables, losses, optimizers, batch norm, the sampler, the fused step and
every ValueError. Small graphs, CPU, exact expectations."""
import numpy as np
import pytest
import tensorflow as tf

import dcgan
from machinery import averaged_generator, hyperparameters, sessions, training_step
from helpers import session, values_by_name

tf1 = tf.compat.v1
BATCH = 8


def variable_shapes(scope):
    return {v.op.name: tuple(v.shape.as_list())
            for v in tf1.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES, scope + "/")}


@pytest.mark.parametrize("channels", [3, 1])
def test_output_shapes_and_range(graph, channels):
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    images = dcgan.generator(z, channels)
    probability, logits = dcgan.discriminator(images)
    assert images.shape.as_list() == [None, 32, 32, channels]
    assert probability.shape.as_list() == logits.shape.as_list() == [None, 1]
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        # Large z pushes the tanh to saturation: still inside [-1, 1].
        feed = {z: np.random.default_rng(0).uniform(-50, 50, (BATCH, hyperparameters.Z_DIM))}
        out, prob = sess.run([images, probability], feed)
    assert out.shape == (BATCH, 32, 32, channels)
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert prob.shape == (BATCH, 1) and np.all((prob > 0) & (prob < 1))


def test_variable_names_and_shapes(graph):
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    dcgan.discriminator(dcgan.generator(z, 3))
    expected_g = {
        "generator/dense1/kernel": (100, 8192),
        "generator/deconv2/kernel": (5, 5, 256, 512),
        "generator/deconv3/kernel": (5, 5, 128, 256),
        "generator/deconv4/kernel": (5, 5, 3, 128), "generator/deconv4/bias": (3,),
    }
    for name, size in (("bn1", 512), ("bn2", 256), ("bn3", 128)):
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            expected_g[f"generator/{name}/{part}"] = (size,)
    expected_d = {
        "discriminator/conv1/kernel": (5, 5, 3, 64), "discriminator/conv1/bias": (64,),
        "discriminator/conv2/kernel": (5, 5, 64, 128),
        "discriminator/conv3/kernel": (5, 5, 128, 256),
        "discriminator/logits/kernel": (4096, 1), "discriminator/logits/bias": (1,),
    }
    for name, size in (("bn2", 128), ("bn3", 256)):
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            expected_d[f"discriminator/{name}/{part}"] = (size,)
    assert variable_shapes("generator") == expected_g
    assert variable_shapes("discriminator") == expected_d
    trainable = {v.op.name for v in tf1.trainable_variables()}
    # 8 kernels, a bias on each of the 3 layers without batch norm after it, 5 gammas and betas.
    assert len(trainable) == 8 + 3 + 2 * 5
    assert not any("moving" in name for name in trainable)


def test_reuse_shares_variables(graph):
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    dcgan.generator(z, 1)
    count = len(tf1.global_variables())
    dcgan.generator(z, 1, reuse=True)
    dcgan.sampler(z, 1)
    assert len(tf1.global_variables()) == count
    with pytest.raises(ValueError):  # a second generator without reuse is a mistake
        dcgan.generator(z, 1)


def test_optimizers_split_the_variables(graph):
    real = tf1.placeholder(tf.float32, [None, 32, 32, 3])
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    losses = dcgan.model_loss(real, z, 3)
    d_opt, g_opt = dcgan.model_optimizers(losses.d_loss, losses.g_loss)

    d_vars = {v.op.name for v in tf1.trainable_variables("discriminator/")}
    g_vars = {v.op.name for v in tf1.trainable_variables("generator/")}
    assert d_vars.isdisjoint(g_vars)
    assert d_vars | g_vars == {v.op.name for v in tf1.trainable_variables()}
    # Which variables each update writes, read off the Adam ops themselves.
    def written(train_op):
        names = set()
        for op in graph.get_operations():
            if op.type == "ResourceApplyAdam" and op.name.startswith(train_op.name + "/"):
                names.add(op.inputs[0].op.name)
        return names
    assert written(d_opt) == d_vars
    assert written(g_opt) == g_vars


def bce(logits, label):
    return np.mean(np.maximum(logits, 0) - logits * label + np.log1p(np.exp(-np.abs(logits))))


@pytest.mark.parametrize("smooth", [0.0, 0.1, 0.35])
def test_losses_match_numpy(graph, smooth):
    real_logits = np.array([[2.0], [-1.0], [0.5], [7.0]], np.float32)
    fake_logits = np.array([[-3.0], [0.25], [1.5], [-0.5]], np.float32)
    d_loss = dcgan.discriminator_loss(tf.constant(real_logits), tf.constant(fake_logits), smooth)
    g_loss = dcgan.generator_loss(tf.constant(fake_logits))
    with session(graph) as sess:
        d_value, g_value = sess.run([d_loss, g_loss])
    # The formula, written out: -[y log s(l) + (1 - y) log(1 - s(l))].
    sig = lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))  # noqa: E731
    expected_d = (np.mean(-((1 - smooth) * np.log(sig(real_logits))
                            + smooth * np.log(1 - sig(real_logits))))
                  + np.mean(-np.log(1 - sig(fake_logits))))
    expected_g = np.mean(-np.log(sig(fake_logits)))
    np.testing.assert_allclose(d_value, expected_d, rtol=1e-6)
    np.testing.assert_allclose(g_value, expected_g, rtol=1e-6)
    np.testing.assert_allclose(d_value, bce(real_logits, 1 - smooth) + bce(fake_logits, 0), rtol=1e-6)


def feed_batch(real, z, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return {real: rng.uniform(-1, 1, (BATCH, 32, 32, channels)).astype(np.float32),
            z: rng.uniform(-1, 1, (BATCH, hyperparameters.Z_DIM)).astype(np.float32)}


def test_each_update_changes_only_its_network(graph):
    real = tf1.placeholder(tf.float32, [None, 32, 32, 3])
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    losses = dcgan.model_loss(real, z, 3)
    d_opt, g_opt = dcgan.model_optimizers(losses.d_loss, losses.g_loss)
    feed = feed_batch(real, z)
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        before = values_by_name(sess)
        sess.run(d_opt, feed)
        after_d = values_by_name(sess)
        sess.run(g_opt, feed)
        after_g = values_by_name(sess)
    changed_d = {n for n in before if not np.array_equal(before[n], after_d[n])}
    changed_g = {n for n in before if not np.array_equal(after_d[n], after_g[n])}
    power = {"beta1_power", "beta2_power", "beta1_power_1", "beta2_power_1"}
    assert changed_d - power and changed_g - power
    assert all(n.startswith("discriminator/") for n in changed_d - power), changed_d
    assert all(n.startswith("generator/") for n in changed_g - power), changed_g
    # Every D weight and its two Adam slots move in the D update; same for G.
    for n in (v.op.name for v in tf1.trainable_variables("discriminator/")):
        assert {n, n + "/d_adam", n + "/d_adam_1"} <= changed_d
    for n in (v.op.name for v in tf1.trainable_variables("generator/")):
        assert {n, n + "/g_adam", n + "/g_adam_1"} <= changed_g
    # Batch norm statistics move with their own network's update only.
    assert "discriminator/bn2/moving_mean" in changed_d
    assert "generator/bn1/moving_mean" in changed_g


def test_sampler_uses_moving_statistics(graph):
    model = training_step.build_model(1, g_steps=1)
    rng = np.random.default_rng(3)
    z = rng.uniform(-1, 1, (BATCH, hyperparameters.Z_DIM)).astype(np.float32)
    images = rng.integers(0, 256, (BATCH, 32, 32, 1), dtype=np.uint8)
    moving = [v for v in tf1.global_variables() if "moving_" in v.op.name]
    assert len(moving) == 2 * 5
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        initial = sess.run(moving)
        sess.run(model.train_step, {model.real_images: images, model.z: z})
        moved = sess.run(moving)
        alone = sess.run(model.sampler.samples, {model.z: z[:1]})
        other_rows = z.copy()
        other_rows[1:] = rng.uniform(-1, 1, (BATCH - 1, hyperparameters.Z_DIM))
        in_batch = sess.run(model.sampler.samples, {model.z: other_rows})
        in_first_batch = sess.run(model.sampler.samples, {model.z: z})
    for before, after in zip(initial, moved):
        assert not np.allclose(before, after)
    # mean moves 10% of the way from 0 towards the batch mean: finite, small, nonzero.
    np.testing.assert_allclose(alone[0], in_batch[0], atol=1e-5)
    np.testing.assert_allclose(alone[0], in_first_batch[0], atol=1e-5)


def test_value_errors(graph):
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    for bad in (0, -3, 1.5, True, "3"):
        with pytest.raises(ValueError, match="output_dim"):
            dcgan.generator(z, bad)
    with pytest.raises(ValueError, match="z must have shape"):
        dcgan.generator(tf1.placeholder(tf.float32, [None, 10, 10]), 3)
    with pytest.raises(ValueError, match="z must have shape"):
        dcgan.generator(tf1.placeholder(tf.float32, [None, None]), 3)
    for shape in ([None, 28, 28, 1], [None, 32, 32], [None, 32, 32, None], [32, 32, 3]):
        with pytest.raises(ValueError, match="x must have shape"):
            dcgan.discriminator(tf1.placeholder(tf.float32, shape))
    image = tf1.placeholder(tf.float32, [None, 32, 32, 3])
    with pytest.raises(ValueError, match="alpha"):
        dcgan.discriminator(image, alpha=-0.1)
    with pytest.raises(ValueError, match="precision"):
        dcgan.generator(z, 3, precision="float16")
    for smooth in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match="smooth"):
            dcgan.model_loss(image, z, 3, smooth=smooth)
        with pytest.raises(ValueError, match="smooth"):
            training_step.build_model(3, smooth=smooth)
    with pytest.raises(ValueError, match="real images"):
        dcgan.model_loss(tf1.placeholder(tf.float32, [None, 32, 32, 1]), z, 3)
    loss = tf.constant(1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        dcgan.model_optimizers(loss, loss, learning_rate=0)
    with pytest.raises(ValueError, match="beta1"):
        dcgan.model_optimizers(loss, loss, beta1=1.0)
    with pytest.raises(ValueError, match="g_steps"):
        training_step.build_model(3, g_steps=0)
    with pytest.raises(ValueError, match="z_dim"):
        training_step.build_model(3, z_dim=0)


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


@pytest.mark.parametrize("g_steps", [1, 2])
def test_fused_step_equals_two_session_calls(g_steps):
    rng = np.random.default_rng(11)
    batches = [(rng.integers(0, 256, (BATCH, 32, 32, 3), dtype=np.uint8),
                rng.uniform(-1, 1, (BATCH, hyperparameters.Z_DIM)).astype(np.float32)) for _ in range(3)]
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


def test_the_averaged_generator_is_an_exact_moving_average(graph):
    """g_ema_decay: after every step (one G update each), w_avg = d w_avg + (1 - d) w, starting
    from the initial weights; compared with the same recursion in NumPy."""
    decay = 0.75
    model = training_step.build_model(1, g_steps=1, g_ema_decay=decay)
    trained = tf1.trainable_variables("generator/")
    copies = {v.op.name: v for v in tf1.global_variables("g_ema/")}
    averages = [copies[f"g_ema/{v.op.name}"] for v in trained]
    assert not tf1.trainable_variables("g_ema/")  # the copy is not trained
    rng = np.random.default_rng(8)
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(model.start_average)
        expected = sess.run(trained)
        np.testing.assert_array_equal(sess.run(averages)[0], expected[0])
        for _ in range(3):
            sess.run(model.train_step, {
                model.real_images: rng.integers(0, 256, (BATCH, 32, 32, 1), dtype=np.uint8),
                model.z: rng.uniform(-1, 1, (BATCH, hyperparameters.Z_DIM)).astype(np.float32)})
            weights = sess.run(trained)
            expected = [np.float32(decay) * a + np.float32(1 - decay) * w
                        for a, w in zip(expected, weights)]
        got = sess.run(averages)
        averaged_generator.prepare_sampler(sess, model.averaged)
        averaged_images = sessions.run_sampler(sess, model.averaged, np.zeros((2, 100), np.float32))
        raw_images = sessions.run_sampler(sess, model.sampler, np.zeros((2, 100), np.float32))
    for want, have, variable in zip(expected, got, trained):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-7, err_msg=variable.op.name)
        assert not np.array_equal(have, weights[trained.index(variable)])  # it lags behind
    assert not np.allclose(averaged_images, raw_images)


def test_without_g_ema_the_graph_has_no_average(graph):
    model = training_step.build_model(1, g_steps=2)
    assert model.averaged is None and model.start_average is None
    assert not [op.name for op in graph.get_operations()
                if op.name.startswith(("g_ema", "update_average", "start_average"))]
    with pytest.raises(ValueError, match="g_ema_decay"):
        training_step.build_model(1, g_ema_decay=1.0)
