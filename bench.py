"""Training-step throughput of the real training graph: `python bench.py`.

Builds the graph with training_step.build_model and the session with sessions.session_config,
exactly as train.py does, and feeds it through sessions.step_feed (uint8 batches of a shuffled
in-memory dataset, z drawn per step), so what is timed is the step train.py runs. After --warmup
steps it times --steps steps and prints, per configuration (g-steps x channels x precision, at
--image-size):

  images_per_sec=<float>  (last line when one configuration is asked for; outside checks read it)

and the achieved GFLOP/s. FLOPs per image are counted analytically (flop_count below): only the
multiply-adds of convolutions, transposed convolutions and dense layers, 2 FLOP each, forward and
the backward products each update needs; elementwise work (batch norm, activations, Adam) is left
out. A JSON file (--json) records settings, results and versions.

  python bench.py                                   # every configuration this machine supports
  python bench.py --g-steps 1 --channels 3 --precision float32
  python bench.py --peak                            # also the float32 matmul peak of this machine
  python bench.py --image-size 64 --g-steps 1 --channels 3   # the paper's 64x64 network
  python bench.py --layers --image-size 64          # each CPU rewrite against TensorFlow's op
  python bench.py --devices 2 --g-steps 1 --channels 3   # 2 replicas against 1, alternated
  python bench.py --g-steps 1 --channels 3 --augment translation,cutout,color   # its cost
"""
import os
import sys

from machinery import hyperparameters, options, quiet_start

# Batches are drawn from machinery/benchmark.py's DATASET_IMAGES random images.
BATCH_SIZE = options.bounded_int(1, 2048, "batches are drawn from 2,048 random images")
WARMUP = options.bounded_int(0, 10_000, "untimed steps; 10,000 take hours on a CPU")
TIMED_STEPS = options.bounded_int(1, 10_000, "at least one to time; 10,000 take hours on a CPU")
DEVICES = options.bounded_int(1, 64, "as train.py --devices: replicas on one machine")


def build_parser():
    parser = options.new_parser("Throughput of the DCGAN training step.")
    group = parser.add_argument_group("model")
    add = group.add_argument
    add("--g-steps", type=int, choices=[1, 2], default=None,
        help="generator updates per D update (default: both 1 and 2)")
    add("--channels", type=int, choices=[1, 3], default=None,
        help="image channels (default: both 3 and 1)")
    add("--image-size", type=options.IMAGE_SIZE, default=hyperparameters.IMAGE_SIZE,
        metavar="N", help="as in train.py: the side of the images the networks are built for")
    add("--g-ema", type=options.DECAY, default=0.0, metavar="DECAY",
        help="as in train.py: also update the averaged generator in the step")
    add("--augment", type=options.augment_policies, default=None, metavar="POLICIES",
        help="as in train.py: also time the step with this augmentation, alternating with the "
             "step without it, and report what it costs")
    add("--augment-p", type=options.AUGMENT_P, default=1.0, metavar="P",
        help="with --augment: as in train.py; 1 (every image, every policy) is the most it "
             "costs, adaptive starts at p = 0")
    group = parser.add_argument_group("training")
    group.add_argument("--batch-size", type=BATCH_SIZE, default=hyperparameters.BATCH_SIZE,
                       help="images per step")
    group = parser.add_argument_group("the measurement")
    add = group.add_argument
    add("--warmup", type=WARMUP, default=5, help="untimed steps first")
    add("--steps", type=TIMED_STEPS, default=30, help="timed steps")
    add("--peak", action="store_true",
        help="also measure the float32 matmul peak (4096^3) and report the share")
    add("--layers", action="store_true",
        help="instead of the step, time each layer convolutions.py has a CPU rewrite for, at "
             "--image-size: TensorFlow's op against the rewrite, forward and both gradients, "
             "--steps alternating runs each (medians)")
    add("--json", default=os.path.join("runs", "bench_results.json"),
        help="where to write the results")
    group = parser.add_argument_group("performance")
    add = group.add_argument
    add("--precision", choices=(*hyperparameters.PRECISIONS, "both"), default=None,
        help="compute precision; 'both' times float32 and bfloat16 in alternation and says "
             "which is faster here (default: float32, and bfloat16 too where the hardware has "
             "it)")
    add("--intra-op-threads", type=options.THREADS, default=0, help="as in train.py")
    add("--inter-op-threads", type=options.THREADS, default=0, help="as in train.py")
    group = parser.add_argument_group("several devices")
    add = group.add_argument
    add("--devices", type=DEVICES, default=1,
        help="as in train.py: also time the step on N replicas (MirroredStrategy) at the same "
             "global --batch-size, alternating with one device, and report the scaling "
             "efficiency")
    add("--sync-batch-norm", action="store_true",
        help="as in train.py, for the N-replica step")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)  # every number is checked by its type
    if args.batch_size % args.devices:
        parser.error(f"argument --batch-size: {args.batch_size} does not divide evenly over "
                     f"--devices {args.devices}")
    if args.layers and args.devices > 1:
        parser.error("--layers times single layers on one device: drop --devices")
    if args.sync_batch_norm and args.devices == 1:
        parser.error("--sync-batch-norm needs --devices 2 or more")
    return args


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

from machinery import benchmark  # noqa: E402  (TensorFlow: after the flags)


def main(argv=None, args=None):
    return benchmark.benchmark(args or parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(args=ARGS))
