"""Training-step throughput of the real training graph: `python bench.py`.

Builds the graph with dcgan.build_model and the session with dcgan.session_config, exactly as
train.py does, and feeds it through dcgan.step_feed (uint8 batches of a shuffled in-memory
dataset, z drawn per step), so what is timed is the step train.py runs. After --warmup steps it
times --steps steps and prints, per configuration (g-steps x channels x precision):

  images_per_sec=<float>  (last line when one configuration is asked for; outside checks read it)

and the achieved GFLOP/s. FLOPs per image are counted analytically (flop_count below): only the
multiply-adds of convolutions, transposed convolutions and dense layers, 2 FLOP each, forward and
the backward products each update needs; elementwise work (batch norm, activations, Adam) is left
out. A JSON file (--json) records settings, results and versions.

  python bench.py                                   # every configuration this machine supports
  python bench.py --g-steps 1 --channels 3 --precision float32
  python bench.py --peak                            # also the float32 matmul peak of this machine
"""
import argparse
import itertools
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import data  # noqa: E402
import dcgan  # noqa: E402
import devices  # noqa: E402
import runs  # noqa: E402

tf1 = tf.compat.v1

DATASET_IMAGES = 2048  # random uint8 images to draw batches from


def flop_count(channels, g_steps, batch_size=1):
    """FLOPs of one training step of build_model, per `batch_size` images.

    Per image, forward multiply-adds, from dcgan.py's architecture: G = dense z -> 4x4x512 plus
    the transposed convolutions (input positions x k^2 x C_in x C_out); D = the convolutions
    (output positions x k^2 x C_in x C_out) plus the dense logit. Backward: a weight gradient
    and an input gradient each cost one forward. The D update: G forward; D forward on real and
    fake; D weight gradients on both; D input gradients on both down to (not into) the first
    conv. Each G update: D forward on the fake batch, D input gradients down to the image, G
    weight gradients, G input gradients down to (not into) the dense layer; plus a G forward,
    except for the first G update, which reuses the D update's.
    """
    taps = dcgan.KERNEL_SIZE ** 2
    side, _, base_channels = dcgan.G_BASE_SHAPE
    g_layers = [dcgan.Z_DIM * side * side * base_channels]
    g_channels = (base_channels, *dcgan.G_FILTERS, channels)
    for c_in, c_out in zip(g_channels, g_channels[1:]):
        g_layers.append(side * side * taps * c_in * c_out)
        side *= dcgan.STRIDE
    d_layers, side = [], data.IMAGE_SIZE
    d_channels = (channels, *dcgan.D_FILTERS)
    for c_in, c_out in zip(d_channels, d_channels[1:]):
        side //= dcgan.STRIDE
        d_layers.append(side * side * taps * c_in * c_out)
    d_layers.append(side * side * d_channels[-1])  # the dense logit
    g_fwd, d_fwd = sum(g_layers), sum(d_layers)
    d_update = g_fwd + 2 * d_fwd + 2 * d_fwd + 2 * (d_fwd - d_layers[0])
    g_update_shared = d_fwd + d_fwd + g_fwd + (g_fwd - g_layers[0])
    macs = d_update + g_update_shared + (g_steps - 1) * (g_fwd + g_update_shared)
    return 2 * macs * batch_size


