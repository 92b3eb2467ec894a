"""Trains the DCGAN: `python train.py --dataset svhn`.

Per batch, one D update then --g-steps G updates on the same z, all in one session call (see
dcgan.build_model). After every epoch the run directory (runs.py) gets a checkpoint, a sample grid
from a fixed z and a loss plot; running the same command again resumes where the run stopped.
"""
import collections
import contextlib
import math
import os
import signal
import struct
import sys
import tempfile
import time

import cluster as cluster_lib  # plain Python, like the five below: the flags are parsed
import data  # before TensorFlow loads
import hyperparameters
import image_folder
import options
import quality
import quiet_start

# --- Defaults (the paper's numbers live in hyperparameters.py; these are the run's own) ---------
DEFAULT_EPOCHS = 25
DEFAULT_SEED = 0
DEFAULT_LOG_EVERY = 10
DEFAULT_GRID = 6            # 6x6 sample grid
# Settings a checkpoint is tied to: changing one makes a resumed run meaningless.
RESUME_KEYS = ("dataset", "splits", "images", "channels", "fit", "image_size", "z_dim",
               "batch_size", "seed", "sample_grid", "g_ema")
# For runs saved before the setting existed.
RESUME_DEFAULTS = {"g_ema": 0.0, "image_size": hyperparameters.IMAGE_SIZE, "images": None,
                   "channels": None, "fit": None}
EXIT_NAN, EXIT_INTERRUPTED = 3, 130
# The bounds of this entry point's own flags, each with what it protects (the shared ones:
# options.py).
Z_DIM = options.bounded_int(1, 4096, "the dense layer holds z-dim x 8,192 weights: 4,096 are "
                                     "128 MB")
G_STEPS = options.bounded_int(1, 16, "each G update is one more copy of G and D in the step's "
                                     "graph")
SAMPLE_GRID = options.bounded_int(1, 32, "32 is 1,024 samples in a 2,048-pixel PNG: beyond that "
                                         "a grid is no use on a screen")
EVAL_NUM = options.bounded_int(quality.MIN_IMAGES, quality.MAX_IMAGES, quality.IMAGES_WHY)
EVAL_EVERY = options.bounded_int(0, 10 ** 6, "0 is never; as --epochs, a larger number is a typo")
LEARNING_RATE = options.bounded_float(0.0, 3.4e38, "the rate is a float32 in the graph; a rate "
                                                   "that makes the loss diverge stops the run "
                                                   "with a message", low_open=True)
BETA1 = options.bounded_float(0.0, 1.0, "Adam's momentum: at 1 its average never moves",
                              high_open=True)
ALPHA = options.bounded_float(0.0, 1.0, "a leaky ReLU slope: 0 is a ReLU, 1 no activation")
SMOOTH = options.bounded_float(0.0, 1.0, "real labels are 1 - smooth: at 1 they are fake labels",
                               high_open=True)
DEVICES = options.bounded_int(1, 64, "replicas on one machine; 64 is more GPUs than one machine "
                                     "holds")
WORKER_TIMEOUT = options.bounded_int(10, 86400, "below 10 s a worker's start-up or the chief's "
                                                "checkpoint looks like a failure; a day is "
                                                "longer than any step")
DEFAULT_WORKER_TIMEOUT = 600


