"""features.py's work, the DCGAN paper's section 5: the trained discriminator as a feature
extractor for a linear L2-SVM trained on few labeled images, beside an untrained discriminator and
raw pixels (features.py's help says which labels, validation and test images each dataset uses).
"""
import collections
import os
import sys
import warnings

import numpy as np
import tensorflow as tf

import data
import dcgan
from machinery import checkpoints, classifiers, devices, errors, image_rows, run_directory, sessions
from machinery.results import write_features

tf1 = tf.compat.v1

DEFAULT_LABELS = {"svhn": 1000, "mnist": 100, "mnist-sample": 100, "cifar10": 4000}
FOLDER_LABELS_PER_CLASS = 10  # as the MNIST variants' 100 for ten digits
VALIDATION_IMAGES = {"svhn": 10000, "mnist": 10000, "mnist-sample": None,  # None: all the rest
                     "cifar10": 5000, data.FOLDER: 10000}
FOLDER_TEST_IMAGES = 10000  # of a folder's held-out fifth at most: as many as MNIST's test split
SVM_C = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # the regularization grid searched on validation
FEATURE_BATCH = 500
FEATURE_SETS = ("trained", "untrained", "pixels")


FeatureSplits = collections.namedtuple(
    "FeatureSplits", "pool_images pool_labels test_images test_labels transductive num_classes")
FeatureSplits.__doc__ = """Labeled and validation images are drawn from the pool; `transductive`
when the GAN trained on the test images; labels in 0 .. num_classes - 1."""


def feature_splits(config, labels=None):
    """The FeatureSplits of the run's dataset at the run's image size, and the number of labels
    to draw: `labels` (--labels), or default_labels; checked against the pool (check_label_count).

    Raises:
      data.DatasetError: a file is missing or damaged; a folder changed since the run trained
        on it, has no classes, or a class of fewer than two images.
      errors.RunError: the pool cannot give that many labels.
    """
    name, data_dir = config["dataset"], run_directory.setting_path(config, "data_dir", "data")
    verify, size = not config.get("skip_checksum", False), run_directory.image_size(config)
    if name == data.FOLDER:  # as the run trained on it, or refused
        folder, root = run_directory.load_trained_folder(config)
        classifiers.require_labeled(folder, root, "features.py")
        return _folder_splits(folder, labels)
    if name == "mnist-sample":
        pool_x, pool_y, test_x, test_y = classifiers.classifier_split(name, data_dir, False, verify,
                                                                      size)
        splits = FeatureSplits(pool_x, pool_y, test_x, test_y, True,  # trained on all 5,000
                               data.NUM_CLASSES)
    else:
        train = data.load_dataset(name, data_dir, ("train",), verify, download=False,
                                  image_size=size)
        test = data.load_dataset(name, data_dir, ("test",), verify, download=False,
                                 image_size=size)
        trained_on = config.get("splits") or data.DEFAULT_SPLITS[name]
        splits = FeatureSplits(train.images, train.labels, test.images, test.labels,
                               "test" in trained_on, data.NUM_CLASSES)
    return splits, checked_labels(name, labels, splits.pool_labels, data.NUM_CLASSES)