def measure(channels, g_steps, precision, args):
    """Builds the training graph and times it; returns a result dict."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        model = dcgan.build_model(channels, g_steps=g_steps, precision=precision)
        init = tf1.global_variables_initializer()
    graph.finalize()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (DATASET_IMAGES, data.IMAGE_SIZE, data.IMAGE_SIZE, channels),
                          dtype=np.uint8)
    batches = data.BatchIterator(DATASET_IMAGES, args.batch_size, seed=0)

    def index_stream():
        while True:
            yield from batches.epoch_batches()

    stream = index_stream()
    config = dcgan.session_config(args.intra_op_threads, args.inter_op_threads)
    step_seconds = []
    with tf1.Session(graph=graph, config=config) as sess:
        sess.run(init)
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()  # the feed's Python work is part of a step
            feed = dcgan.step_feed(model, images, next(stream), 0, step)
            _, d_loss, g_loss = sess.run([model.train_step, model.d_loss, model.g_loss], feed)
            if step >= args.warmup:
                step_seconds.append(time.perf_counter() - start)
    total = sum(step_seconds)
    images_per_sec = args.batch_size * len(step_seconds) / total
    flops = flop_count(channels, g_steps)
    return {"channels": channels, "g_steps": g_steps, "precision": precision,
            "images_per_sec": images_per_sec,
            "gflops_per_image": flops / 1e9, "achieved_gflops": images_per_sec * flops / 1e9,
            "median_step_s": statistics.median(step_seconds), "min_step_s": min(step_seconds),
            "d_loss": float(d_loss), "g_loss": float(g_loss)}


def matmul_peak(n=4096, reps=10):
    """float32 GFLOP/s of an n x n matmul in TensorFlow: the practical peak of this machine."""
    graph = tf.Graph()
    with graph.as_default():
        a = tf1.get_variable("a", [n, n], initializer=tf1.random_normal_initializer())
        b = tf1.get_variable("b", [n, n], initializer=tf1.random_normal_initializer())
        product = tf.reduce_sum(tf.matmul(a, b))  # a scalar out: no copy of the product timed
        init = tf1.global_variables_initializer()
    times = []
    with tf1.Session(graph=graph, config=dcgan.session_config()) as sess:
        sess.run(init)
        for _ in range(reps + 2):
            start = time.perf_counter()
            sess.run(product)
            times.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / statistics.median(times[2:]) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description="Throughput of the DCGAN training step.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--g-steps", type=int, choices=[1, 2], default=None,
                        help="generator updates per D update (default: both 1 and 2)")
    parser.add_argument("--channels", type=int, choices=[1, 3], default=None,
                        help="image channels (default: both 3 and 1)")
    parser.add_argument("--precision", choices=dcgan.PRECISIONS, default=None,
                        help="compute precision (default: each this machine supports)")
    parser.add_argument("--batch-size", type=int, default=dcgan.BATCH_SIZE, help="images per step")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="as in train.py")
    parser.add_argument("--inter-op-threads", type=int, default=0, help="as in train.py")
    parser.add_argument("--peak", action="store_true",
                        help="also measure the float32 matmul peak (4096^3) and report the share")
    parser.add_argument("--json", default="bench_results.json", help="where to write the results")
    args = parser.parse_args(argv)
    if args.batch_size <= 0 or args.steps <= 0 or args.warmup < 0:
        parser.error("--batch-size and --steps must be positive, --warmup >= 0")
    bfloat16_ok, bfloat16_reason = devices.bfloat16_support()
    if args.precision == "bfloat16" and not bfloat16_ok:
        print(f"error: --precision bfloat16: {bfloat16_reason}", file=sys.stderr)
        return 1
    precisions = [args.precision] if args.precision else \
        ["float32"] + (["bfloat16"] if bfloat16_ok else [])
    g_steps_list = [args.g_steps] if args.g_steps else [1, 2]
    channels_list = [args.channels] if args.channels else [3, 1]

    print(f"tensorflow {tf.__version__}, numpy {np.__version__}, python {platform.python_version()}"
          f", {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"bfloat16: {bfloat16_reason}; threads intra={args.intra_op_threads} "
          f"inter={args.inter_op_threads} (0 = TensorFlow's choice)", flush=True)
    peak = matmul_peak() if args.peak else None
    if peak:
        print(f"float32 matmul peak (4096^3): {peak:.1f} GFLOP/s", flush=True)
    results = []
    for g_steps, channels, precision in itertools.product(g_steps_list, channels_list, precisions):
        result = measure(channels, g_steps, precision, args)
        share = f" = {100 * result['achieved_gflops'] / peak:.0f}% of the matmul peak" if peak else ""
        print(f"g_steps={g_steps} channels={channels} precision={precision}: "
              f"{result['gflops_per_image']:.4f} GFLOP/image, {result['achieved_gflops']:.1f} "
              f"GFLOP/s{share}, median step {result['median_step_s'] * 1000:.0f} ms", flush=True)
        print(f"images_per_sec={result['images_per_sec']:.3f}", flush=True)
        results.append(result)
    report = {"settings": vars(args), "matmul_peak_gflops": peak, "results": results,
              "versions": {"tensorflow": tf.__version__, "numpy": np.__version__,
                           "python": platform.python_version()},
              "machine": {"cores": os.cpu_count(), "processor": platform.processor(),
                          "bfloat16": bfloat16_reason},
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    runs.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