def build_parser():
    parser = options.new_parser("Train a DCGAN (TF1 graph mode) on SVHN, MNIST, CIFAR-10 or a "
                                "folder of your own images.")
    group = parser.add_argument_group("data")
    add = group.add_argument
    add("--dataset", default="svhn", choices=(*data.DATASETS, data.FOLDER),
        help="what to train on; folder: the images under --images")
    add("--images", default=None, metavar="FOLDER",
        help="with --dataset folder: the folder of images (JPEG, PNG, BMP, GIF, WebP, TIFF, "
             "found recursively; its sub-folders are the classes when they hold all of them)")
    add("--channels", type=int, choices=(1, 3), default=None,
        help="with --dataset folder: 1 (grayscale) or 3 (RGB); default: 1 when every image is "
             "gray, else 3")
    add("--fit", choices=image_folder.FITS, default=None,
        help="with --dataset folder: crop the centre square, or stretch the whole image into "
             "the square (default: crop)")
    add("--splits", default=None,
        help="comma-separated dataset splits to train on (svhn: train,test,extra; mnist: "
             "train,test); default: train and test")
    add("--data-dir", default="data", help="folder holding one sub-folder of files per dataset")
    add("--no-download", action="store_true",
        help="never touch the network: a missing data file is an error")
    add("--skip-checksum", action="store_true",
        help="do not compare data files with their published MD5 (for custom files)")

    group = parser.add_argument_group("model (the paper's numbers are the defaults)")
    add = group.add_argument
    add("--image-size", type=options.IMAGE_SIZE, default=hyperparameters.IMAGE_SIZE,
        metavar="N",
        help=f"side of the images in pixels, a power of two from "
             f"{hyperparameters.MIN_IMAGE_SIZE} to {hyperparameters.MAX_IMAGE_SIZE}; one rule "
             f"builds both networks (64: the paper's Figure 1 network); the 32x32 datasets are "
             f"resized once as they load")
    add("--z-dim", type=Z_DIM, default=hyperparameters.Z_DIM,
        help="size of the noise vector z ~ U(-1, 1)")
    add("--alpha", type=ALPHA, default=hyperparameters.ALPHA,
        help="leaky ReLU slope of the discriminator")
    add("--g-ema", type=options.DECAY, default=0.0, metavar="DECAY",
        help="also keep an exponential moving average of the generator's weights, updated "
             "after each G update with this decay (0: off; 0.99 suits runs of hundreds of "
             "steps); grids and evaluations then use it")

    group = parser.add_argument_group("training")
    add = group.add_argument
    add("--epochs", type=options.EPOCHS, default=DEFAULT_EPOCHS, help="total epochs of the run")
    add("--max-steps", type=options.STEPS, default=None,
        help="end the run (as an epoch ends) once this many batches have been trained")
    add("--batch-size", type=options.BATCH_SIZE, default=hyperparameters.BATCH_SIZE,
        help="images per batch")
    add("--lr", type=LEARNING_RATE, default=hyperparameters.LEARNING_RATE,
        help="Adam learning rate, both networks")
    add("--beta1", type=BETA1, default=hyperparameters.BETA1,
        help="Adam beta1 (momentum), both networks")
    add("--smooth", type=SMOOTH, default=hyperparameters.SMOOTH,
        help="one-sided label smoothing: real labels are 1 - smooth")
    add("--g-steps", type=G_STEPS, default=hyperparameters.G_STEPS,
        help="generator updates per discriminator update, on the same z")
    add("--seed", type=options.SEED, default=DEFAULT_SEED,
        help="seed of the weights, the data order, every z and the fixed sample z")
    add("--deterministic", action="store_true",
        help="deterministic TensorFlow kernels: the same seed gives the same numbers (slower)")

    group = parser.add_argument_group("output and logging")
    add = group.add_argument
    add("--out", default=None, help="run directory (default: runs/<dataset>)")
    add("--fresh", action="store_true",
        help="start over: move an existing run directory aside to <out>.old-<time> first")
    add("--log-every", type=options.STEPS, default=DEFAULT_LOG_EVERY,
        help="steps between records in metrics.csv and TensorBoard")
    add("--sample-grid", type=SAMPLE_GRID, default=DEFAULT_GRID,
        help="sample grid side, in images")
    add("--raw", action="store_true",
        help="with --g-ema, draw the grids and evaluations from the trained weights instead")
    add("--eval-every", type=EVAL_EVERY, default=0,
        help="every this many epochs, measure sample quality (evaluate.py's classifier score, "
             "Frechet distance, class coverage); 0: never")
    add("--eval-num", type=EVAL_NUM, default=quality.DEFAULT_NUM,
        help="generated images per evaluation, compared with as many real ones")

    group = parser.add_argument_group("performance")
    add = group.add_argument
    add("--precision", default="float32", choices=hyperparameters.PRECISIONS,
        help="compute precision; bfloat16 keeps float32 weights, statistics and losses; it is "
             "faster with AMX or an Ampere+ GPU, and may be slower elsewhere (bench.py "
             "--precision both compares the two here)")
    add("--intra-op-threads", type=options.THREADS, default=0,
        help="threads inside one op (0: TensorFlow's choice, one per core)")
    add("--inter-op-threads", type=options.THREADS, default=0,
        help="ops run at once (0: TensorFlow's choice; with several workers at least 4)")

    group = parser.add_argument_group(
        "several devices (tf.distribute; machines: the TF_CONFIG environment variable)")
    add = group.add_argument
    add("--devices", type=DEVICES, default=1,
        help="data-parallel replicas on this machine: its first N GPUs, or without a GPU N "
             "logical CPU devices; --batch-size is the global batch, split evenly")
    add("--sync-batch-norm", action="store_true",
        help="with several replicas, batch norm uses the statistics of the whole global batch "
             "(so N replicas compute what one device does)")
    add("--worker-timeout", type=WORKER_TIMEOUT, default=DEFAULT_WORKER_TIMEOUT, metavar="SECONDS",
        help="with TF_CONFIG: how long a step waits for the other workers before the run stops")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # every number is checked by its type (the bounds above)
    problem = options.batch_size_problem(args.batch_size, args.image_size)
    if problem:
        parser.error(f"argument --batch-size: {problem}")
    check_replicas(parser, args)
    folder = args.dataset == data.FOLDER
    if folder != (args.images is not None):
        parser.error("--dataset folder needs --images FOLDER" if folder else
                     "--images goes with --dataset folder")
    if not folder and (args.channels is not None or args.fit is not None):
        parser.error("--channels and --fit go with --dataset folder (the named datasets have "
                     "their own channels and are square)")
    if folder and args.splits:
        parser.error("--splits does not apply to --dataset folder: it trains on every image")
    if folder:
        args.images = os.path.normpath(args.images)
        args.splits, args.fit = ("all",), args.fit or image_folder.FITS[0]
    else:
        args.splits = tuple(args.splits.split(",")) if args.splits \
            else data.DEFAULT_SPLITS[args.dataset]
    name = os.path.basename(os.path.abspath(args.images)) if folder else args.dataset
    args.out = os.path.normpath(args.out or os.path.join("runs", name))
    return args


