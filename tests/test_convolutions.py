"""convolutions.py: each rewrite, and each layer of the model as the device choice builds it,
computes what TensorFlow's own op computes (outputs and both gradients, float64, to 1e-12); the
choice of implementation per device; which kernel each layer of the networks runs, at each
image size."""
import numpy as np
import pytest
import tensorflow as tf

import dcgan
from machinery import convolutions, hyperparameters
from helpers import session

tf1 = tf.compat.v1


def assert_same_values_and_gradients(graph, rng, pairs):
    """For each (inputs, weights, reference, rewritten): equal outputs and equal gradients with
    respect to inputs and weights, for one random output gradient, in float64 to 1e-12."""
    fetches = []
    for inputs, weights, reference, rewritten in pairs:
        assert rewritten.shape.as_list() == reference.shape.as_list()
        output_gradient = tf.constant(rng.standard_normal(reference.shape), tf.float64)
        fetches.append(([reference] + tf.gradients(reference, [inputs, weights], output_gradient),
                        [rewritten] + tf.gradients(rewritten, [inputs, weights], output_gradient)))
    with session(graph) as sess:
        for expected, got in sess.run(fetches):
            for want, have in zip(expected, got):
                np.testing.assert_allclose(have, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("height, width, in_channels, out_channels",
                         [(4, 4, 6, 5), (3, 5, 4, 2), (1, 1, 3, 1)])
def test_gemm_transposed_convolution_matches_tensorflow(graph, height, width, in_channels,
                                                        out_channels):
    """conv2d_transpose_gemm: the same output and the same input and kernel gradients."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((2, height, width, in_channels)), tf.float64)
    kernel = tf.constant(rng.standard_normal((5, 5, out_channels, in_channels)), tf.float64)
    reference = tf.nn.conv2d_transpose(x, kernel, [2, 2 * height, 2 * width, out_channels],
                                       strides=2, padding="SAME")
    assert_same_values_and_gradients(graph, rng, [
        (x, kernel, reference, convolutions.conv2d_transpose_gemm(x, kernel))])


@pytest.mark.parametrize("height, width, in_channels, out_channels",
                         [(8, 8, 3, 4), (6, 4, 1, 5), (2, 2, 2, 3)])
def test_block_convolutions_match_tensorflow(graph, height, width, in_channels, out_channels):
    """conv2d_space_to_depth and conv2d_transpose_subpixel: the same outputs and gradients as
    TensorFlow's stride-2 convolution and transposed convolution."""
    rng = np.random.default_rng(4)
    x = tf.constant(rng.standard_normal((2, height, width, in_channels)), tf.float64)
    kernel = tf.constant(rng.standard_normal((5, 5, in_channels, out_channels)), tf.float64)
    # The transposed convolution maps out_channels back to in_channels with the same kernel.
    y = tf.constant(rng.standard_normal((2, height // 2, width // 2, out_channels)), tf.float64)
    assert_same_values_and_gradients(graph, rng, [
        (x, kernel, tf.nn.conv2d(x, kernel, strides=2, padding="SAME"),
         convolutions.conv2d_space_to_depth(x, kernel)),
        (y, kernel, tf.nn.conv2d_transpose(y, kernel, [2, height, width, in_channels], strides=2,
                                           padding="SAME"),
         convolutions.conv2d_transpose_subpixel(y, kernel))])


def layer_kernels(graph):
    """Per layer of the networks in `graph`: the op types it holds, and its Conv2D strides."""
    op_types, strides = {}, {}
    for op in graph.get_operations():
        parts = op.name.split("/")
        if parts[0] in ("generator", "discriminator") and len(parts) > 2:
            op_types.setdefault(parts[1], set()).add(op.type)
            if op.type == "Conv2D":
                strides[parts[1]] = op.get_attr("strides")[1]
    return op_types, strides


@pytest.mark.parametrize("channels", [3, 1])
def test_each_layer_uses_the_kernel_set_for_it(graph, channels):
    """Rewritten (the CPU's choice): generator 4x4 -> 8x8 a MatMul, 8x8 -> 16x16 oneDNN's
    transposed convolution, the image layer a stride-1 sub-pixel convolution; discriminator: the
    image layer a stride-1 convolution on 2x2 blocks, the others stride-2 convolutions."""
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    images = dcgan.generator(z, channels, implementation=convolutions.REWRITTEN)
    dcgan.discriminator(images, implementation=convolutions.REWRITTEN)
    op_types, strides = layer_kernels(graph)
    assert "MatMul" in op_types["deconv2"] and "Conv2DBackpropInput" not in op_types["deconv2"]
    assert "Conv2DBackpropInput" in op_types["deconv3"]
    assert "DepthToSpace" in op_types["deconv4"] and strides["deconv4"] == 1
    assert "Conv2DBackpropInput" not in op_types["deconv4"]
    assert "SpaceToDepth" in op_types["conv1"] and strides["conv1"] == 1
    assert strides["conv2"] == strides["conv3"] == 2


def test_native_layers_use_tensorflows_own_ops(graph):
    """The GPU's choice: every layer is TensorFlow's stride-2 op, no rewrite anywhere."""
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    images = dcgan.generator(z, 3, implementation=convolutions.NATIVE)
    dcgan.discriminator(images, implementation=convolutions.NATIVE)
    op_types, strides = layer_kernels(graph)
    for layer in ("deconv2", "deconv3", "deconv4"):
        assert "Conv2DBackpropInput" in op_types[layer] and "MatMul" not in op_types[layer]
        assert "DepthToSpace" not in op_types[layer]
    assert strides == {"conv1": 2, "conv2": 2, "conv3": 2}
    assert "SpaceToDepth" not in op_types["conv1"]


def test_the_device_picks_the_implementation():
    assert convolutions.implementation_for("CPU") == convolutions.REWRITTEN
    assert convolutions.implementation_for("GPU") == convolutions.NATIVE
    with pytest.raises(ValueError, match="implementation"):
        convolutions.conv2d(tf.zeros([1, 4, 4, 1]), tf.zeros([5, 5, 1, 1]), 2, "cudnn")


# Every layer of the model, as (kind, input shape [h, w, c_in], output channels) for SVHN and
# MNIST: the generator's three transposed convolutions and the discriminator's three convolutions.
MODEL_LAYERS = [("transpose", (4, 4, 512), 256), ("transpose", (8, 8, 256), 128),
                ("transpose", (16, 16, 128), 3), ("transpose", (16, 16, 128), 1),
                ("conv", (32, 32, 3), 64), ("conv", (32, 32, 1), 64), ("conv", (16, 16, 64), 128),
                ("conv", (8, 8, 128), 256)]


@pytest.mark.parametrize("kind, input_shape, out_channels", MODEL_LAYERS)
def test_both_implementations_compute_the_same_layer(graph, kind, input_shape, out_channels):
    """What the CPU builds and what a GPU builds, for each layer of the model: the same output
    and the same gradients (float64, batch 2, channels cut to keep the test fast)."""
    rng = np.random.default_rng(5)
    height, width, in_channels = input_shape
    in_channels, out_channels = min(in_channels, 16), min(out_channels, 16)
    x = tf.constant(rng.standard_normal((2, height, width, in_channels)), tf.float64)
    if kind == "transpose":
        if input_shape[2] == 512:  # keep the 4x4 layer's input on the GEMM path's side
            assert height * width <= convolutions.GEMM_MAX_INPUT_PIXELS
        kernel = tf.constant(rng.standard_normal((5, 5, out_channels, in_channels)), tf.float64)
        native = convolutions.conv2d_transpose(x, kernel, 2, convolutions.NATIVE)
        rewritten = convolutions.conv2d_transpose(x, kernel, 2, convolutions.REWRITTEN)
    else:
        kernel = tf.constant(rng.standard_normal((5, 5, in_channels, out_channels)), tf.float64)
        native = convolutions.conv2d(x, kernel, 2, convolutions.NATIVE)
        rewritten = convolutions.conv2d(x, kernel, 2, convolutions.REWRITTEN)
    assert_same_values_and_gradients(graph, rng, [(x, kernel, native, rewritten)])


def test_networks_built_either_way_share_variables_and_agree(graph):
    """The same checkpoint serves both: one set of variables, and the two graphs' images and
    scores agree to float32 round-off."""
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    images, variable_counts = {}, []
    for implementation in convolutions.IMPLEMENTATIONS:
        reuse = bool(images)
        images[implementation] = dcgan.generator(z, 3, reuse=reuse, training=False,
                                                 implementation=implementation)
        dcgan.discriminator(images[implementation], reuse=reuse, training=False,
                            implementation=implementation)
        variable_counts.append(len(tf1.global_variables()))
    assert variable_counts == [31, 31]  # G 17 + D 14, created once, reused by the second build
    scores = {name: dcgan.discriminator(images[name], reuse=True, training=False,
                                        implementation=name)[1] for name in images}
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        feed = {z: np.random.default_rng(6).uniform(-1, 1, (4, hyperparameters.Z_DIM))}
        values = sess.run({"images": images, "scores": scores}, feed)
    np.testing.assert_allclose(values["images"]["native"], values["images"]["rewritten"],
                               atol=1e-5)
    np.testing.assert_allclose(values["scores"]["native"], values["scores"]["rewritten"],
                               rtol=1e-4, atol=1e-5)


def test_the_rewrites_follow_the_measurements_at_each_size(graph):
    """The 4x4 layer runs as a GEMM only where it measured faster (512+ input channels): N=16's
    256-channel one stays TensorFlow's; the image-side layers run on 2x2 blocks at every size."""
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    for size, scope in ((16, "small"), (64, "large")):
        with tf1.variable_scope(scope):
            images = dcgan.generator(z, 3, image_size=size,
                                     implementation=convolutions.REWRITTEN)
            dcgan.discriminator(images, implementation=convolutions.REWRITTEN)
    types = {}
    for op in graph.get_operations():
        parts = op.name.split("/")
        if len(parts) > 3:
            types.setdefault((parts[0], parts[2]), set()).add(op.type)
    assert "Conv2DBackpropInput" in types["small", "deconv2"]
    assert "MatMul" in types["large", "deconv2"]
    assert "Conv2DBackpropInput" not in types["large", "deconv2"]
    for scope, last in (("small", "deconv3"), ("large", "deconv5")):
        assert "DepthToSpace" in types[scope, last]
        assert "SpaceToDepth" in types[scope, "conv1"]
