"""The convolutions of the DCGAN: 'SAME' convolution and transposed convolution, two ways each.

`conv2d(x, kernel, stride, implementation)` and `conv2d_transpose(x, kernel, stride,
implementation)` take and return tensors (no variables: `dcgan.py` owns those) and pick how to
compute:

  native     TensorFlow's own ops (`tf.nn.conv2d`, `tf.nn.conv2d_transpose`): cuDNN on a GPU.
  rewritten  the same sums in forms that ran faster on CPUs with oneDNN (docs/performance.md,
             measured layer by layer at every image size):
             - a transposed convolution of a tiny, wide input (the generator's 4x4 -> 8x8 layer,
               512 or more input channels) as one matrix product plus a col2im
               (`conv2d_transpose_gemm`);
             - a layer with 1-3 channels on the image side (the discriminator's first
               convolution, the generator's last transposed convolution) as a stride-1 3x3
               convolution on 2x2 pixel blocks (`conv2d_space_to_depth`,
               `conv2d_transpose_subpixel`): with so few channels the stride-2 kernels have
               almost nothing to vectorize over.
             Only 5x5 stride-2 layers have rewrites; any other layer runs natively.

`implementation_for(device_type)` is the choice the training graph makes: rewritten on a CPU,
where the rewrites were measured faster, native on a GPU, where they were never measured.
Tests check that both compute the same values and gradients in float64.
"""
import tensorflow as tf

NATIVE = "native"
REWRITTEN = "rewritten"
IMPLEMENTATIONS = (NATIVE, REWRITTEN)

# The geometry the rewrites are written for: 5x5 kernels, stride 2, 'SAME' padding.
_KERNEL = 5
_STRIDE = 2
# Transposed convolutions whose input has at most this many pixels and at least this many
# channels run as GEMM + col2im. Measured 1.4x (4x4x512, N=32), 2.2x (4x4x1024 -> 512, N=64) and
# 2.2x (-> 1024, N=128) TensorFlow's speed; N=16's 4x4x256 -> 128 measured 0.90x in float32
# (1.07x in bfloat16), so it stays TensorFlow's.
GEMM_MAX_INPUT_PIXELS = 16
GEMM_MIN_INPUT_CHANNELS = 512
# Layers with at most this many channels on the image side run on 2x2 pixel blocks: measured
# 1.0-1.5x TensorFlow's speed at every image size from 16 to 128 (float32 and bfloat16).
BLOCK_MAX_IMAGE_CHANNELS = 3


def implementation_for(device_type):
    """The implementation for a step that runs on `device_type` ('CPU' or 'GPU')."""
    return NATIVE if device_type == "GPU" else REWRITTEN


def describe(implementation):
    """One line for the logs: which convolutions the graph runs."""
    if implementation == NATIVE:
        return "TensorFlow's own (tf.nn.conv2d, tf.nn.conv2d_transpose)"
    return ("rewritten for the CPU (4x4-input transposed convolution of >= 512 channels: GEMM + "
            "col2im; 1-3-channel image side: 2x2 pixel blocks; the rest TensorFlow's own)")


def _check_implementation(implementation):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got "
                         f"{implementation!r}")


def _rewritable(kernel, stride):
    return stride == _STRIDE and kernel.shape[0] == kernel.shape[1] == _KERNEL


def conv2d(x, kernel, stride, implementation):
    """tf.nn.conv2d(x, kernel, strides=stride, padding='SAME'), computed by `implementation`.

    Args:
      x: [batch, h, w, c_in].
      kernel: [k, k, c_in, c_out].
      stride: the stride of both spatial axes.
      implementation: NATIVE or REWRITTEN.

    Returns:
      [batch, ceil(h / stride), ceil(w / stride), c_out].

    Raises:
      ValueError: an unknown implementation.
    """
    _check_implementation(implementation)
    if implementation == REWRITTEN and _rewritable(kernel, stride) \
            and kernel.shape[2] <= BLOCK_MAX_IMAGE_CHANNELS:
        return conv2d_space_to_depth(x, kernel)
    return tf.nn.conv2d(x, kernel, strides=stride, padding="SAME")