def check_replicas(parser, args):
    """The global batch must split evenly over every replica of every worker, and synchronized
    batch norm needs several replicas."""
    try:
        cluster = cluster_lib.from_environment()
    except cluster_lib.ClusterError as error:
        parser.error(str(error))
    workers = cluster.workers if cluster else 1
    replicas = args.devices * workers
    if args.batch_size % replicas:
        where = f"{args.devices} devices x {workers} workers" if cluster else \
            f"--devices {args.devices}"
        parser.error(f"argument --batch-size: {args.batch_size} does not divide evenly over "
                     f"{replicas} replicas ({where}); try {args.batch_size // replicas * replicas}")
    if args.sync_batch_norm and replicas == 1:
        parser.error("--sync-batch-norm needs several replicas (--devices N or TF_CONFIG)")


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import claims  # noqa: E402
import classifiers  # noqa: E402
import convolutions  # noqa: E402
import dcgan  # noqa: E402
import devices  # noqa: E402
import metrics  # noqa: E402
import pictures  # noqa: E402
import runs  # noqa: E402
import strategies  # noqa: E402
import workers  # noqa: E402

tf1 = tf.compat.v1


# --- Before the session ----------------------------------------------------------------------
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


def load_data(args):
    """The dataset and its batch iterator, or a RunError saying what is wrong with them."""
    try:
        if args.dataset == data.FOLDER:
            dataset = data.load_folder(args.images, args.data_dir, args.image_size,
                                       args.channels, args.fit)
        else:
            dataset = data.load_dataset(args.dataset, args.data_dir, args.splits,
                                        verify=not args.skip_checksum,
                                        download=not args.no_download, image_size=args.image_size)
    except data.DatasetError as error:
        raise runs.RunError(str(error)) from None
    try:
        batches = data.BatchIterator(len(dataset.images), args.batch_size, args.seed)
    except ValueError as error:
        raise runs.RunError(f"{args.dataset}: {error}") from None
    return dataset, batches


def check_same_pictures(run, dataset):
    """A folder run resumes only on the pictures it started with: its fingerprint (the files'
    paths, sizes and times, and the decoding settings) must be the one the run recorded."""
    saved = run.saved_config()
    if dataset.fingerprint is None or not saved or not saved.get("data_fingerprint"):
        return
    if saved["data_fingerprint"] != dataset.fingerprint:
        changed = f": {dataset.changes}" if dataset.changes else ""
        raise runs.RunError(
            f"{saved['images']} has changed since this run started ({saved['num_images']:,} "
            f"images then, {len(dataset.images):,} now{changed}); resuming would train on other "
            f"pictures. Put the folder back as it was, or start over with --fresh.")


