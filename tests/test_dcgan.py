"""dcgan.py: the networks' shapes, variables and parameter counts (at 16, 32, 64 and 128, against
a count written out by hand in helpers.py), reuse, the losses, the optimizers and which variables
each update writes, the section-5 features, the sampler, and every ValueError. Small graphs, CPU,
exact expectations."""
import numpy as np
import pytest
import tensorflow as tf

import dcgan
from machinery import hyperparameters, sessions, training_step
from helpers import (D_WIDTHS, G_WIDTHS, discriminator_parameters, generator_parameters, session,
                     trainable_count, values_by_name)

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


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_networks_at_each_size_have_the_shapes_and_parameters_counted_by_hand(graph, size):
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    images = dcgan.generator(z, 3, image_size=size)
    probability, logits = dcgan.discriminator(images)
    pooled, layers = dcgan.discriminator_features(images)
    assert images.shape.as_list() == [None, size, size, 3]
    assert logits.shape.as_list() == [None, 1]
    assert [layer.shape.as_list()[1:] for layer in layers] == [
        [size >> (index + 1), size >> (index + 1), width]
        for index, width in enumerate(D_WIDTHS[size])]
    assert layers[-1].shape[1] == 4
    assert pooled.shape.as_list() == [None, 16 * sum(D_WIDTHS[size])]
    assert trainable_count("generator") == generator_parameters(G_WIDTHS[size], 3)
    assert trainable_count("discriminator") == discriminator_parameters(D_WIDTHS[size], 3)
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(tf1.global_variables_initializer())
        out, prob = sess.run([images, probability],
                             {z: np.random.default_rng(0).uniform(-1, 1, (1, 100))})
    assert out.shape == (1, size, size, 3) and -1 <= out.min() and out.max() <= 1
    assert prob.shape == (1, 1)


def test_64_gives_the_papers_feature_count(graph):
    pooled, _ = dcgan.discriminator_features(tf1.placeholder(tf.float32, [None, 64, 64, 1]))
    assert pooled.shape.as_list() == [None, 15_360]


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
    def sig(x):
        return 1 / (1 + np.exp(-x.astype(np.float64)))
    expected_d = (np.mean(-((1 - smooth) * np.log(sig(real_logits))
                            + smooth * np.log(1 - sig(real_logits))))
                  + np.mean(-np.log(1 - sig(fake_logits))))
    expected_g = np.mean(-np.log(sig(fake_logits)))
    np.testing.assert_allclose(d_value, expected_d, rtol=1e-6)
    np.testing.assert_allclose(g_value, expected_g, rtol=1e-6)
    np.testing.assert_allclose(d_value, bce(real_logits, 1 - smooth) + bce(fake_logits, 0),
                               rtol=1e-6)


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


@pytest.mark.parametrize("channels", [3, 1])
def test_features_are_each_layer_max_pooled_to_4x4(graph, channels):
    x = tf1.placeholder(tf.float32, [None, 32, 32, channels])
    pooled, activations = dcgan.discriminator_features(x)
    assert pooled.shape.as_list() == [None, 16 * (64 + 128 + 256)] == [None, 7168]
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(tf1.global_variables_initializer())
        images = np.random.default_rng(1).uniform(-1, 1, (3, 32, 32, channels))
        got, layers = sess.run([pooled, activations], {x: images})
    expected = []
    for layer in layers:  # [3, s, s, c] -> max over each (s/4 x s/4) window -> [3, 4 * 4 * c]
        batch, size, _, depth = layer.shape
        window = size // 4
        blocks = layer.reshape(batch, 4, window, 4, window, depth).max(axis=(2, 4))
        expected.append(blocks.reshape(batch, -1))
    assert [layer.shape[1] for layer in layers] == [16, 8, 4]
    np.testing.assert_array_equal(got, np.concatenate(expected, axis=1))


def test_the_features_are_the_discriminators_in_inference_mode(graph):
    """Moving statistics, not batch statistics: one image's features do not depend on the
    others in its batch."""
    x = tf1.placeholder(tf.float32, [None, 32, 32, 1])
    pooled, _ = dcgan.discriminator_features(x)
    images = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 1))
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(tf1.global_variables_initializer())
        alone, together = sess.run(pooled, {x: images[:1]}), sess.run(pooled, {x: images})
    np.testing.assert_allclose(alone[0], together[0], rtol=1e-5, atol=1e-6)


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
    with pytest.raises(ValueError, match="real images"):
        dcgan.model_loss(tf1.placeholder(tf.float32, [None, 32, 32, 1]), z, 3)
    loss = tf.constant(1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        dcgan.model_optimizers(loss, loss, learning_rate=0)
    with pytest.raises(ValueError, match="beta1"):
        dcgan.model_optimizers(loss, loss, beta1=1.0)


# --- A conditional DCGAN (--conditional) -----------------------------------------------------
def test_conditional_networks_add_a_one_hot_class_and_a_projection_only(graph):
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    labels = tf1.placeholder(tf.int32, [None])
    images = dcgan.generator(z, 3, labels=labels, num_classes=7)
    probability, logits = dcgan.discriminator(images, labels=labels, num_classes=7)
    shapes = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
    assert shapes["generator/dense1/kernel"] == [hyperparameters.Z_DIM + 7, 4 * 4 * 512]  # one-hot
    assert shapes["discriminator/projection/embedding"] == [7, 4 * 4 * 256]
    plain = {name for name in shapes if "class" not in name and "projection" not in name}
    with tf.Graph().as_default():  # seeded: an earlier test may have turned determinism on
        tf1.set_random_seed(0)
        dcgan.discriminator(dcgan.generator(tf1.placeholder(tf.float32, [None, 100]), 3))
        assert {v.op.name for v in tf1.global_variables()} == plain  # nothing else differs
    assert probability.shape.as_list() == logits.shape.as_list() == [None, 1]


def test_the_projection_is_the_class_vector_against_the_last_features(graph):
    """D(x, y)'s logit minus D's unconditional logit is <V[y], phi(x)>: checked in NumPy."""
    x = tf1.placeholder(tf.float32, [None, 16, 16, 1])
    labels = tf1.placeholder(tf.int32, [None])
    _, conditional = dcgan.discriminator(x, labels=labels, num_classes=3, training=False)
    activations, plain = dcgan._discriminator_layers(x, True, 0.2, False, "float32", False,
                                                     "native")
    table = [v for v in tf1.global_variables() if v.op.name.endswith("projection/embedding")][0]
    rng = np.random.default_rng(0)
    feed = {x: rng.uniform(-1, 1, (4, 16, 16, 1)), labels: [2, 0, 1, 2]}
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        got, base, last, vectors = sess.run([conditional, plain, activations[-1], table], feed)
    expected = base[:, 0] + np.sum(vectors[feed[labels]] * last.reshape(4, -1), axis=1)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-4, atol=1e-4)


def test_labels_need_a_number_of_classes(graph):
    z = tf1.placeholder(tf.float32, [None, 100])
    with pytest.raises(ValueError, match="num_classes"):
        dcgan.generator(z, 1, labels=tf1.placeholder(tf.int32, [None]))