def conv2d_transpose(x, kernel, stride, implementation):
    """tf.nn.conv2d_transpose(x, kernel, strides=stride, padding='SAME') to [b, h*s, w*s, c_out].

    Args:
      x: [batch, h, w, c_in] with a static shape except the batch.
      kernel: [k, k, c_out, c_in], the transposed-convolution layout.
      stride: the stride of both spatial axes.
      implementation: NATIVE or REWRITTEN.

    Returns:
      [batch, h * stride, w * stride, c_out], with a static shape except the batch.

    Raises:
      ValueError: an unknown implementation.
    """
    _check_implementation(implementation)
    height, width, out_channels = x.shape[1] * stride, x.shape[2] * stride, kernel.shape[2]
    if implementation == REWRITTEN and _rewritable(kernel, stride):
        if x.shape[1] * x.shape[2] <= GEMM_MAX_INPUT_PIXELS \
                and x.shape[3] >= GEMM_MIN_INPUT_CHANNELS:
            return conv2d_transpose_gemm(x, kernel)
        if out_channels <= BLOCK_MAX_IMAGE_CHANNELS:
            return conv2d_transpose_subpixel(x, kernel)
    output_shape = tf.stack([tf.shape(x)[0], height, width, out_channels])
    y = tf.nn.conv2d_transpose(x, kernel, output_shape, strides=stride, padding="SAME")
    return tf.reshape(y, [-1, height, width, out_channels])  # restore the static shape


# A 5x5 stride-2 'SAME' transposed convolution puts input pixel (i, j) times kernel tap (ky, kx)
# at output pixel (2i + ky - 1, 2j + kx - 1): TensorFlow pads the matching forward convolution
# by 1 before and 2 after.
_PAD_BEFORE = (_KERNEL - _STRIDE) // 2
_PAD_AFTER = _KERNEL - _STRIDE - _PAD_BEFORE


def _col2im(columns, height, width):
    """Sums tap contributions [batch, h, w, 25, c] into the stride-2 output [batch, 2h, 2w, c].

    Output pixel (2m + py, 2n + px) gets the taps (ky, kx) with ky - 1 = py (mod 2) and
    kx - 1 = px (mod 2), from input pixel (m - dy, n - dx), dy = (ky - 1 - py) / 2 in {-1, 0, 1}.
    Each of the four output phases is then a sum of shifted [batch, h, w, c] tensors, and
    depth_to_space interleaves the phases (as in conv2d_transpose_subpixel).
    """
    def shifted(tap, dy, dx):  # out[m, n] = columns[m - dy, n - dx, tap], zero outside
        # Slice the rows and columns that land inside, then pad the one missing edge, so each
        # tap is copied once.
        inside = columns[:, max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx), tap]
        if dy == 0 and dx == 0:
            return inside
        return tf.pad(inside, [[0, 0], [max(0, dy), max(0, -dy)], [max(0, dx), max(0, -dx)],
                               [0, 0]])

    phases = [  # in depth_to_space's channel order, (py * 2 + px) * c + channel
        tf.add_n([shifted(ky * _KERNEL + kx, (ky - _PAD_BEFORE - py) // _STRIDE,
                          (kx - _PAD_BEFORE - px) // _STRIDE)
                  for ky in range(_KERNEL) if (ky - _PAD_BEFORE - py) % _STRIDE == 0
                  for kx in range(_KERNEL) if (kx - _PAD_BEFORE - px) % _STRIDE == 0])
        for py in range(_STRIDE) for px in range(_STRIDE)]
    return tf.nn.depth_to_space(tf.concat(phases, axis=3), _STRIDE)


def conv2d_transpose_gemm(x, kernel):
    """tf.nn.conv2d_transpose(x, kernel, strides=2, padding='SAME') as one matrix product.

    The same sums in a different order: every input pixel times the kernel, [batch*h*w, c_in] x
    [c_in, 25*c_out], then `_col2im` adds the 25 taps into place. The gradient is written out:
    the output gradient's 5x5 stride-2 patches (the forward convolution's im2col) times the
    kernel, and the input transposed times those patches. On a 4x4 input oneDNN's convolution
    kernels run far below its matrix-product speed; these three products are large plain GEMMs.

    Args:
      x: [batch, h, w, c_in] with a static shape except the batch.
      kernel: [5, 5, c_out, c_in], the transposed-convolution layout.

    Returns:
      [batch, 2h, 2w, c_out].
    """
    height, width, in_channels = x.shape[1], x.shape[2], x.shape[3]
    out_channels = kernel.shape[2]
    taps = _KERNEL * _KERNEL

    @tf.custom_gradient
    def transposed_conv(x, kernel):
        matrix = tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [in_channels, taps * out_channels])
        pixels = tf.reshape(x, [-1, in_channels])
        columns = tf.reshape(tf.matmul(pixels, matrix), [-1, height, width, taps, out_channels])
        y = _col2im(columns, height, width)

        def gradient(dy):
            padded = tf.pad(dy, [[0, 0], [_PAD_BEFORE, _PAD_AFTER], [_PAD_BEFORE, _PAD_AFTER],
                                 [0, 0]])
            patches = tf.image.extract_patches(
                padded, [1, _KERNEL, _KERNEL, 1], [1, _STRIDE, _STRIDE, 1], [1, 1, 1, 1], "VALID")
            patches = tf.reshape(patches, [-1, taps * out_channels])
            dx = tf.reshape(tf.matmul(patches, matrix, transpose_b=True),
                            [-1, height, width, in_channels])
            dmatrix = tf.matmul(pixels, patches, transpose_a=True)
            dkernel = tf.transpose(tf.reshape(dmatrix, [in_channels, _KERNEL, _KERNEL,
                                                        out_channels]), [1, 2, 3, 0])
            return dx, dkernel

        return y, gradient

    return transposed_conv(x, kernel)