Evaluation = collections.namedtuple("Evaluation", "classifier real_images")


def load_evaluation(args, dataset):
    """With --eval-every, the cached classifier (a folder's: of its classes) and the real images
    to compare with; else None."""
    if not args.eval_every:
        return None
    if len(dataset.images) < quality.MIN_IMAGES:
        raise runs.RunError(f"--eval-every needs at least {quality.MIN_IMAGES} real images "
                            f"({quality.MIN_IMAGES_WHY}); {args.dataset} has "
                            f"{len(dataset.images)}")
    try:
        if args.dataset == data.FOLDER:  # known only now that the folder is listed
            classifiers.require_labeled(dataset, args.images, "--eval-every")
        classifier, _ = classifiers.dataset_classifier(dataset, args.images, args.data_dir,
                                                       download=not args.no_download,
                                                       verify=not args.skip_checksum)
    except data.DatasetError as error:
        raise runs.RunError(str(error) if args.dataset == data.FOLDER else  # it says so
                            f"--eval-every needs the classifier's data: {error}") from None
    return Evaluation(classifier, quality.real_images(dataset, args.eval_num, args.seed))


RunGraph = collections.namedtuple(
    "RunGraph", "graph model fixed_z epoch batch_index position save_position saver checkpointed "
                "init chief_values agreement agreed stop_request stop_votes")
# What every worker must agree on: what the step computes and how long it trains (a worker that
# stops early leaves the others waiting), and the data. A folder's path may differ from machine
# to machine, and so may its files' times (a copy): workers.agreed_numbers compares pixels.
AGREED_SETTINGS = (*(key for key in RESUME_KEYS if key not in ("images",)), "g_steps", "lr",
                   "beta1", "alpha", "smooth", "precision", "sync_batch_norm", "devices",
                   "epochs", "max_steps")
AGREED_FLAGS = ", ".join("--" + key.replace("_", "-") for key in AGREED_SETTINGS)
def build_graph(args, output_dim, engine, agreed=(0, 0)):
    """The training graph plus what a checkpoint holds besides the networks: the fixed sample z
    and the position in the data (epoch, next batch). With several workers, also the op that
    checks that all were started with the same settings and data (built first), the one that
    gives every worker the chief's values, and the stop vote run with each step
    (strategies.agreement_op, chief_values_op, vote_op)."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(args.seed)
        several = engine.workers > 1
        agreement = strategies.agreement_op(engine.strategy, agreed) if several else None
        model = dcgan.build_model(
            output_dim, z_dim=args.z_dim, g_steps=args.g_steps, learning_rate=args.lr,
            beta1=args.beta1, alpha=args.alpha, smooth=args.smooth, precision=args.precision,
            g_ema_decay=args.g_ema, image_size=args.image_size, strategy=engine.strategy,
            sync_batch_norm=args.sync_batch_norm)
        # (the convolutions: those for the device TensorFlow sees)
        initial_fixed_z = dcgan.draw_z(np.random.default_rng([args.seed, 1]),
                                       args.sample_grid ** 2, args.z_dim)
        with tf1.variable_scope("run_state"):
            fixed_z = tf1.get_variable("fixed_z", initializer=initial_fixed_z, trainable=False)
            epoch = tf1.get_variable("epoch", [], tf.int64, tf1.zeros_initializer(),
                                     trainable=False)
            batch_index = tf1.get_variable("batch_index", [], tf.int64,
                                           tf1.zeros_initializer(), trainable=False)
        position = tf1.placeholder(tf.int64, [2])
        save_position = tf.group(epoch.assign(position[0]), batch_index.assign(position[1]))
        checkpointed = dcgan.checkpointed_variables()
        saver = tf1.train.Saver(checkpointed, max_to_keep=None)  # RunDir keeps the newest few
        init = tf1.global_variables_initializer()
        chief_values = strategies.chief_values_op(engine.strategy, checkpointed) \
            if several else None
        stop_request, stop_votes = strategies.vote_op(engine.strategy) if several else (None,
                                                                                         None)
    graph.finalize()  # nothing may add ops in the loop (a classic TF1 slow-down)
    return RunGraph(graph, model, fixed_z, epoch, batch_index, position, save_position, saver,
                    checkpointed, init, chief_values, agreement, agreed, stop_request,
                    stop_votes)


def restore_or_initialise(sess, run_graph, run, batches, seed, engine, run_options=None):
    """Restores the newest checkpoint that restores (and the data position), or initialises
    when the run has none; returns (step, checkpoint restored or None). With several workers
    only the chief restores, and every worker then takes the chief's values."""
    if run_graph.agreement is not None:
        workers.check_agreement(sess, run_graph.agreement, run_graph.agreed, engine, AGREED_FLAGS,
                                run_options)
    # What a checkpoint does not hold is initialised all the same (several workers: together).
    sess.run(run_graph.init, options=run_options)
    restored = run.restore(sess, run_graph.saver, run_graph.checkpointed,
                           set_aside_damaged=True) if engine.chief else None
    if not restored and run_graph.model.start_average is not None:
        sess.run(run_graph.model.start_average)
    if run_graph.chief_values is not None:
        sess.run(run_graph.chief_values, options=run_options)
    elif not restored:
        return 0, None
    step, epoch, batch_index = (int(value) for value in sess.run(
        [run_graph.model.global_step, run_graph.epoch, run_graph.batch_index]))
    batches.restore({"seed": seed, "epoch": epoch, "batch_index": batch_index})
    if restored:
        print(f"resumed {restored}: step {step}, epoch {epoch + 1}, batch {batch_index}")
    elif step:
        print(f"took the chief's checkpoint: step {step}, epoch {epoch + 1}, batch {batch_index}")
    return step, restored


