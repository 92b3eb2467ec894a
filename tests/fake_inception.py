"""A small stand-in for classify_image_graph_def.pb, for tests (the real one is not downloadable
here).

It has the real graph's interface and quirks, node names as listed from the real file (the
first ops of its GraphDef: DecodeJpeg/contents, DecodeJpeg, Cast, ExpandDims/dim, ExpandDims,
ResizeBilinear/size, ResizeBilinear, Sub/y, Sub, Mul/y, Mul, conv/conv2d_params, conv/Conv2D,
conv/batchnorm/..., conv/CheckNumerics, conv/control_dependency, conv; at the end pool_3,
pool_3/_reshape/shape, pool_3/_reshape, softmax/weights, softmax/biases, softmax):
  * the input is a JPEG constant; ExpandDims makes it [1, ?, ?, 3], so every shape after it is
    batch 1;
  * ResizeBilinear to a constant 299 x 299, then (x - 128) / 128;
  * conv/batchnorm is a BatchNormWithGlobalNormalization, which TensorFlow only accepts in a
    GraphDef of producer version below 9 -- the file is set to version 8;
  * pool_3 is an average pool to [1, 1, 1, feature_size]; pool_3/_reshape reshapes it to the
    constant [1, feature_size]: batch 1 hard-wired; softmax over 1008 classes;
  * optionally '_output_shapes' hints on every node (batch 1 included).
Between conv and pool_3 the real network's ten inception blocks are one 1x1 convolution.
"""
import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1

GRAPH_PRODUCER_VERSION = 8  # below 9, where BatchNormWithGlobalNormalization was removed
SOFTMAX_CLASSES = 1008
_CONV_CHANNELS = 8


def fake_graph_def(feature_size=2048, shape_hints=True, producer=GRAPH_PRODUCER_VERSION, seed=0):
    """A frozen GraphDef with the interface of TTUR's Inception graph.

    Args:
      feature_size: channels of pool_3 (2048 in the real graph).
      shape_hints: add '_output_shapes' attributes to every node.
      producer: the GraphDef's producer version.
      seed: seed of the random weights.

    Returns:
      tf1.GraphDef.
    """
    rng = np.random.default_rng(seed)

    def weights(name, *shape):
        scale = np.sqrt(np.prod(shape[:-1]))  # keeps activations of order 1 layer after layer
        return tf.constant((rng.standard_normal(shape) / scale).astype(np.float32), name=name)

    graph = tf.Graph()
    with graph.as_default():
        contents = tf.constant(_tiny_jpeg(), name="DecodeJpeg/contents")
        pixels = tf.cast(tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg"), tf.float32,
                         name="Cast")
        expanded = tf.expand_dims(pixels, 0, name="ExpandDims")
        # The 2015 op: align_corners and half_pixel_centers both false.
        resized = tf.raw_ops.ResizeBilinear(
            images=expanded, size=tf.constant([299, 299], name="ResizeBilinear/size"),
            name="ResizeBilinear")
        scaled = tf.multiply(tf.subtract(resized, tf.constant(128.0, name="Sub/y"), name="Sub"),
                             tf.constant(1 / 128, name="Mul/y"), name="Mul")
        kernel = weights("conv/conv2d_params", 3, 3, 3, _CONV_CHANNELS)
        conv = tf.nn.conv2d(scaled, kernel, 2, "VALID", name="conv/Conv2D")  # [1, 149, 149, 8]
        for part, value in (("moving_mean", 0.0), ("moving_variance", 1.0), ("beta", 0.1),
                            ("gamma", 1.0)):
            tf.constant(np.full(_CONV_CHANNELS, value, np.float32), name=f"conv/batchnorm/{part}")
        normalized = tf.identity(conv, name="conv/batchnorm")  # made a batchnorm below
        checked = tf.debugging.check_numerics(normalized, "conv", name="conv/CheckNumerics")
        with tf.control_dependencies([checked]):
            normalized = tf.identity(normalized, name="conv/control_dependency")
        activated = tf.nn.relu(normalized, name="conv")
        pooled = tf.nn.avg_pool2d(activated, 21, 21, "VALID", name="pool")  # [1, 7, 7, 8]
        mixed_kernel = weights("mixed_10/conv/conv2d_params", 1, 1, _CONV_CHANNELS, feature_size)
        mixed = tf.nn.relu(tf.nn.conv2d(pooled, mixed_kernel, 1, "VALID",
                                        name="mixed_10/conv/Conv2D"), name="mixed_10/join")
        pool_3 = tf.nn.avg_pool2d(mixed, 7, 1, "VALID", name="pool_3")  # [1, 1, 1, feature_size]
        flat = tf.reshape(pool_3, tf.constant([1, feature_size], name="pool_3/_reshape/shape"),
                          name="pool_3/_reshape")
        logits = tf.nn.bias_add(
            tf.matmul(flat, weights("softmax/weights", feature_size, SOFTMAX_CLASSES),
                      name="softmax/logits/MatMul"),
            tf.constant(np.zeros(SOFTMAX_CLASSES, np.float32), name="softmax/biases"),
            name="softmax/logits")
        tf.nn.softmax(logits, name="softmax")
    graph_def = graph.as_graph_def(add_shapes=shape_hints)
    for node in graph_def.node:
        if node.name == "conv/batchnorm":
            # Built as an Identity because current TensorFlow will not build the removed op.
            node.op = "BatchNormWithGlobalNormalization"
            node.input[:] = ["conv/Conv2D"] + [f"conv/batchnorm/{part}" for part in
                                               ("moving_mean", "moving_variance", "beta", "gamma")]
            node.attr["variance_epsilon"].f = 1e-3
            node.attr["scale_after_normalization"].b = True
    graph_def.versions.producer = producer
    return graph_def


def _tiny_jpeg():
    """The bytes of a 4 x 4 black JPEG, for the graph's (never run) input constant."""
    graph = tf.Graph()
    with graph.as_default():
        encoded = tf.io.encode_jpeg(tf.zeros([4, 4, 3], tf.uint8))
    with tf1.Session(graph=graph) as session:
        return session.run(encoded)


def ttur_pool_3(graph_def, image):
    """pool_3 of one image [H, W, 3] computed the way TTUR's fid.py does: the whole graph
    imported under 'FID_Inception_Net', 'FID_Inception_Net/ExpandDims:0' fed directly."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.import_graph_def(graph_def, name="FID_Inception_Net")
    with tf1.Session(graph=graph) as session:
        return session.run("FID_Inception_Net/pool_3:0",
                           {"FID_Inception_Net/ExpandDims:0": image[np.newaxis]}).reshape(-1)