# Both block rewrites below rest on one fact: along each axis, a 5x5 stride-2 'SAME' convolution
# gives output pixel m the input pixels 2m + k - 1 times taps k = 0..4 (_PAD_BEFORE = 1). Split
# the input into 2-pixel blocks, pixel 2i + q: the 5 taps become 3 block offsets j = i - m + 1
# (a 3x3 'SAME' stride-1 window) of 2 phases q each, tap k = 2j + q - 1, the sixth (k = -1)
# zero. The kernels are rearranged in the graph on every step (a few thousand numbers), so the
# variables keep the 5x5 layout and checkpoints do not depend on the implementation.
_BLOCK_TAPS = 3


def _blocked_kernel(kernel):
    """[5, 5, a, b] -> [3, 3, 2, 2, a, b] (jy, jx, qy, qx): tap (2jy + qy - 1, 2jx + qx - 1)."""
    padded = tf.pad(kernel, [[1, 0], [1, 0], [0, 0], [0, 0]])  # index 2j + q holds tap 2j + q - 1
    blocked = tf.reshape(padded, [_BLOCK_TAPS, _STRIDE, _BLOCK_TAPS, _STRIDE, *kernel.shape[2:]])
    return tf.transpose(blocked, [0, 2, 1, 3, 4, 5])


def conv2d_space_to_depth(x, kernel):
    """tf.nn.conv2d(x, kernel, strides=2, padding='SAME') as a 3x3 stride-1 convolution.

    The input's 2x2 pixel blocks become 4*c_in channels (space_to_depth); output pixel m reads
    blocks m - 1, m, m + 1 ('SAME' 3x3), and block tap j, phase q is the 5x5 tap 2j + q - 1.
    36 taps instead of 25, but a stride-1 kernel over 4*c_in channels.

    Args:
      x: [batch, h, w, c_in], h and w even.
      kernel: [5, 5, c_in, c_out].

    Returns:
      [batch, h/2, w/2, c_out].
    """
    in_channels, out_channels = kernel.shape[2], kernel.shape[3]
    blocked = tf.reshape(_blocked_kernel(kernel),  # [jy, jx, qy, qx, c_in, c_out]
                         [_BLOCK_TAPS, _BLOCK_TAPS, _STRIDE * _STRIDE * in_channels, out_channels])
    return tf.nn.conv2d(tf.nn.space_to_depth(x, _STRIDE), blocked, strides=1, padding="SAME")


def conv2d_transpose_subpixel(x, kernel):
    """tf.nn.conv2d_transpose(x, kernel, strides=2, padding='SAME') as a 3x3 stride-1 convolution.

    Output pixel 2m + p gets input pixel i with tap k = 2(m - i) + p + 1: a 3x3 'SAME'
    convolution over input pixels m - 1, m, m + 1 (j = i - m + 1) to 4*c_out channels, one group
    per output phase (py, px), with tap k = 3 - 2j + p; depth_to_space interleaves the phases.
    36 taps instead of 25, but stride-1 kernels.

    Args:
      x: [batch, h, w, c_in].
      kernel: [5, 5, c_out, c_in], the transposed-convolution layout.

    Returns:
      [batch, 2h, 2w, c_out].
    """
    out_channels, in_channels = kernel.shape[2], kernel.shape[3]
    # Tap 3 - 2j + p is _blocked_kernel's 2j' + q - 1 with j' = 2 - j, q = p: the block taps
    # reversed, the phases kept.
    blocked = _blocked_kernel(kernel)[::-1, ::-1]           # [jy, jx, py, px, c_out, c_in]
    blocked = tf.reshape(tf.transpose(blocked, [0, 1, 5, 2, 3, 4]),
                         [_BLOCK_TAPS, _BLOCK_TAPS, in_channels, _STRIDE * _STRIDE * out_channels])
    phases = tf.nn.conv2d(x, blocked, strides=1, padding="SAME")  # channel (py*2 + px)*c_out + c
    return tf.nn.depth_to_space(phases, _STRIDE)
