"""bench.py's work: the throughput of the very training step train.py runs (its docstring says
what is timed and how FLOPs are counted), and of single layers against their CPU rewrites."""
import itertools
import os
import platform
import statistics
import sys
import time

import numpy as np
import tensorflow as tf

import data
from machinery import (convolutions, devices, durable, hyperparameters, sessions, strategies,
                       training_step)

# Random uint8 images the batches are drawn from (bench.py's --batch-size bound).
DATASET_IMAGES = 2048

tf1 = tf.compat.v1

ALTERNATION_BLOCKS = 5  # --precision both: each precision's steps in this many alternating blocks


def flop_count(channels, g_steps, batch_size=1, image_size=hyperparameters.IMAGE_SIZE):
    """FLOPs of one training step of build_model, per `batch_size` images.

    Per image, forward multiply-adds, from the rule dcgan.py builds the networks by
    (hyperparameters.generator_filters and discriminator_filters): G = dense z -> 4x4 plus
    the transposed convolutions (input positions x k^2 x C_in x C_out); D = the convolutions
    (output positions x k^2 x C_in x C_out) plus the dense logit. Backward: a weight gradient
    and an input gradient each cost one forward. The D update: G forward; D forward on real and
    fake; D weight gradients on both; D input gradients on both down to (not into) the first
    conv. Each G update: D forward on the fake batch, D input gradients down to the image, G
    weight gradients, G input gradients down to (not into) the dense layer; plus a G forward,
    except for the first G update, which reuses the D update's.
    """
    taps = hyperparameters.KERNEL_SIZE ** 2
    side = hyperparameters.BASE_SIDE
    g_channels = (*hyperparameters.generator_filters(image_size), channels)
    g_layers = [hyperparameters.Z_DIM * side * side * g_channels[0]]
    for c_in, c_out in zip(g_channels, g_channels[1:]):
        g_layers.append(side * side * taps * c_in * c_out)
        side *= hyperparameters.STRIDE
    d_layers, side = [], image_size
    d_channels = (channels, *hyperparameters.discriminator_filters(image_size))
    for c_in, c_out in zip(d_channels, d_channels[1:]):
        side //= hyperparameters.STRIDE
        d_layers.append(side * side * taps * c_in * c_out)
    d_layers.append(side * side * d_channels[-1])  # the dense logit
    g_fwd, d_fwd = sum(g_layers), sum(d_layers)
    d_update = g_fwd + 2 * d_fwd + 2 * d_fwd + 2 * (d_fwd - d_layers[0])
    g_update_shared = d_fwd + d_fwd + g_fwd + (g_fwd - g_layers[0])
    macs = d_update + g_update_shared + (g_steps - 1) * (g_fwd + g_update_shared)
    return 2 * macs * batch_size


