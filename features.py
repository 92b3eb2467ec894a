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

Mean and spread over --draws seeded draws of the labels; saved as <run>/features.json.
"""
import os
import sys
import warnings

import options
import quiet_start

# --labels when parsed: the dataset (and so its pool) is known only from the run's settings.
LABELS = options.bounded_int(10, 60_000, "one a class at least; no labeled pool holds more "
                                         "(MNIST's train split: 60,000)")
DRAWS = options.bounded_int(1, 100, "each draw fits six SVMs a feature set")


def build_parser():
    parser = options.new_parser(__doc__.split("\n")[0])
    options.add_run_group(parser)
    group = parser.add_argument_group("the linear SVM")
    group.add_argument("--labels", type=LABELS, default=None,
                       help="labeled images, the same number per class (default: 1,000 for "
                            "svhn, 100 for the MNIST variants)")
    group.add_argument("--draws", type=DRAWS, default=5, help="seeded draws of the labels")
    group.add_argument("--seed", type=options.SEED, default=0, help="seed of the draws")
    return parser


def parse_args(argv=None):
    # Every number is checked by its type; --labels again by check_label_count once the run's
    # dataset is known.
    return build_parser().parse_args(argv)


if __name__ == "__main__":
    ARGS = quiet_start.parse_flags_then_import_tensorflow(parse_args)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import classifiers  # noqa: E402
import data  # noqa: E402
import dcgan  # noqa: E402
import devices  # noqa: E402
import runs  # noqa: E402

tf1 = tf.compat.v1

DEFAULT_LABELS = {"svhn": 1000, "mnist": 100, "mnist-sample": 100, "cifar10": 4000}
VALIDATION_IMAGES = {"svhn": 10000, "mnist": 10000, "mnist-sample": None,  # None: all the rest
                     "cifar10": 5000}
SVM_C = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # the regularization grid searched on validation
FEATURE_BATCH = 500
FEATURE_SETS = ("trained", "untrained", "pixels")


def feature_splits(config):
    """(pool images, pool labels, test images, test labels, transductive): labeled and validation
    images are drawn from the pool; `transductive` when the GAN trained on the test images."""
    name, data_dir = config["dataset"], config.get("data_dir", "data")
    if name == data.FOLDER:
        raise runs.RunError("features.py does not work on runs of --dataset folder yet: it needs "
                            "labeled test images drawn from the folder's classes, not built")
    verify, size = not config.get("skip_checksum", False), runs.image_size(config)
    if name == "mnist-sample":
        pool_x, pool_y, test_x, test_y = classifiers.classifier_split(name, data_dir, False, verify,
                                                                      size)
        return pool_x, pool_y, test_x, test_y, True  # the GAN trains on all 5,000 digits
    train = data.load_dataset(name, data_dir, ("train",), verify, download=False, image_size=size)
    test = data.load_dataset(name, data_dir, ("test",), verify, download=False, image_size=size)
    trained_on = config.get("splits") or data.DEFAULT_SPLITS[name]
    return train.images, train.labels, test.images, test.labels, "test" in trained_on


def extract(run, images, checkpoint, seed, precision):
    """The discriminator features of uint8 images: restored from `checkpoint`, or, when it is
    None, freshly initialized with `seed` (the untrained baseline)."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        pixels = tf1.placeholder(tf.uint8, [None, *images.shape[1:]])
        features, _ = dcgan.discriminator_features(dcgan.scale_pixels(pixels),
                                                   precision=precision)
        variables = tf1.global_variables(dcgan.DISCRIMINATOR_SCOPE + "/")
        saver = tf1.train.Saver(variables)
        init = tf1.global_variables_initializer()
    graph.finalize()
    with tf1.Session(graph=graph, config=dcgan.session_config()) as sess:
        sess.run(init)
        if checkpoint:
            run.restore(sess, saver, variables, checkpoint)
        return np.concatenate([sess.run(features, {pixels: images[start:start + FEATURE_BATCH]})
                               for start in range(0, len(images), FEATURE_BATCH)])


def draw_labeled(labels, per_class, validation_size, rng, num_classes=data.NUM_CLASSES):
    """Indices of `per_class` labeled images of each of the classes 0 .. num_classes - 1 and of
    `validation_size` others (all the others if None)."""
    order = rng.permutation(len(labels))
    labeled = np.concatenate([order[labels[order] == label][:per_class]
                              for label in range(num_classes)])
    rest = order[~np.isin(order, labeled)]
    return labeled, rest[:validation_size]


