"""Sample quality in numbers: `python evaluate.py --run runs/mnist`.

Scores images generated from a run's checkpoint with a classifier trained on the real labeled
images (quality.py says what each number means), prints them and adds them, by step, to the run's
evaluation.json. A run of --dataset folder is scored with a classifier of the folder's classes (its
sub-folders; machinery/classifiers.py), on the folder loaded again through its cache and
refused if it changed since the run trained on it; a flat folder has no classes to score with.
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