class StepTimer:
    """One configuration's training graph and session, ready to time steps on random data."""

    def __init__(self, channels, g_steps, precision, args, devices=1, augment=None):
        self.channels, self.g_steps, self.precision = channels, g_steps, precision
        self.batch_size, self.devices, self.augment = args.batch_size, devices, augment
        self.augment_p = args.augment_p if augment else None
        engine = strategies.make_engine(devices)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(0)
            self.model = training_step.build_model(
                channels, g_steps=g_steps, precision=precision, g_ema_decay=args.g_ema,
                image_size=args.image_size, strategy=engine.strategy,
                sync_batch_norm=args.sync_batch_norm and devices > 1, augment=augment or (),
                augment_p=self.augment_p if augment else 1.0)
            init = tf1.global_variables_initializer()
        self.graph.finalize()
        rng = np.random.default_rng(0)
        self.images = rng.integers(
            0, 256, (DATASET_IMAGES, args.image_size, args.image_size, channels), dtype=np.uint8)
        self.batches = data.BatchIterator(DATASET_IMAGES, args.batch_size, seed=0)
        self.indices = self._index_stream()
        self.session = tf1.Session(graph=self.graph, config=sessions.session_config(
            args.intra_op_threads, args.inter_op_threads, engine.cpu_devices))
        self.session.run(init)
        self.step, self.step_seconds, self.losses = 0, [], None

    def _index_stream(self):
        while True:
            yield from self.batches.epoch_batches()

    def run(self, steps, timed=True):
        for _ in range(steps):
            start = time.perf_counter()  # the feed's Python work is part of a step
            feed = sessions.step_feed(self.model, self.images, next(self.indices), 0, self.step)
            _, *self.losses = self.session.run(
                [self.model.train_step, self.model.d_loss, self.model.g_loss], feed)
            self.step += 1
            if timed:
                self.step_seconds.append(time.perf_counter() - start)

    def result(self):
        self.session.close()
        images_per_sec = self.batch_size * len(self.step_seconds) / sum(self.step_seconds)
        image_size = self.model.image_size
        flops = flop_count(self.channels, self.g_steps, image_size=image_size)
        return {"channels": self.channels, "g_steps": self.g_steps, "precision": self.precision,
                "image_size": image_size, "devices": self.devices, "batch_size": self.batch_size,
                "augment": self.augment, "augment_p": self.augment_p,
                "images_per_sec": images_per_sec, "gflops_per_image": flops / 1e9,
                "achieved_gflops": images_per_sec * flops / 1e9,
                "median_step_s": statistics.median(self.step_seconds),
                "min_step_s": min(self.step_seconds),
                "d_loss": float(self.losses[0]), "g_loss": float(self.losses[1])}