# --- The loop --------------------------------------------------------------------------------
def optional_work(what, function, *args):
    """Runs work the training does not depend on; a failure becomes one warning line."""
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 -- whatever failed, training must go on
        print(f"warning: {what} failed ({type(error).__name__}: {runs.cause(error)}); training "
              f"goes on", file=sys.stderr, flush=True)


class Trainer:
    """The training loop's state (session, step, data position, logs) and its steps."""

    def __init__(self, args, sess, run_graph, run, log, dataset, batches, evaluation, step,
                 engine, run_options=None, watchdog=None):
        self.args, self.sess, self.run_graph, self.run, self.log = args, sess, run_graph, run, log
        self.engine, self.run_options = engine, run_options
        self.watching = watchdog.watching if watchdog else contextlib.nullcontext
        self.model = run_graph.model
        self.dataset, self.batches, self.evaluation, self.step = dataset, batches, evaluation, step
        self.fixed_z = sess.run(run_graph.fixed_z)
        self.sampler = self.model.averaged if self.model.averaged and not args.raw \
            else self.model.sampler
        self.sampler_name = "averaged G" if self.sampler is self.model.averaged else None
        self.gif_frames = {}  # the progress GIF's frames, converted once
        self.stop_votes = 0.0  # with several workers: how many asked to stop at the last step
        self.traced = False
        self.window_start, self.window_steps = time.perf_counter(), 0

    def run_step(self, indices, stop_wanted=False):
        """One training step; returns ((d_loss, g_loss, d_real, d_fake), seconds in sess.run).
        The first step is traced to log where its ops ran. With several workers the step also
        counts the workers that want to stop (`stop_wanted`: a signal here): self.stop_votes."""
        fetches = [self.model.train_step, self.model.d_loss, self.model.g_loss,
                   self.model.d_real, self.model.d_fake]
        feed = dcgan.step_feed(self.model, self.dataset.images, indices, self.args.seed,
                               self.step, self.engine.worker_index, self.engine.workers)
        if self.run_graph.stop_votes is not None:
            fetches.append(self.run_graph.stop_votes)
            feed[self.run_graph.stop_request] = 1.0 if stop_wanted else 0.0
        start = time.perf_counter()
        if self.traced:
            with self.watching():
                values = self.sess.run(fetches, feed, self.run_options)
        else:
            run_metadata, traced = tf1.RunMetadata(), tf1.RunOptions()
            if self.run_options:
                traced.CopyFrom(self.run_options)
            # A session of a tf.distribute server returns step statistics only for a full trace.
            traced.trace_level = tf1.RunOptions.FULL_TRACE if self.engine.server else \
                tf1.RunOptions.SOFTWARE_TRACE
            with self.watching():
                values = self.sess.run(fetches, feed, traced, run_metadata)
            print(f"first step ran on: {devices.placement_summary(run_metadata)}; convolutions: "
                  f"{convolutions.describe(self.model.implementation)}", flush=True)
            self.traced = True
        seconds = time.perf_counter() - start
        if self.run_graph.stop_votes is not None:
            self.stop_votes = float(values.pop())
        self.step = int(values[0])
        return tuple(float(value) for value in values[1:]), seconds

    def stopping(self, interrupt):
        """Whether to stop after this step for a signal: here, or with several workers, once any
        worker asked (all learn it in the same step, so all stop after it together)."""
        if self.run_graph.stop_votes is None:
            return interrupt.signal_name is not None
        return self.stop_votes > 0

    def check_finite(self, d_loss, g_loss):
        if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
            kept = self.run.newest_checkpoint() if self.engine.chief else "the chief's"
            raise runs.RunError(
                f"step {self.step}: loss is not finite (D {d_loss}, G {g_loss}); training stopped "
                f"without saving. The last good checkpoint is "
                f"{kept or 'none (no epoch finished yet)'}; try a lower --lr.", EXIT_NAN)

    def record_losses(self, epoch_number, d_loss, g_loss, d_real, d_fake):
        now = time.perf_counter()
        images_per_sec = self.window_steps * self.args.batch_size / (now - self.window_start)
        self.window_start, self.window_steps = now, 0
        self.log.record({"step": self.step, "epoch": epoch_number, "d_loss": d_loss,
                         "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake,
                         "images_per_sec": images_per_sec, "time": time.time()},
                        [("loss", ("d_loss", "g_loss")), ("discriminator", ("d_real", "d_fake"))])

    def should_stop(self):
        return self.args.max_steps is not None and self.step >= self.args.max_steps

    def train_epoch(self, interrupt):
        """Trains the rest of the current epoch, or until --max-steps or a signal; returns the
        steps trained and the seconds spent inside the training step."""
        from tqdm import tqdm  # imported here: only the loop draws progress bars

        epoch_number = self.batches.epoch + 1
        bar = tqdm(total=self.batches.batches_per_epoch, initial=self.batches.batch_index,
                   desc=f"epoch {epoch_number}/{self.args.epochs}", unit="batch",
                   dynamic_ncols=True, mininterval=1.0)
        steps, step_seconds = 0, 0.0
        with bar:
            for indices in self.batches.epoch_batches():
                (d_loss, g_loss, d_real, d_fake), seconds = self.run_step(
                    indices, interrupt.signal_name is not None)
                steps += 1
                step_seconds += seconds
                self.window_steps += 1
                bar.update(1)
                bar.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g_loss:.3f}", refresh=False)
                self.check_finite(d_loss, g_loss)
                if self.step % self.args.log_every == 0:
                    self.record_losses(epoch_number, d_loss, g_loss, d_real, d_fake)
                if self.stopping(interrupt) or self.should_stop():
                    break
        self.batches.finish_epoch_if_done()  # a stop on an epoch's last batch ends the epoch
        return steps, step_seconds

    def save_checkpoint(self):
        self.sess.run(self.run_graph.save_position,
                      {self.run_graph.position: [self.batches.epoch, self.batches.batch_index]})
        self.run.save_checkpoint(self.sess, self.run_graph.saver, self.step)

    def evaluate(self, epoch_number):
        """Measures sample quality (--eval-every) into metrics.csv, TensorBoard and quality.png."""
        generated = dcgan.generate_images(self.sess, self.sampler, self.args.eval_num,
                                          np.random.default_rng([self.args.seed, 4, epoch_number]))
        result = quality.quality(self.evaluation.classifier, data.to_uint8(generated),
                                 self.evaluation.real_images, self.args.seed)
        which = f" ({self.sampler_name})" if self.sampler_name else ""
        print(f"epoch {epoch_number} quality{which}: {quality.format_quality(result)}",
              flush=True)
        self.log.record({"step": self.step, "epoch": epoch_number, "time": time.time(),
                         **{field: result[field] for field in metrics.QUALITY_FIELDS}},
                        [("quality", metrics.QUALITY_FIELDS)])
        pictures.save_quality_plot(self.run.quality_plot_path, self.log.rows,
                                   result["num_classes"])

    def save_samples(self, epoch_number):
        """The sample grid of the fixed z, as a file and in TensorBoard."""
        images = dcgan.run_sampler(self.sess, self.sampler, self.fixed_z)
        which = f", {self.sampler_name}" if self.sampler_name else ""
        png = pictures.save_grid_png(self.run.sample_grid_path(epoch_number), images,
                                     self.args.sample_grid,
                                     f"epoch {epoch_number}, step {self.step}{which}")
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
        self.log.add_png("samples", png, width, height, self.step)

    def end_epoch(self, epoch_number):
        """Training first: the checkpoint, then the optional pictures and evaluation, whose
        failures are reported and cost nothing saved. The chief alone writes them (the other
        workers hold the same weights)."""
        if not self.engine.chief:
            self.log.flush()
            return
        self.save_checkpoint()
        # The sampler's weights are those of this epoch's end: set its statistics once for them.
        optional_work("the averaged generator's statistics", dcgan.prepare_sampler, self.sess,
                      self.sampler, self.args.seed)
        optional_work("the sample grid", self.save_samples, epoch_number)
        optional_work("the progress GIF", pictures.save_progress_gif, self.run.progress_gif_path,
                      self.run.sample_grid_paths(epoch_number), 0.5, self.gif_frames)
        if self.evaluation and epoch_number % self.args.eval_every == 0:
            optional_work("the evaluation", self.evaluate, epoch_number)
        if self.log.rows:
            optional_work("the loss plot", pictures.save_loss_plot, self.run.loss_plot_path,
                          self.log.rows)
        self.log.flush()

    def train(self):
        """Epochs until --epochs or --max-steps; a signal saves a checkpoint and ends the run."""
        with Interrupt() as interrupt:
            while self.batches.epoch < self.args.epochs and not self.should_stop():
                epoch_number = self.batches.epoch + 1
                epoch_start = time.perf_counter()
                steps, step_seconds = self.train_epoch(interrupt)
                if self.stopping(interrupt):
                    why = interrupt.signal_name or "another worker's signal"
                    if not self.engine.chief:
                        raise runs.RunError(f"{why}: every worker stopped at step {self.step}, "
                                            f"and the chief saved a checkpoint; start every "
                                            f"worker again with the same command to resume",
                                            EXIT_INTERRUPTED)
                    self.save_checkpoint()
                    self.log.flush()
                    others = ", and so did every worker" if self.engine.workers > 1 else ""
                    raise runs.RunError(f"{why}: saved a checkpoint at step {self.step}{others}; "
                                        f"run the same command to resume", EXIT_INTERRUPTED)
                self.end_epoch(epoch_number)
                self.report_epoch(epoch_number, epoch_start, steps, step_seconds)

    def report_epoch(self, epoch_number, epoch_start, steps, step_seconds):
        """The epoch's line. The time outside the step's sess.run is what train.py adds to the
        step bench.py times: the README's end-to-end check."""
        now = time.perf_counter()
        seconds = now - epoch_start
        print(f"epoch {epoch_number}: {options.plural(steps, 'step')} in {seconds:.1f} s, "
              f"{steps * self.args.batch_size / seconds:.1f} images/s, "
              f"{100 * step_seconds / seconds:.1f}% of it in the training step", flush=True)
        self.window_start, self.window_steps = now, 0


