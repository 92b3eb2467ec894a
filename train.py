"""Trains the DCGAN: `python train.py --dataset svhn`.

Per batch, one D update then --g-steps G updates on the same z, all in one session call (see
dcgan.build_model). After every epoch the run directory gets a sample grid from a fixed z, a loss
plot and a checkpoint; running the same command again resumes where the run stopped.

Run directory (--out, default runs/<dataset>):
  config.json                 the settings of the run
  samples/epoch_0001.png ...  6x6 grids from the same fixed z, batch norm in inference mode
  losses.png, metrics.csv     D and G loss, mean D(x), mean D(G(z)) per --log-every steps
  checkpoints/                weights, both Adam states, step, epoch, fixed z, data position
  events.out.tfevents.*       TensorBoard: the four scalars and the sample grid
Every file is replaced atomically, so a process killed at any moment loses nothing saved.
"""
import argparse
import contextlib
import csv
import io
import json
import math
import os
import signal
import struct
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out of logs

import numpy as np  # noqa: E402

import data  # noqa: E402

# --- Defaults (the paper's numbers live in dcgan.py; these are the run's own) ----------------
DEFAULT_EPOCHS = 25
DEFAULT_SEED = 0
DEFAULT_LOG_EVERY = 10
DEFAULT_GRID = 6            # 6x6 sample grid
CHECKPOINTS_KEPT = 3
LOSS_FIELDS = ("d_loss", "g_loss", "d_real", "d_fake", "images_per_sec")
QUALITY_FIELDS = ("classifier_score", "frechet_distance", "class_entropy", "min_class_share")
# A row holds either the losses of a step or the quality of an evaluation; the rest stay empty.
METRIC_FIELDS = ("step", "epoch", *LOSS_FIELDS, *QUALITY_FIELDS, "time")
# Settings a checkpoint is tied to: changing one makes a resumed run meaningless.
RESUME_KEYS = ("dataset", "splits", "z_dim", "batch_size", "seed")
EXIT_ERROR, EXIT_NAN, EXIT_INTERRUPTED = 1, 3, 130


