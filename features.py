"""The discriminator as a feature extractor, with few labels: `python features.py --run runs/svhn`.

The DCGAN paper's section 5: every convolutional layer of the trained discriminator (inference
mode), max-pooled to 4x4, flattened and concatenated (16 x (64 + 128 + 256) = 7,168 features at
32x32; 16 x (64 + 128 + 256 + 512) = 15,360 at 64x64; the images at the run's --image-size),
then a regularized linear L2-SVM (scikit-learn's LinearSVC, squared hinge) trained on few labeled
images, its C chosen on a validation split, features standardized on the labeled set. The same
SVM on the features of an untrained (randomly initialized) discriminator and on raw pixels sits
in the same table: the claim that the GAN learned features holds only where it beats both.

  svhn          1,000 labels (100 per class) from `train`, 10,000 validation images from the rest
                of `train`, error on `test` (the paper: 22.48% with 1,000 labels)
  mnist         100 labels from `train`, 10,000 validation images from the rest, error on `test`
  mnist-sample  the 1,000 held-out digits of the classifier split (classifiers.py) as test; 100
                labels and the validation images (the rest) from the other 4,000
  cifar10       4,000 labels from `train`, 5,000 validation images from the rest, error on `test`
  folder        a labeled folder (sub-folders, one per class, K >= 2): the held-out fifth of each
                class of its classifier's split (classifiers.folder_split) as test, at most
                10,000 of it; 10 labels a class (fewer when a class has fewer, leaving some to
                validate on) and 10,000 validation images (all the rest, when fewer) from the
                other four fifths. The folder is loaded again through its cache and refused if
                it changed since the run trained on it.

Mean and spread over --draws seeded draws of the labels; saved as <run>/features.json.
"""
import sys

from machinery import options, quiet_start

# --labels when parsed: the dataset (and so its pool and its classes) is known only from the run's
# settings.
LABELS = options.bounded_int(2, 60_000, "one a class at least, and a labeled set has two classes "
                                        "or more; no labeled pool holds more (MNIST's train "
                                        "split: 60,000)")
DRAWS = options.bounded_int(1, 100, "each draw fits six SVMs a feature set")


def build_parser():
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_run_group(parser)
    group = parser.add_argument_group("the linear SVM")
    group.add_argument("--labels", type=LABELS, default=None,
                       help="labeled images, the same number per class (default: 1,000 for "
                            "svhn, 100 for the MNIST variants, 4,000 for cifar10, 10 a class "
                            "for a folder)")
    group.add_argument("--draws", type=DRAWS, default=5, help="seeded draws of the labels")
    group.add_argument("--seed", type=options.SEED, default=0, help="seed of the draws")
    return parser


def parse_args(argv=None):
    # Every number is checked by its type; --labels again by check_label_count once the run's
    # dataset is known.
    return build_parser().parse_args(argv)


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

from machinery import feature_svm  # noqa: E402  (TensorFlow: after the flags)


def main(argv=None, args=None):
    return feature_svm.measure_features(args or parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(args=ARGS))