def most_labels(pool_labels, num_classes=data.NUM_CLASSES):
    """The most labels, the same number a class, that the pool gives with images left to
    validate on."""
    counts = np.bincount(pool_labels, minlength=num_classes)
    return min(int(counts.min()), (len(pool_labels) - 1) // num_classes) * num_classes


def check_label_count(labels, pool_labels, num_classes=data.NUM_CLASSES):
    """Raises RunError unless `labels` (labels // num_classes a class) can be drawn from the pool
    with images left to validate on: more would give fewer labels than asked, or none to choose
    C; fewer than one a class would leave a class out."""
    counts = np.bincount(pool_labels, minlength=num_classes)
    most = most_labels(pool_labels, num_classes)
    if most < num_classes:
        raise runs.RunError(f"the labeled pool of this dataset ({len(pool_labels):,} images, "
                            f"{int(counts.min()):,} of its rarest class) is too small for one "
                            f"label a class of its {num_classes} and some images to validate on")
    if labels < num_classes:
        raise runs.RunError(f"--labels {labels:,} is fewer than one a class: this dataset has "
                            f"{num_classes} classes; use at least {num_classes}")
    if labels > most:
        raise runs.RunError(f"--labels {labels:,} is more than this dataset allows: its labeled "
                            f"pool has {len(pool_labels):,} images, {int(counts.min()):,} of its "
                            f"rarest class, and keeps some to validate on; use at most {most:,}")


def svm_test_error(train, validation, test, c_grid=SVM_C):
    """A LinearSVC (squared hinge: the L2-SVM) on (features, labels) pairs, features
    standardized on `train`, C chosen by the validation error: (test error, C)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    scaler = StandardScaler().fit(train[0])
    train_x, validation_x, test_x = (scaler.transform(x) for x in (train[0], validation[0],
                                                                   test[0]))
    best = None
    for c in c_grid:
        with warnings.catch_warnings():  # the smallest C stop early; the grid still ranks them
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm = LinearSVC(C=c, loss="squared_hinge", dual=True, max_iter=5000,
                            random_state=0).fit(train_x, train[1])
        error = float(np.mean(svm.predict(validation_x) != validation[1]))
        if best is None or error < best[0]:
            best = (error, c, svm)
    return float(np.mean(best[2].predict(test_x) != test[1])), best[1]


def evaluate_features(pool, test, labels, validation_size, draws, seed,
                      num_classes=data.NUM_CLASSES):
    """Test error of the SVM over `draws` seeded label draws: a dict with the mean and spread."""
    errors, chosen = [], []
    for draw in range(draws):
        labeled, validation = draw_labeled(pool[1], labels // num_classes, validation_size,
                                           np.random.default_rng([seed, draw]), num_classes)
        error, c = svm_test_error((pool[0][labeled], pool[1][labeled]),
                                  (pool[0][validation], pool[1][validation]), test)
        errors.append(error)
        chosen.append(c)
    return {"test_error_mean": float(np.mean(errors)), "test_error_std": float(np.std(errors)),
            "test_errors": errors, "svm_c": chosen, "labels": len(labeled),
            "validation_images": len(validation), "test_images": len(test[1]), "draws": draws}


def main(argv=None, args=None):
    args = args or parse_args(argv)
    devices.warn_if_gpu_unseen()
    run = runs.RunDir(args.run)
    try:
        config = run.read_config()
        pool_x, pool_y, test_x, test_y, transductive = feature_splits(config)
        labels = args.labels or DEFAULT_LABELS[config["dataset"]]
        check_label_count(labels, pool_y)
        checkpoint = args.checkpoint or run.newest_checkpoint()
        if not checkpoint:
            raise runs.RunError(f"{run.checkpoint_dir} holds no checkpoint yet")
        precision = config.get("precision", "float32")
        features = {
            "trained": lambda x: extract(run, x, checkpoint, config.get("seed", 0), precision),
            "untrained": lambda x: extract(run, x, None, config.get("seed", 0), precision),
            "pixels": lambda x: data.scale(x).reshape(len(x), -1)}
        results = {}
        for name, compute in features.items():
            pool_features = compute(pool_x)
            results[name] = evaluate_features(
                (pool_features, pool_y), (compute(test_x), test_y), labels,
                VALIDATION_IMAGES[config["dataset"]], args.draws, args.seed)
            results[name]["features"] = int(pool_features.shape[1])
    except (runs.RunError, data.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    results.update(checkpoint=os.path.basename(checkpoint), dataset=config["dataset"],
                   transductive=transductive, image_size=int(pool_x.shape[1]))
    print(format_table(results))
    try:
        run.write_features(results)
    except runs.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {run.features_path}")
    return 0


def format_table(results):
    first = results["trained"]
    size = results.get("image_size", data.IMAGE_SIZE)
    lines = [f"{results['dataset']} at {size}x{size}, {results['checkpoint']}: linear L2-SVM "
             f"test error with "
             f"{first['labels']} labels, {first['validation_images']} validation and "
             f"{first['test_images']} test images, {first['draws']} draws",
             f"{'features':<34} {'test error':>12} {'spread':>8}"]
    titles = {"trained": "trained discriminator", "untrained": "untrained discriminator",
              "pixels": "raw pixels"}
    titles = {name: f"{title} ({results[name]['features']:,})" if "features" in results[name]
              else title for name, title in titles.items()}
    for name in FEATURE_SETS:
        lines.append(f"{titles[name]:<34} {100 * results[name]['test_error_mean']:>11.2f}% "
                     f"{100 * results[name]['test_error_std']:>7.2f}%")
    if results["transductive"]:
        strict = ("mnist-sample has no split the GAN does not train on: for the strict protocol "
                  "use svhn or mnist, trained with --splits train" if results["dataset"] ==
                  "mnist-sample" else "for the strict protocol train with --splits train")
        lines.append(f"note: the GAN trained on the test images (without their labels): a "
                     f"transductive setting; {strict}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(args=ARGS))