def measure(channels, g_steps, precisions, args):
    """Times each precision's step (and with --devices N, each on one device and on N; with
    --augment, each without and with the augmentation); several alternate in blocks of steps (so
    the machine's drift falls on all alike). Returns a result dict per configuration."""
    device_counts = [1, args.devices] if args.devices > 1 else [1]
    augments = [None, args.augment] if args.augment else [None]
    timers = [StepTimer(channels, g_steps, precision, args, devices, augment)
              for precision in precisions for devices in device_counts for augment in augments]
    for timer in timers:
        timer.run(args.warmup, timed=False)
    blocks = ALTERNATION_BLOCKS if len(timers) > 1 else 1
    for block in range(blocks):
        for timer in timers:
            timer.run(args.steps // blocks + (block < args.steps % blocks))
    return [timer.result() for timer in timers]


def matmul_peak(n=4096, reps=10):
    """float32 GFLOP/s of an n x n matmul in TensorFlow: the practical peak of this machine."""
    graph = tf.Graph()
    with graph.as_default():
        a = tf1.get_variable("a", [n, n], initializer=tf1.random_normal_initializer())
        b = tf1.get_variable("b", [n, n], initializer=tf1.random_normal_initializer())
        product = tf.reduce_sum(tf.matmul(a, b))  # a scalar out: no copy of the product timed
        init = tf1.global_variables_initializer()
    times = []
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(init)
        for _ in range(reps + 2):
            start = time.perf_counter()
            sess.run(product)
            times.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / statistics.median(times[2:]) / 1e9


def print_result(result, peak):
    share = f" = {100 * result['achieved_gflops'] / peak:.0f}% of the matmul peak" if peak else ""
    on = f" devices={result['devices']}" if result["devices"] > 1 else ""
    if result["augment"]:
        on += f" augment={','.join(result['augment'])} augment_p={result['augment_p']}"
    print(f"image_size={result['image_size']} g_steps={result['g_steps']} "
          f"channels={result['channels']} precision={result['precision']}{on}: "
          f"{result['gflops_per_image']:.4f} GFLOP/image, "
          f"{result['achieved_gflops']:.1f} GFLOP/s{share}, median step "
          f"{result['median_step_s'] * 1000:.0f} ms", flush=True)
    print(f"images_per_sec={result['images_per_sec']:.3f}", flush=True)


def scaling(one, several):
    """One line: N replicas against one device at the same global batch (strong scaling)."""
    speedup = several["images_per_sec"] / one["images_per_sec"]
    several["speedup"], several["scaling_efficiency"] = speedup, speedup / several["devices"]
    return (f"--devices {several['devices']}: {several['images_per_sec']:.1f} images/s against "
            f"{one['images_per_sec']:.1f} on one device ({one['precision']}, global batch "
            f"{one['batch_size']}): speedup {speedup:.2f}x, scaling efficiency "
            f"{100 * speedup / several['devices']:.0f}%")


def augmentation_cost(plain, augmented):
    """One line: what the augmentation adds to the step, in step time."""
    cost = plain["images_per_sec"] / augmented["images_per_sec"] - 1
    augmented["augmentation_cost"] = cost
    return (f"--augment {','.join(augmented['augment'])} --augment-p {augmented['augment_p']}: "
            f"{augmented['images_per_sec']:.1f} images/s against {plain['images_per_sec']:.1f} "
            f"without ({plain['precision']}, batch {plain['batch_size']}): the step takes "
            f"{100 * cost:+.1f}% longer")


def compare_precisions(float32, bfloat16):
    """One line: which precision's step is faster on this machine, and by how much."""
    ratio = bfloat16["images_per_sec"] / float32["images_per_sec"]
    verdict = "faster" if ratio > 1 else "slower"
    return (f"bfloat16 / float32 = {ratio:.2f}: bfloat16 is {verdict} here "
            f"({bfloat16['images_per_sec']:.1f} vs {float32['images_per_sec']:.1f} images/s, "
            f"steps alternated in {ALTERNATION_BLOCKS} blocks each)")


def rewrite_candidates(image_size, channels):
    """(layer, kind, input [h, w, c_in], output channels, rewrite) of every layer of the
    networks at `image_size` that convolutions.py has a CPU rewrite for."""
    g_filters = hyperparameters.generator_filters(image_size)
    side, half = hyperparameters.BASE_SIDE, image_size // hyperparameters.STRIDE
    return [
        ("G deconv2", "transpose", (side, side, g_filters[0]), g_filters[1],
         convolutions.conv2d_transpose_gemm),
        ("G image layer", "transpose", (half, half, g_filters[-1]), channels,
         convolutions.conv2d_transpose_subpixel),
        ("D conv1", "conv", (image_size, image_size, channels),
         hyperparameters.discriminator_filters(image_size)[0], convolutions.conv2d_space_to_depth)]


def _forward_and_gradients(y, x, kernel):
    """Scalars that need y and both of its gradients (a scalar out: no copy timed)."""
    weights = tf.constant(np.random.default_rng(1).standard_normal(y.shape.as_list()[1:]),
                          tf.float32)
    loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
    return [loss] + [tf.reduce_sum(tf.cast(g, tf.float32)) for g in tf.gradients(loss, [x, kernel])]


def time_layer(kind, shape, out_channels, rewrite, precision, args):
    """Median seconds of TensorFlow's op and of the rewrite, forward and both gradients, timed
    in alternation: {'native': s, 'rewritten': s}."""
    graph = tf.Graph()
    with graph.as_default():
        rng = np.random.default_rng(0)
        dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
        x = tf1.get_variable("x", initializer=rng.standard_normal(
            (args.batch_size, *shape)).astype(np.float32))
        kernel_shape = (hyperparameters.KERNEL_SIZE, hyperparameters.KERNEL_SIZE) + (
            (shape[2], out_channels) if kind == "conv" else (out_channels, shape[2]))
        kernel = tf1.get_variable("kernel", initializer=(0.02 * rng.standard_normal(
            kernel_shape)).astype(np.float32))
        x, kernel = tf.cast(x, dtype), tf.cast(kernel, dtype)
        layer = convolutions.conv2d if kind == "conv" else convolutions.conv2d_transpose
        fetches = {"native": _forward_and_gradients(
                       layer(x, kernel, hyperparameters.STRIDE, convolutions.NATIVE), x, kernel),
                   "rewritten": _forward_and_gradients(rewrite(x, kernel), x, kernel)}
        init = tf1.global_variables_initializer()
    times = {name: [] for name in fetches}
    with tf1.Session(graph=graph, config=sessions.session_config(
            args.intra_op_threads, args.inter_op_threads)) as sess:
        sess.run(init)
        for _ in range(max(args.warmup, 1)):
            sess.run(fetches)
        for rep in range(args.steps):
            for name in (("native", "rewritten") if rep % 2 == 0 else ("rewritten", "native")):
                start = time.perf_counter()
                sess.run(fetches[name])
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_layers(args, precisions, channels_list):
    """--layers: one line and one result per rewritable layer, channel count and precision."""
    results = []
    for precision, channels in itertools.product(precisions, channels_list):
        for name, kind, shape, out_channels, rewrite in rewrite_candidates(args.image_size,
                                                                           channels):
            seconds = time_layer(kind, shape, out_channels, rewrite, precision, args)
            ratio = seconds["native"] / seconds["rewritten"]
            print(f"image_size={args.image_size} {precision} {name} "
                  f"{'x'.join(map(str, shape))} -> {out_channels}: TensorFlow "
                  f"{1000 * seconds['native']:.1f} ms, rewrite {1000 * seconds['rewritten']:.1f}"
                  f" ms, TensorFlow / rewrite {ratio:.2f} (batch {args.batch_size}, median of "
                  f"{args.steps})", flush=True)
            results.append({"layer": name, "input": list(shape), "out_channels": out_channels,
                            "precision": precision, "native_s": seconds["native"],
                            "rewritten_s": seconds["rewritten"], "speedup": ratio})
    return results


def benchmark(args):
    """bench.py with its parsed flags: prints each configuration's figures and writes the JSON
    report; returns the exit status."""
    devices.warn_if_gpu_unseen()
    bfloat16 = devices.bfloat16_support()
    warning = devices.bfloat16_warning(bfloat16)
    if args.precision in ("bfloat16", "both") and warning:
        print(warning, file=sys.stderr, flush=True)
    precisions = {None: ["float32"] + (["bfloat16"] if bfloat16.hardware else []),
                  "both": list(hyperparameters.PRECISIONS)}.get(args.precision, [args.precision])
    print(f"tensorflow {tf.__version__}, numpy {np.__version__}, python {platform.python_version()}"
          f", {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"bfloat16: {bfloat16.reason}; threads intra={args.intra_op_threads} "
          f"inter={args.inter_op_threads} (0 = TensorFlow's choice)", flush=True)
    if args.devices > 1:  # before any session starts TensorFlow's runtime: its devices
        try:
            print(strategies.make_engine(args.devices).description, flush=True)
        except strategies.EngineError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    peak = matmul_peak() if args.peak else None
    if peak:
        print(f"float32 matmul peak (4096^3): {peak:.1f} GFLOP/s", flush=True)
    results = []
    groups = [precisions] if args.precision == "both" else [[p] for p in precisions]
    g_steps_list = [args.g_steps] if args.g_steps else [1, 2]
    channels_list = [args.channels] if args.channels else [3, 1]
    if args.layers:
        results = measure_layers(args, precisions, channels_list)
        g_steps_list = []  # the step is not timed
    for g_steps, channels, group in itertools.product(g_steps_list, channels_list, groups):
        group_results = measure(channels, g_steps, group, args)
        for result in group_results:
            print_result(result, peak)
        plain = [result for result in group_results if not result["augment"]]
        for one, augmented in zip(plain, [r for r in group_results if r["augment"]]):
            print(augmentation_cost(one, augmented), flush=True)
        on_one = [result for result in plain if result["devices"] == 1]
        for one, several in zip(on_one, [r for r in plain if r["devices"] > 1]):
            print(scaling(one, several), flush=True)
        if len(on_one) == 2:
            print(compare_precisions(*on_one), flush=True)
        results.extend(group_results)
    report = {"settings": vars(args), "matmul_peak_gflops": peak, "results": results,
              "versions": {"tensorflow": tf.__version__, "numpy": np.__version__,
                           "python": platform.python_version()},
              "machine": {"cores": os.cpu_count(), "processor": platform.processor(),
                          "bfloat16": bfloat16.reason},
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    durable.write_json(args.json, report)
    return 0