def train(args):
    tf.get_logger().setLevel("ERROR")  # TF1 APIs' deprecation notices are not the user's business
    cluster = cluster_lib.from_environment()  # checked when the flags were parsed
    try:
        engine = strategies.make_engine(args.devices, cluster)
    except strategies.EngineError as error:
        raise runs.RunError(str(error)) from None
    if engine.chief:
        run = runs.RunDir(args.out)
        with claims.open_for_training(run, args.fresh) as claim:  # one writer per run directory
            run.check_resumable(dict(vars(args), splits=list(args.splits)), RESUME_KEYS,
                                RESUME_DEFAULTS)
            train_in(run, args, claim, engine, cluster)
        return
    # The other workers keep nothing: their run directory is a scratch folder, removed at exit.
    with tempfile.TemporaryDirectory(prefix=f"dcgan-worker{engine.worker_index}-") as scratch:
        run = runs.RunDir(scratch)
        with claims.open_for_training(run) as claim:
            train_in(run, args, claim, engine, cluster)


def train_in(run, args, claim, engine, cluster):
    """Trains in a run directory this process holds the claim (claims.TrainingClaim) of."""
    dataset, batches = load_data(args)
    if engine.chief:
        check_same_pictures(run, dataset)
    if args.precision == "bfloat16":
        warning = devices.bfloat16_warning(devices.bfloat16_support())
        if warning:
            print(warning, file=sys.stderr, flush=True)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    evaluation = load_evaluation(args, dataset) if engine.chief else None
    output_dim = int(dataset.images.shape[-1])
    settings = dict(vars(args), splits=list(args.splits), output_dim=output_dim,
                    num_images=len(dataset.images), tensorflow=tf.__version__,
                    data_fingerprint=dataset.fingerprint, classes=dataset.classes,
                    replicas=engine.replicas, workers=engine.workers)
    resized = "" if args.image_size == data.IMAGE_SIZE or args.dataset == data.FOLDER else \
        f", resized from {data.IMAGE_SIZE}x{data.IMAGE_SIZE} (Lanczos)"  # (a folder: decoded so)
    derived = {"the data": f"{options.plural(len(dataset.images), 'image')} of "
                           f"{args.image_size}x{args.image_size}x{output_dim}{resized}",
               "tensorflow": tf.__version__}
    if engine.strategy is not None:
        derived["replicas"] = f"{engine.description}; " \
                              f"{args.batch_size // engine.replicas} images each per step"
    print("\n".join(["settings (config.json keeps them all):",
                     *options.settings_lines(build_parser(), args, derived)]))
    print(f"device: {devices.describe_device()}; precision {args.precision}; seed {args.seed}")
    agreed = dict({key: getattr(args, key) for key in AGREED_SETTINGS}, splits=list(args.splits))
    run_graph = build_graph(args, output_dim, engine, workers.agreed_numbers(agreed,
                                                                              dataset.images))
    config = dcgan.session_config(args.intra_op_threads,
                                  workers.inter_op_threads(engine, args.inter_op_threads),
                                  engine.cpu_devices)
    try:
        engine, config = strategies.start_server(engine, cluster, config)
    except strategies.EngineError as error:
        raise runs.RunError(str(error)) from None
    run_options = tf1.RunOptions(timeout_in_ms=args.worker_timeout * 1000) \
        if engine.workers > 1 else None
    progress = workers.Progress()
    watchdog = workers.Watchdog(engine, run, args.worker_timeout, progress)
    with workers.failures(engine, run, args.worker_timeout, progress), \
            tf1.Session(engine.target, graph=run_graph.graph, config=config) as sess, \
            contextlib.ExitStack() as closing:
        if evaluation:
            closing.callback(evaluation.classifier.close)
        if engine.workers > 1:
            print(f"waiting for the other workers (TF_CONFIG lists {engine.workers}; "
                  f"--worker-timeout {args.worker_timeout} s)", flush=True)
        with watchdog.watching():
            step, restored = restore_or_initialise(sess, run_graph, run, batches, args.seed,
                                                   engine, run_options)
        progress.started = True
        claim.started()  # the run's own files follow: a failure from here on is not undone
        log = metrics.MetricsLog(run, step, resumed=restored is not None)
        closing.callback(log.close)
        run.write_config(settings)
        trainer = Trainer(args, sess, run_graph, run, log, dataset, batches, evaluation, step,
                          engine, run_options, watchdog)
        trainer.train()
    where = args.out if engine.chief else "kept by the chief"
    print(f"done: {options.plural(trainer.step, 'step')}, "
          f"{options.plural(batches.epoch, 'epoch')}; run directory {where}")


def main(argv=None, args=None):
    args = args or parse_args(argv)
    devices.warn_if_gpu_unseen()
    try:
        train(args)
    except runs.RunError as error:
        prefix = "" if error.exit_code == EXIT_INTERRUPTED else "error: "
        print(f"{prefix}{error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # before the loop (loading, building) or a second Ctrl-C
        print("interrupted; the last checkpoint, if any, is intact", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    EXIT_CODE = main(args=ARGS)
    if cluster_lib.from_environment():
        # Everything is saved and closed; the gRPC server's teardown would only add log lines
        # after the last one (and can wait on workers that are gone).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)
    sys.exit(EXIT_CODE)
