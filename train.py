"""Trains the DCGAN: `python train.py --dataset svhn`.

Per batch, one D update then --g-steps G updates on the same z, all in one session call
(machinery/training_step.py). After every epoch the run directory gets a checkpoint, a sample grid
from a fixed z and a loss plot; running the same command again resumes where the run stopped.
This file holds the flags; machinery/training.py the run.
"""
import os

import data  # plain Python, like the modules below: the flags are parsed before TensorFlow loads
from machinery import cluster as cluster_lib
from machinery import hyperparameters, image_folder, options, quality, quiet_start

# --- Defaults (the paper's numbers live in hyperparameters.py; these are the run's own) ---------
DEFAULT_EPOCHS = 25
DEFAULT_SEED = 0
DEFAULT_LOG_EVERY = 10
DEFAULT_GRID = 6            # 6x6 sample grid
DEFAULT_AUGMENT_P = hyperparameters.AUGMENT_ADAPTIVE
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
    """train.py's flags, in the groups --help shows."""
    parser = options.new_parser("Train a DCGAN (TF1 graph mode) on SVHN, MNIST, CIFAR-10 or a "
                                "folder of your own images.")
    add_data_flags(parser)
    add_model_flags(parser)
    add_training_flags(parser)
    add_augmentation_flags(parser)
    add_output_flags(parser)
    add_performance_flags(parser)
    add_devices_flags(parser)
    return parser


def add_data_flags(parser):
    """What to train on: a named dataset or a folder, and where its files live."""
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


def add_model_flags(parser):
    """The networks' shape (the paper's numbers are the defaults)."""
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
    add("--conditional", action="store_true",
        help="a conditional DCGAN of the data's classes (a named dataset's, or a folder's "
             "sub-folders): G takes the class with z, D is a projection discriminator; the "
             "grids show a row per class, and generate.py --class picks one")
    add("--g-ema", type=options.DECAY, default=0.0, metavar="DECAY",
        help="also keep an exponential moving average of the generator's weights, updated "
             "after each G update with this decay (0: off; 0.99 suits runs of hundreds of "
             "steps); grids and evaluations then use it")


def add_training_flags(parser):
    """The optimisation: length, batch, Adam, label smoothing, g-steps, seed."""
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


def add_augmentation_flags(parser):
    """Augmentation, for a few hundred to a few thousand pictures."""
    group = parser.add_argument_group(
        "augmentation (not in the paper; for a few hundred to a few thousand pictures)")
    add = group.add_argument
    add("--augment", type=options.augment_policies, default=None, metavar="POLICIES",
        help="a comma list of translation, cutout, color: every image the discriminator sees, "
             "real and generated, in the D and the G updates, goes through them (DiffAugment), "
             "each policy applied to each image with probability --augment-p")
    add("--augment-p", type=options.AUGMENT_P, default=None, metavar="P",
        help=f"with --augment: a probability in [0, 1], or adaptive: steered every "
             f"{hyperparameters.ADA_INTERVAL} steps to keep the mean sign of D's logits on the "
             f"real images at --augment-target, as ADA does (default: {DEFAULT_AUGMENT_P})")
    add("--augment-target", type=options.AUGMENT_TARGET, default=None, metavar="T",
        help=f"with --augment-p adaptive: the mean sign p is steered towards (default: "
             f"{hyperparameters.AUGMENT_TARGET}, ADA's)")
    add("--flip", action="store_true",
        help="mirror real images left to right at random (the real ones only); off by "
             "default: wrong for digits and text, whose mirror images are neither")


def add_output_flags(parser):
    """The run directory, its logs, grids and evaluations."""
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
        help="every this many epochs, measure sample quality (evaluate.py's numbers: "
             "classifier score, Frechet distance, KID, class coverage; a flat folder's in a "
             "fixed feature space) and keep the best checkpoint as checkpoints/best-<step>; "
             "0: never")
    add("--eval-num", type=EVAL_NUM, default=quality.DEFAULT_NUM,
        help="generated images per evaluation, compared with as many real ones")


def add_performance_flags(parser):
    """Precision and threads."""
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


def add_devices_flags(parser):
    """Several devices on this machine, or several machines (tf.distribute)."""
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


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # every number is checked by its type (the bounds above)
    problem = options.batch_size_problem(args.batch_size, args.image_size)
    if problem:
        parser.error(f"argument --batch-size: {problem}")
    check_replicas(parser, args)
    check_augmentation(parser, args)
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


def check_augmentation(parser, args):
    """--augment-p and --augment-target go with --augment (a target with an adaptive p); their
    defaults are filled in where they apply, so config.json holds None where they do not."""
    if args.augment is None:
        if args.augment_p is not None or args.augment_target is not None:
            parser.error("--augment-p and --augment-target go with --augment POLICIES")
        return
    args.augment_p = DEFAULT_AUGMENT_P if args.augment_p is None else args.augment_p
    if args.augment_p != hyperparameters.AUGMENT_ADAPTIVE:
        if args.augment_target is not None:
            parser.error("--augment-target goes with --augment-p adaptive")
    elif args.augment_target is None:
        args.augment_target = hyperparameters.AUGMENT_TARGET


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

from machinery import training  # noqa: E402  (TensorFlow: after the flags)


def main(argv=None, args=None):
    return training.train(args or parse_args(argv), build_parser())


if __name__ == "__main__":
    training.exit_process(main(args=ARGS))