def _folder_splits(folder, labels):
    """feature_splits of a labeled folder: its classifier's split (classifiers.folder_split).

    The cache is memory-mapped so that a folder larger than RAM trains: only the images the
    draws can use are read, a chunk at a time (image_rows.read_rows). Of the four fifths, the labels
    and VALIDATION_IMAGES[folder] others (stratified_draw: each class in its share, with the
    labels it gives and one to spare), every draw's labeled and validation images among them;
    of the held-out fifth, FOLDER_TEST_IMAGES. A smaller folder's are all of them."""
    num_classes = len(folder.classes)
    pool, test = classifiers.folder_split(folder.labels, num_classes)
    labels = checked_labels(data.FOLDER, labels, folder.labels[pool], num_classes)
    pool = classifiers.stratified_draw(pool, folder.labels,
                                       labels + VALIDATION_IMAGES[data.FOLDER],
                                       at_least=labels // num_classes + 1)
    test = classifiers.stratified_draw(test, folder.labels, FOLDER_TEST_IMAGES)
    return FeatureSplits(image_rows.read_rows(folder.images, pool), folder.labels[pool],
                         image_rows.read_rows(folder.images, test), folder.labels[test],
                         True, num_classes), labels  # the GAN trained on every image


def extract(run, images, checkpoint, seed, precision):
    """The discriminator features of uint8 images: restored from `checkpoint`, or, when it is
    None, freshly initialized with `seed` (the untrained baseline)."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        pixels = tf1.placeholder(tf.uint8, [None, *images.shape[1:]])
        features, _ = dcgan.discriminator_features(sessions.scale_pixels(pixels),
                                                   precision=precision)
        variables = tf1.global_variables(dcgan.DISCRIMINATOR_SCOPE + "/")
        saver = tf1.train.Saver(variables)
        init = tf1.global_variables_initializer()
    graph.finalize()
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(init)
        if checkpoint:
            checkpoints.restore(run.checkpoint_dir, sess, saver, variables, checkpoint)
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


def default_labels(name, pool_labels, num_classes):
    """--labels when it is not given: DEFAULT_LABELS for a named dataset; for a folder
    FOLDER_LABELS_PER_CLASS a class, or as many as its smallest class allows."""
    if name != data.FOLDER:
        return DEFAULT_LABELS[name]
    return max(min(FOLDER_LABELS_PER_CLASS * num_classes, most_labels(pool_labels, num_classes)),
               num_classes)  # (a pool too small for one a class: check_label_count says so)


def checked_labels(name, labels, pool_labels, num_classes):
    """`labels`, or default_labels when None, after check_label_count."""
    labels = labels or default_labels(name, pool_labels, num_classes)
    check_label_count(labels, pool_labels, num_classes)
    return labels


def check_label_count(labels, pool_labels, num_classes=data.NUM_CLASSES):
    """Raises RunError unless `labels` (labels // num_classes a class) can be drawn from the pool
    with images left to validate on: more would give fewer labels than asked, or none to choose
    C; fewer than one a class would leave a class out."""
    counts = np.bincount(pool_labels, minlength=num_classes)
    most = most_labels(pool_labels, num_classes)
    if most < num_classes:
        raise errors.RunError(f"the labeled pool of this dataset ({len(pool_labels):,} images, "
                              f"{int(counts.min()):,} of its rarest class) is too small for one "
                              f"label a class of its {num_classes} and some images to validate on")
    if labels < num_classes:
        raise errors.RunError(f"--labels {labels:,} is fewer than one a class: this dataset has "
                              f"{num_classes} classes; use at least {num_classes}")
    if labels > most:
        raise errors.RunError(f"--labels {labels:,} is more than this dataset allows: its labeled "
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


def format_table(results):
    first = results["trained"]
    size = results.get("image_size", data.IMAGE_SIZE)
    dataset = results["dataset"] if results["dataset"] != data.FOLDER else \
        f"{results['images']} ({results['num_classes']} classes)"
    lines = [f"{dataset} at {size}x{size}, {results['checkpoint']}: linear L2-SVM test error with "
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
        strict = {"mnist-sample": "mnist-sample has no split the GAN does not train on: for the "
                                  "strict protocol use svhn or mnist, trained with --splits train",
                  data.FOLDER: "a folder run trains on every image of the folder, its held-out "
                               "fifth too: for the strict protocol use svhn or mnist, trained "
                               "with --splits train"}.get(
            results["dataset"], "for the strict protocol train with --splits train")
        lines.append(f"note: the GAN trained on the test images (without their labels): a "
                     f"transductive setting; {strict}.")
    return "\n".join(lines)


def measure_features(args):
    """features.py with its parsed flags: prints the table, then saves it; returns the exit status
    (a problem is one line on stderr, and nothing of the run is changed)."""
    devices.warn_if_gpu_unseen()
    run = run_directory.RunDir(args.run)
    try:
        config = run.read_config()
        splits, labels = feature_splits(config, args.labels)
        pool_x, pool_y, test_x, test_y, transductive, classes = splits
        checkpoint = checkpoints.resolve(run.checkpoint_dir, args.checkpoint) or \
            checkpoints.newest(run.checkpoint_dir)
        if not checkpoint:
            raise errors.RunError(f"{run.checkpoint_dir} holds no checkpoint yet")
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
                VALIDATION_IMAGES[config["dataset"]], args.draws, args.seed, classes)
            results[name]["features"] = int(pool_features.shape[1])
    except (errors.RunError, data.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    results.update(checkpoint=os.path.basename(checkpoint), dataset=config["dataset"],
                   transductive=transductive, image_size=int(pool_x.shape[1]),
                   num_classes=classes, images=config.get("images"))
    print(format_table(results))
    try:
        write_features(run, results)
    except errors.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"wrote {run.features_path}")
    return 0