class RunError(Exception):
    """A problem the user can fix; main() prints it as one line and exits non-zero."""

    def __init__(self, message, exit_code=EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


def parse_args(argv=None):
    import dcgan  # the paper's defaults

    parser = argparse.ArgumentParser(
        description="Train a DCGAN (TF1 graph mode) on SVHN or MNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--dataset", default="svhn", choices=data.DATASETS, help="what to train on")
    add("--splits", default=None,
        help="comma-separated dataset splits to train on (svhn: train,test,extra; mnist: "
             "train,test); default: train and test")
    add("--data-dir", default="data", help="folder holding one sub-folder of files per dataset")
    add("--no-download", action="store_true",
        help="never touch the network: a missing data file is an error")
    add("--skip-checksum", action="store_true",
        help="do not compare data files with their published MD5 (for custom files)")
    add("--out", default=None, help="run directory (default: runs/<dataset>)")
    add("--fresh", action="store_true",
        help="start over: move an existing run directory aside to <out>.old-<time> first")
    add("--epochs", type=int, default=DEFAULT_EPOCHS, help="total epochs of the run")
    add("--max-steps", type=int, default=None,
        help="end the run (as an epoch ends) once this many batches have been trained")
    add("--batch-size", type=int, default=dcgan.BATCH_SIZE, help="images per batch")
    add("--z-dim", type=int, default=dcgan.Z_DIM, help="size of the noise vector z ~ U(-1, 1)")
    add("--lr", type=float, default=dcgan.LEARNING_RATE, help="Adam learning rate, both networks")
    add("--beta1", type=float, default=dcgan.BETA1, help="Adam beta1 (momentum), both networks")
    add("--alpha", type=float, default=dcgan.ALPHA, help="leaky ReLU slope of the discriminator")
    add("--smooth", type=float, default=dcgan.SMOOTH,
        help="one-sided label smoothing: real labels are 1 - smooth")
    add("--g-steps", type=int, default=dcgan.G_STEPS,
        help="generator updates per discriminator update, on the same z")
    add("--precision", default="float32", choices=dcgan.PRECISIONS,
        help="compute precision; bfloat16 keeps float32 weights, statistics and losses, and "
             "needs a CPU with AVX512_BF16/AMX or a GPU")
    add("--seed", type=int, default=DEFAULT_SEED,
        help="seed of the weights, the data order, every z and the fixed sample z")
    add("--deterministic", action="store_true",
        help="deterministic TensorFlow kernels: the same seed gives the same numbers (slower)")
    add("--log-every", type=int, default=DEFAULT_LOG_EVERY,
        help="steps between records in metrics.csv and TensorBoard")
    add("--sample-grid", type=int, default=DEFAULT_GRID, help="sample grid side, in images")
    add("--eval-every", type=int, default=0,
        help="every this many epochs, measure sample quality (evaluate.py's classifier score, "
             "Frechet distance, class coverage); 0: never")
    add("--eval-num", type=int, default=5000,
        help="generated images per evaluation, compared with as many real ones")
    add("--intra-op-threads", type=int, default=0,
        help="threads inside one op (0: TensorFlow's choice, one per core)")
    add("--inter-op-threads", type=int, default=0,
        help="ops run at once (0: TensorFlow's choice)")
    args = parser.parse_args(argv)
    positive = ("epochs", "batch_size", "z_dim", "g_steps", "log_every", "sample_grid",
                "eval_num")
    for name in positive:
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.eval_every < 0:
        parser.error("--eval-every must be >= 0")
    if args.max_steps is not None and args.max_steps <= 0:
        parser.error("--max-steps must be positive")
    if not 0.0 <= args.smooth < 1.0:
        parser.error("--smooth must be in [0, 1)")
    if not args.lr > 0 or not 0.0 <= args.beta1 < 1.0 or not args.alpha >= 0:
        parser.error("--lr must be > 0, --beta1 in [0, 1) and --alpha >= 0")
    args.splits = tuple(args.splits.split(",")) if args.splits else data.DEFAULT_SPLITS[args.dataset]
    args.out = args.out or os.path.join("runs", args.dataset)
    return args


# --- Files written atomically ----------------------------------------------------------------
def write_json(path, value):
    text = json.dumps(value, indent=2, sort_keys=True)
    data.atomic_write(path, lambda f: f.write(text.encode()))


def read_metrics(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        rows = []
        for row in csv.DictReader(handle):
            try:
                record = {key: float(row[key]) for key in METRIC_FIELDS if row.get(key)}
            except ValueError:
                break  # a line cut short by a kill: it and anything after it are dropped
            if "step" not in record:
                break
            rows.append(record)
        return rows


def write_metrics(path, rows):
    def write(handle):
        text = io.StringIO()
        writer = csv.DictWriter(text, METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        handle.write(text.getvalue().encode())
    data.atomic_write(path, write)


# --- Pictures --------------------------------------------------------------------------------
def pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed (servers, CI)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def to_uint8(images):
    """[-1, 1] floats -> 0..255 uint8, the inverse of data.scale."""
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


GRID_GAP = 2  # white pixels between tiles


def tile_images(images, side):
    """uint8 [n, h, w, c] -> one [side*h + gaps, side*w + gaps, c] image, row by row, white gaps."""
    count, height, width, channels = images.shape
    grid = np.full((side * (height + GRID_GAP) - GRID_GAP, side * (width + GRID_GAP) - GRID_GAP,
                    channels), 255, np.uint8)
    for index in range(min(count, side * side)):
        row, column = divmod(index, side)
        top, left = row * (height + GRID_GAP), column * (width + GRID_GAP)
        grid[top:top + height, left:left + width] = images[index]
    return grid


def save_grid_png(path, images, side, title=None):
    """Saves a titled grid of [-1, 1] images as a PNG; returns the PNG bytes.

    The tiles are put together with numpy and drawn as ONE image: a subplot per tile cost
    0.25-0.6 s per grid, time the training loop waited at every epoch's end.
    """
    plt = pyplot()

    grid = tile_images(to_uint8(images), side)
    title_inches = 0.3 if title else 0.0
    figure = plt.figure(figsize=(side, side + title_inches))
    axis = figure.add_axes([0, 0, 1, side / (side + title_inches)])
    axis.axis("off")
    if grid.shape[-1] == 1:
        axis.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        axis.imshow(grid, interpolation="nearest")
    if title:
        # centred in the strip of title_inches above the grid
        figure.suptitle(title, fontsize=9, y=1 - title_inches / 2 / (side + title_inches),
                        verticalalignment="center")
    return save_figure(figure, path, dpi=64)


def save_loss_plot(path, rows):
    plt = pyplot()

    rows = [row for row in rows if "d_loss" in row]
    steps = [row["step"] for row in rows]
    figure, axis = plt.subplots(figsize=(8, 4))
    axis.plot(steps, [row["d_loss"] for row in rows], label="discriminator", alpha=0.8)
    axis.plot(steps, [row["g_loss"] for row in rows], label="generator", alpha=0.8)
    axis.set_xlabel("step (batches)")
    axis.set_ylabel("loss")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def save_quality_plot(path, rows):
    """Classifier score, Frechet distance and class entropy of each evaluation, over steps."""
    plt = pyplot()

    rows = [row for row in rows if "classifier_score" in row]
    steps = [row["step"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for axis, field, title in zip(axes, ("classifier_score", "frechet_distance", "class_entropy"),
                                  ("classifier score (max 10)", "Frechet distance (lower is better)",
                                   "class entropy, nats (uniform 2.303)")):
        axis.plot(steps, [row[field] for row in rows], marker="o")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def save_figure(figure, path, dpi=80):
    """Writes a figure as PNG atomically, closes it, and returns the PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(figure)
    png = buffer.getvalue()
    data.atomic_write(path, lambda f: f.write(png))
    return png


# --- Run directory ---------------------------------------------------------------------------
def prepare_run_dir(args):
    """Creates the run directory, or checks that the run in it may be resumed with these settings."""
    config_path = os.path.join(args.out, "config.json")
    if args.fresh and os.path.exists(args.out):
        aside = f"{args.out}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        os.rename(args.out, aside)
        print(f"--fresh: moved the previous run to {aside}")
    try:
        os.makedirs(os.path.join(args.out, "samples"), exist_ok=True)
        os.makedirs(os.path.join(args.out, "checkpoints"), exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=args.out, prefix=".write-test-")
        probe.close()
    except OSError as error:
        raise RunError(f"run directory {args.out} is not writable ({error.strerror})") from None
    if not os.path.exists(config_path):
        return
    try:
        with open(config_path) as handle:
            saved = json.load(handle)
    except (OSError, ValueError) as error:
        raise RunError(f"{config_path}: unreadable ({error}); use --fresh to start over") from None
    saved_splits = tuple(saved.get("splits", ()))
    current = dict(vars(args), splits=args.splits)
    changed = [key for key in RESUME_KEYS
               if (saved_splits if key == "splits" else saved.get(key)) != current[key]]
    if changed:
        details = ", ".join(f"{key} {saved.get(key)!r} -> {current[key]!r}" for key in changed)
        raise RunError(f"{args.out} holds a run with other settings ({details}); resuming it "
                       f"would mix two runs. Use the old settings, another --out, or --fresh.")


def describe_device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                 for gpu in gpus]
        return f"GPU ({', '.join(names)})"
    return f"CPU ({os.cpu_count()} cores; TensorFlow sees no GPU)"


def log_op_placement(run_metadata):
    """Prints how many ops of a traced step ran on each device."""
    counts = {}
    for device in run_metadata.step_stats.dev_stats:
        counts[device.device] = counts.get(device.device, 0) + len(device.node_stats)
    placed = ", ".join(f"{name}: {count} ops" for name, count in sorted(counts.items()))
    print(f"first step ran on: {placed}", flush=True)


def checkpoint_mismatch(checkpoint, variables):
    """Why `checkpoint` cannot restore `variables` (a missing name or another shape), or None.

    Checked before restoring because a resource variable accepts a value of any shape: a
    mismatch would otherwise surface later as a failing matmul deep inside TensorFlow.
    """
    import tensorflow as tf

    try:
        shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as error:
        return f"unreadable: {str(error).splitlines()[0]}"
    for variable in variables:
        name = variable.op.name
        if name not in shapes:
            return f"it has no variable {name}"
        if list(shapes[name]) != variable.shape.as_list():
            return f"{name} has shape {shapes[name]}, this model {variable.shape.as_list()}"
    return None


# --- Training --------------------------------------------------------------------------------
class Interrupt:
    """Turns SIGINT / SIGTERM into a flag the loop checks between steps, so the step in flight
    finishes and a checkpoint is written before the process exits."""

    def __init__(self):
        self.signal_name = None

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self.handle)
                         for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        if self.signal_name is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def batch_z(seed, step, batch_size, z_dim):
    """The z of one step, a function of (seed, step) alone, so a resumed run draws the same z."""
    return np.random.default_rng([seed, 2, step]).uniform(-1.0, 1.0, (batch_size, z_dim)) \
        .astype(np.float32)


def generate_images(sess, samples, z, num, z_dim, rng, batch_size=500):
    """Runs the sampler for `num` images of z ~ U(-1, 1) from rng, batch_size at a time (bounded
    memory for any num); returns float32 (num, 32, 32, C) in [-1, 1]."""
    parts = []
    for start in range(0, num, batch_size):
        noise = rng.uniform(-1.0, 1.0, (min(batch_size, num - start), z_dim)).astype(np.float32)
        parts.append(sess.run(samples, {z: noise}))
    return np.concatenate(parts)


def step_feed(model, images, indices, seed, step):
    """The feed of one training step: a uint8 batch (scaled in the graph) and its z.

    uint8 is a quarter of float32's bytes to copy; gathering and drawing z take well under a
    millisecond, against hundreds for the step (bench.py feeds through this same function).
    """
    return {model.real_images: images[indices],
            model.z: batch_z(seed, step, len(indices), model.z_dim)}


def train(args):
    import tensorflow as tf
    from tqdm import tqdm

    import dcgan
    tf1 = tf.compat.v1
    tf.get_logger().setLevel("ERROR")  # TF1 APIs' deprecation notices are not the user's business

    prepare_run_dir(args)
    try:
        dataset = data.load_dataset(args.dataset, args.data_dir, args.splits,
                                    verify=not args.skip_checksum, download=not args.no_download)
    except data.DatasetError as error:
        raise RunError(str(error)) from None
    output_dim = dataset.images.shape[-1]
    try:
        batches = data.BatchIterator(len(dataset.images), args.batch_size, args.seed)
    except ValueError as error:
        raise RunError(f"{args.dataset}: {error}") from None
    if args.precision == "bfloat16":
        supported, reason = dcgan.bfloat16_support()
        if not supported:
            raise RunError(f"--precision bfloat16: {reason}")
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    evaluator = None
    if args.eval_every:
        import evaluate
        try:
            evaluator, _ = evaluate.load_classifier(args.dataset, args.data_dir,
                                                    download=not args.no_download,
                                                    verify=not args.skip_checksum)
        except data.DatasetError as error:
            raise RunError(f"--eval-every needs the classifier's data: {error}") from None
        eval_real = evaluate.real_images(dataset, args.eval_num, args.seed)

    settings = dict(vars(args), splits=list(args.splits), output_dim=int(output_dim),
                    num_images=len(dataset.images), tensorflow=tf.__version__)
    print("settings: " + json.dumps({k: settings[k] for k in sorted(settings)}))
    print(f"device: {describe_device()}; precision {args.precision}; seed {args.seed}")

    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(args.seed)
        model = dcgan.build_model(output_dim, args.z_dim, args.g_steps, args.lr, args.beta1,
                                  args.alpha, args.smooth, args.precision)
        sample_z = np.random.default_rng([args.seed, 1]).uniform(
            -1.0, 1.0, (args.sample_grid ** 2, args.z_dim)).astype(np.float32)
        with tf1.variable_scope("run_state"):
            fixed_z = tf1.get_variable("fixed_z", initializer=sample_z, trainable=False)
            epoch_var = tf1.get_variable("epoch", [], tf.int64, tf1.zeros_initializer(),
                                         trainable=False)
            batch_var = tf1.get_variable("batch_index", [], tf.int64, tf1.zeros_initializer(),
                                         trainable=False)
        position = tf1.placeholder(tf.int64, [2])
        save_position = tf.group(epoch_var.assign(position[0]), batch_var.assign(position[1]))
        saver = tf1.train.Saver(max_to_keep=CHECKPOINTS_KEPT, save_relative_paths=True)
        init = tf1.global_variables_initializer()
    graph.finalize()  # nothing may add ops in the loop (a classic TF1 slow-down)

    config = dcgan.session_config(args.intra_op_threads, args.inter_op_threads)
    checkpoint_dir = os.path.join(args.out, "checkpoints")
    metrics_path = os.path.join(args.out, "metrics.csv")
    with tf1.Session(graph=graph, config=config) as sess, contextlib.ExitStack() as closing:
        if evaluator:
            closing.callback(evaluator.close)
        latest = tf1.train.latest_checkpoint(checkpoint_dir)
        if latest:
            problem = checkpoint_mismatch(latest, tf1.global_variables())
            if problem:
                raise RunError(f"{latest}: not a checkpoint of this model ({problem}); use "
                               f"another --out or --fresh")
            saver.restore(sess, latest)
            step, epoch, batch_index = (int(v) for v in sess.run([model.global_step, epoch_var,
                                                                  batch_var]))
            batches.restore({"seed": args.seed, "epoch": epoch, "batch_index": batch_index})
            print(f"resumed {latest}: step {step}, epoch {epoch + 1}, batch {batch_index}")
        else:
            sess.run(init)
            step = 0
        sample_z = sess.run(fixed_z)
        # Keep the records of the restored step and before; later ones belong to work the
        # checkpoint does not hold (a kill after the last save) and will be trained again.
        metrics = [row for row in read_metrics(metrics_path) if row["step"] <= step]
        write_metrics(metrics_path, metrics)
        write_json(os.path.join(args.out, "config.json"), settings)
        writer = tf1.summary.FileWriter(args.out)
        closing.callback(writer.close)
        if latest:  # TensorBoard drops events after this step left by the interrupted process
            writer.add_session_log(tf1.SessionLog(status=tf1.SessionLog.START), step)
        metrics_file = closing.enter_context(open(metrics_path, "a", newline=""))
        metrics_writer = csv.DictWriter(metrics_file, METRIC_FIELDS, extrasaction="ignore",
                                        lineterminator="\n")

        def record(row, tags):
            """Appends a row to metrics.csv (flushed) and its `tags` fields to TensorBoard."""
            metrics.append(row)
            metrics_writer.writerow(row)
            metrics_file.flush()
            writer.add_summary(tf1.Summary(value=[
                tf1.Summary.Value(tag=f"{tag}/{field}", simple_value=row[field])
                for tag, fields in tags for field in fields]), step)

        def save_checkpoint():
            sess.run(save_position, {position: [batches.epoch, batches.batch_index]})
            saver.save(sess, os.path.join(checkpoint_dir, "model"), global_step=step,
                       write_meta_graph=False)  # generate.py rebuilds the graph from code

        def evaluate_samples(epoch_number):
            generated = generate_images(sess, model.samples, model.z, args.eval_num, args.z_dim,
                                        np.random.default_rng([args.seed, 4, epoch_number]))
            result = evaluate.quality(evaluator, to_uint8(generated), eval_real, args.seed)
            print(f"epoch {epoch_number} quality: {evaluate.format_quality(result)}", flush=True)
            record({"step": step, "epoch": epoch_number, "time": time.time(),
                    **{field: result[field] for field in QUALITY_FIELDS}},
                   [("quality", QUALITY_FIELDS)])
            save_quality_plot(os.path.join(args.out, "quality.png"), metrics)

        def end_of_epoch(epoch_number):
            images = sess.run(model.samples, {model.z: sample_z})
            png = save_grid_png(os.path.join(args.out, "samples", f"epoch_{epoch_number:04d}.png"),
                                images, args.sample_grid, f"epoch {epoch_number}, step {step}")
            width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
            writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(
                tag="samples", image=tf1.Summary.Image(
                    encoded_image_string=png, height=height, width=width, colorspace=4))]), step)
            if evaluator and epoch_number % args.eval_every == 0:
                evaluate_samples(epoch_number)
            if metrics:
                save_loss_plot(os.path.join(args.out, "losses.png"), metrics)
            save_checkpoint()
            writer.flush()

        fetches = [model.train_step, model.d_loss, model.g_loss, model.d_real, model.d_fake]
        run_options = tf1.RunOptions(trace_level=tf1.RunOptions.SOFTWARE_TRACE)
        traced = False
        with Interrupt() as interrupt:
            window_start, window_steps = time.perf_counter(), 0
            while batches.epoch < args.epochs and not (args.max_steps and step >= args.max_steps):
                epoch_number = batches.epoch + 1
                bar = tqdm(total=batches.batches_per_epoch, initial=batches.batch_index,
                           desc=f"epoch {epoch_number}/{args.epochs}", unit="batch",
                           dynamic_ncols=True, mininterval=1.0)
                epoch_start, epoch_steps, step_seconds = time.perf_counter(), 0, 0.0
                for indices in batches.epoch_batches():
                    feed = step_feed(model, dataset.images, indices, args.seed, step)
                    step_start = time.perf_counter()
                    if not traced:  # trace one step to log where its ops ran
                        run_metadata = tf1.RunMetadata()
                        values = sess.run(fetches, feed, run_options, run_metadata)
                        log_op_placement(run_metadata)
                        traced = True
                    else:
                        values = sess.run(fetches, feed)
                    step_seconds += time.perf_counter() - step_start
                    epoch_steps += 1
                    step, d_loss, g_loss, d_real, d_fake = (int(values[0]), *map(float, values[1:]))
                    window_steps += 1
                    bar.update(1)
                    bar.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g_loss:.3f}", refresh=False)
                    if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
                        bar.close()
                        kept = tf1.train.latest_checkpoint(checkpoint_dir)
                        raise RunError(
                            f"step {step}: loss is not finite (D {d_loss}, G {g_loss}); training "
                            f"stopped without saving. The last good checkpoint is "
                            f"{kept or 'none (no epoch finished yet)'}; try a lower --lr.",
                            EXIT_NAN) from None
                    if step % args.log_every == 0:
                        now = time.perf_counter()
                        row = {"step": step, "epoch": epoch_number, "d_loss": d_loss,
                               "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake,
                               "images_per_sec": window_steps * args.batch_size
                               / (now - window_start), "time": time.time()}
                        window_start, window_steps = now, 0
                        record(row, [("loss", ("d_loss", "g_loss")),
                                     ("discriminator", ("d_real", "d_fake"))])
                    if interrupt.signal_name or (args.max_steps and step >= args.max_steps):
                        break
                bar.close()
                batches.finish_epoch_if_done()  # a stop on an epoch's last batch ends the epoch
                if interrupt.signal_name:
                    save_checkpoint()
                    writer.flush()
                    raise RunError(f"{interrupt.signal_name}: saved a checkpoint at step {step}; "
                                   f"run the same command to resume", EXIT_INTERRUPTED)
                end_of_epoch(epoch_number)
                # What train.py adds to the step (feeding, logging, progress bar, the end of the
                # epoch) is the time outside the step's sess.run: the README's end-to-end check.
                now = time.perf_counter()
                print(f"epoch {epoch_number}: {epoch_steps} steps in {now - epoch_start:.1f} s, "
                      f"{epoch_steps * args.batch_size / (now - epoch_start):.1f} images/s, "
                      f"{100 * step_seconds / (now - epoch_start):.1f}% of it in the training "
                      f"step", flush=True)
                window_start, window_steps = now, 0
    print(f"done: {step} steps, {batches.epoch} epochs; run directory {args.out}")


def main(argv=None):
    args = parse_args(argv)
    try:
        train(args)
    except RunError as error:
        prefix = "" if error.exit_code == EXIT_INTERRUPTED else "error: "
        print(f"{prefix}{error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # before the loop (loading, building) or a second Ctrl-C
        print("interrupted; the last checkpoint, if any, is intact", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
