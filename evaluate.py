"""Sample quality in numbers: `python evaluate.py --run runs/mnist`.

Scores images generated from a run's checkpoint with a classifier trained on the real labeled
images (quality.py says what each number means), prints them and adds them, by step, to the run's
evaluation.json. A run of --dataset folder is scored with a classifier of the folder's classes (its
sub-folders; machinery/classifiers.py), on the folder loaded again through its cache and
refused if it changed since the run trained on it; a flat folder, which has no classes, is
scored in a fixed feature space (machinery/feature_spaces.py). It also counts near copies (samples
nearer a training image than real images are; near_copies.png) and, with --inception-graph, gives
the papers' FID and KID in TTUR's Inception features.
"""
import sys

from machinery import options, quality, quiet_start


def build_parser():
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_run_group(parser, "score the trained weights, not their average")
    group = parser.add_argument_group("the evaluation")
    add = group.add_argument
    add("--num", type=options.bounded_int(quality.MIN_IMAGES, quality.MAX_IMAGES,
                                          quality.IMAGES_WHY), default=quality.DEFAULT_NUM,
        help="generated images, and real images compared with them")
    add("--seed", type=options.SEED, default=0, help="seed of the z and the real draw")
    group = parser.add_argument_group(
        "the papers' FID: TTUR's frozen Inception graph, classify_image_graph_def.pb of "
        "inception-2015-12-05.tgz (pool_3, 2,048 features; slow on a CPU)")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--inception-graph", metavar="FILE", default=None,
                       help="also give FID and KID in that graph's features")
    which.add_argument("--download-inception", action="store_true",
                       help="the same with the graph kept in the run's data folder "
                            "(<data-dir>/inception/), its archive downloaded once if missing")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)  # every number is checked by its type


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

from machinery import evaluation  # noqa: E402  (TensorFlow: after the flags)


def main(argv=None, args=None):
    return evaluation.evaluate(args or parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(args=ARGS))
