"""The classifiers behind the sample-quality numbers (quality.py), trained once per dataset.

A small CNN trained on the dataset's real labeled images, offline; its class probabilities and its
penultimate features are what quality.py scores. Trained on first use and cached under
<data-dir>/classifiers/<dataset>/ (a damaged or older cache is trained again).

A labeled folder of the user's pictures (its sub-folders are the classes, K >= 2 of them) gets a
classifier of its own with K outputs, cached under <data-dir>/classifiers/folder-<fingerprint>/,
so a changed folder (or other decoding settings) trains a new one. It trains on four fifths of
each class and is measured on the fifth held out (folder_split: a fixed seed, so the same folder
gives the same split) -- of a large folder, on at most the 99,200 images its 775 steps of 128 use
and as many held out (stratified_draw) --, and must reach required_accuracy(K): halfway between
chance and perfect.
"""
import json
import math
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

import data
from machinery import durable, image_rows, sessions

tf1 = tf.compat.v1

CLASSIFIER_VERSION = 1   # bump when the architecture or its training changes: the cache retrains
FEATURE_SIZE = 256
TRAIN_BATCH = 128
# Held-out accuracy each cached classifier must reach (the bar); below it, a warning.
REQUIRED_ACCURACY = {"mnist": 0.98, "svhn": 0.90, "mnist-sample": 0.95, "cifar10": 0.70}
LOOSEST_BAR = min(REQUIRED_ACCURACY.values())
# (train splits, held-out splits, epochs): the classifier learns the real labels of the dataset.
CLASSIFIER_DATA = {
    "mnist": (("train",), ("test",), 4),
    "svhn": (("train",), ("test",), 6),
    "mnist-sample": (None, None, 25),  # a seeded 4,000 / 1,000 split of the 5,000 digits
    "cifar10": (("train",), ("test",), 10),
}
MNIST_SAMPLE_HOLDOUT = 1000
PREDICT_BATCH = 500
# A folder's classifier: a fifth of each class held out, drawn with this seed.
FOLDER_HELDOUT_FRACTION = 0.2
FOLDER_SPLIT_SEED = 1234
MIN_CLASS_IMAGES = 2  # one to train on, one to hold out
# As many Adam steps as the mnist-sample classifier takes (25 epochs of 4,000 // 128 = 31
# batches), and at least one pass over the images it draws: a folder of the 5,000 digits trains
# like it.
FOLDER_CLASSIFIER_STEPS = 775
# The seed of stratified_draw: which images of each side of a large folder's split are read.
FOLDER_DRAW_SEED = 4321


def _classifier_graph(channels, num_classes):
    """conv3x3 32 - pool - conv3x3 64 - pool - conv3x3 128 - pool - dense 256 - dense K."""
    images = tf1.placeholder(tf.uint8, [None, data.IMAGE_SIZE, data.IMAGE_SIZE, channels], "images")
    labels = tf1.placeholder(tf.int64, [None], "labels")
    h = sessions.scale_pixels(images)
    init = tf1.variance_scaling_initializer(2.0)  # He initialization for ReLU
    with tf1.variable_scope("classifier"):
        for index, filters in enumerate((32, 64, 128), start=1):
            kernel = tf1.get_variable(f"conv{index}/kernel", [3, 3, h.shape[-1], filters],
                                      initializer=init)
            bias = tf1.get_variable(f"conv{index}/bias", [filters],
                                    initializer=tf1.zeros_initializer())
            h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, kernel, 1, "SAME"), bias))
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.reshape(h, [-1, 4 * 4 * 128])
        kernel = tf1.get_variable("dense1/kernel", [4 * 4 * 128, FEATURE_SIZE], initializer=init)
        bias = tf1.get_variable("dense1/bias", [FEATURE_SIZE], initializer=tf1.zeros_initializer())
        features = tf.nn.relu(tf.matmul(h, kernel) + bias)
        kernel = tf1.get_variable("logits/kernel", [FEATURE_SIZE, num_classes],
                                  initializer=tf1.glorot_uniform_initializer())
        bias = tf1.get_variable("logits/bias", [num_classes], initializer=tf1.zeros_initializer())
        logits = tf.matmul(features, kernel) + bias
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))
    train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss)
    return images, labels, tf.nn.softmax(logits), features, loss, train_op


def _shift(images, rng, max_shift=2):
    """Random translations by up to max_shift pixels (zero fill): cheap augmentation."""
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    out = np.empty_like(images)
    size = images.shape[1]
    for index, (dy, dx) in enumerate(rng.integers(0, 2 * max_shift + 1, (len(images), 2))):
        out[index] = padded[index, dy:dy + size, dx:dx + size]
    return out


class Classifier:
    """A classifier of 32x32 images into `num_classes` classes, in a graph and session of its own
    (the training graph stays final)."""

    def __init__(self, channels, num_classes=data.NUM_CLASSES, seed=0):
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.channels, self.num_classes = channels, num_classes
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            (self.images, self.labels, self.probabilities, self.features, self.loss,
             self.train_op) = _classifier_graph(channels, num_classes)
            self.saver = tf1.train.Saver()
            init = tf1.global_variables_initializer()
        self.graph.finalize()
        self.session = tf1.Session(graph=self.graph, config=sessions.session_config())
        self.session.run(init)

    def fit(self, images, labels, epochs, batch_size=None, seed=0, log=print):
        rng = np.random.default_rng(seed)
        batch_size = batch_size or TRAIN_BATCH
        batches = data.BatchIterator(len(images), min(batch_size, len(images)), seed)
        for epoch in range(epochs):
            losses = []
            for indices in batches.epoch_batches():
                _, loss = self.session.run([self.train_op, self.loss], {
                    self.images: _shift(images[indices], rng), self.labels: labels[indices]})
                losses.append(loss)
            log(f"classifier epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}")

    def predict(self, images):
        """uint8 images -> (class probabilities (N, K), penultimate features (N, 256))."""
        probabilities, features = [], []
        for start in range(0, len(images), PREDICT_BATCH):
            p, f = self.session.run([self.probabilities, self.features],
                                    {self.images: images[start:start + PREDICT_BATCH]})
            probabilities.append(p)
            features.append(f)
        return np.concatenate(probabilities), np.concatenate(features)

    def accuracy(self, images, labels):
        return float(np.mean(np.argmax(self.predict(images)[0], axis=1) == labels))

    def save(self, folder, info):
        """Writes the weights and `info` into a new folder, renamed into place when complete."""
        parent = os.path.dirname(os.path.abspath(folder))
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=durable.temp_prefix(".tmp-classifier-"))
        try:
            self.saver.save(self.session, os.path.join(staging, "classifier"),
                            write_meta_graph=False)
            with open(os.path.join(staging, "info.json"), "w") as handle:
                json.dump(info, handle, indent=2)
            os.chmod(staging, durable.DEFAULT_DIR_MODE)  # mkdtemp makes it private (0700)
            if os.path.exists(folder):
                shutil.rmtree(folder)
            os.replace(staging, folder)
        finally:
            if os.path.exists(staging):
                shutil.rmtree(staging)

    def restore(self, folder):
        self.saver.restore(self.session, os.path.join(folder, "classifier"))

    def close(self):
        self.session.close()


def classifier_split(name, data_dir, download=True, verify=True, image_size=data.IMAGE_SIZE):
    """(train images, train labels, held-out images, held-out labels) for a dataset, its images
    resized to `image_size` (features.py's use; the classifier itself trains at 32x32)."""
    train_splits, heldout_splits, _ = CLASSIFIER_DATA[name]
    if name == "mnist-sample":
        sample = data.load_dataset(name, image_size=image_size)
        order = np.random.default_rng(1234).permutation(len(sample.images))
        held, kept = order[:MNIST_SAMPLE_HOLDOUT], order[MNIST_SAMPLE_HOLDOUT:]
        return sample.images[kept], sample.labels[kept], sample.images[held], sample.labels[held]
    train_set = data.load_dataset(name, data_dir, train_splits, verify, download, image_size)
    heldout = data.load_dataset(name, data_dir, heldout_splits, verify, download, image_size)
    return train_set.images, train_set.labels, heldout.images, heldout.labels


def load_classifier(name, data_dir="data", download=True, verify=True, log=print):
    """The cached classifier of a named dataset, trained (and cached) on first use.

    Returns:
      (Classifier, info dict with its held-out accuracy).
    """
    folder = os.path.join(data_dir, "classifiers", name)
    required = (REQUIRED_ACCURACY[name], None)
    cached = _cached_classifier(folder, data.channels(name), data.NUM_CLASSES, name, required, log)
    if cached:
        return cached
    train_images, train_labels, held_images, held_labels = classifier_split(
        name, data_dir, download, verify)
    return _train_and_cache(folder, name, Classifier(data.channels(name)),
                            (train_images, train_labels), (held_images, held_labels),
                            CLASSIFIER_DATA[name][2], required, {"dataset": name}, log)


def required_accuracy(num_classes):
    """The held-out accuracy a folder's classifier of K classes must reach: halfway between
    chance (1/K) and perfect, (1 + 1/K) / 2 -- it removes at least half of chance's errors --,
    and never more than the loosest bar of the named datasets (CIFAR-10's 0.70: photographs, the
    hardest of them), which only two classes (0.75) would exceed."""
    return round(min((1 + 1 / num_classes) / 2, LOOSEST_BAR), 4)


def _folder_bar(num_classes):
    """Why a folder's classifier has its bar, for the message when it falls below."""
    capped = (1 + 1 / num_classes) / 2 > LOOSEST_BAR
    return (f"halfway between chance, 1/{num_classes}, and perfect" +
            (f", at most {LOOSEST_BAR}, the loosest bar of the named datasets" if capped else ""))


def require_labeled(dataset, root, what):
    """Raises data.DatasetError (one line saying what `what` needs) unless the folder's images
    are in at least two classes, each of at least MIN_CLASS_IMAGES usable images."""
    if not dataset.classes or dataset.labels is None:
        raise data.DatasetError(
            f"{what} needs a labeled folder: the images of {root} in sub-folders, one per class "
            f"and at least two (say {os.path.join(root, 'cats')} and "
            f"{os.path.join(root, 'dogs')}), holding all of them; this folder has no classes (it "
            f"is flat, has one sub-folder, or has images beside its sub-folders)")
    counts = np.bincount(dataset.labels, minlength=len(dataset.classes))
    rarest = int(np.argmin(counts))
    if counts[rarest] < MIN_CLASS_IMAGES:
        raise data.DatasetError(
            f"{what} needs at least {MIN_CLASS_IMAGES} usable images in every class of {root} "
            f"(one to train the classifier on, one held out to measure it); "
            f"{dataset.classes[rarest]}/ has {counts[rarest]}")


def folder_split(labels, num_classes):
    """(train indices, held-out indices) of a folder's labeled images: a fifth of each class
    (at least one image) held out, drawn with a fixed seed, so the split is the same for the
    same labels -- the same folder fingerprint -- every time. Both sorted, disjoint, covering
    every image."""
    labels = np.asarray(labels)
    held = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if len(members):
            drawn = np.random.default_rng([FOLDER_SPLIT_SEED, label]).permutation(members)
            held.append(drawn[:max(1, int(round(len(members) * FOLDER_HELDOUT_FRACTION)))])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), held), held


def stratified_draw(indices, labels, limit, at_least=1, seed=FOLDER_DRAW_SEED):
    """At most `limit` of `indices` (all of them when they are no more), sorted: the first
    `at_least` of every class (all it has, when fewer), then each class in proportion to its
    share of them, its images taken in a seeded order; the same indices and labels give the
    same draw."""
    indices = np.asarray(indices, np.int64)
    if len(indices) <= limit:
        return indices
    drawn_labels = np.asarray(labels)[indices]
    position = np.empty(len(indices))
    for label in np.unique(drawn_labels):
        members = np.flatnonzero(drawn_labels == label)
        members = np.random.default_rng([seed, int(label)]).permutation(members)
        rank = np.arange(len(members))
        # A class's k-th image stands at k / its size, so every class is drawn at one rate; its
        # first `at_least` before any other class's others.
        position[members] = rank / len(members) - (rank < at_least)
    return np.sort(indices[np.lexsort((drawn_labels, position))[:limit]])


def load_folder_classifier(dataset, root, data_dir="data", log=print):
    """The classifier of a labeled folder (a data.load_folder Dataset), trained on its
    folder_split and cached under <data-dir>/classifiers/folder-<fingerprint>/ on first use.

    Returns:
      (Classifier, info dict with its held-out accuracy and the bar it had to reach).

    Raises:
      data.DatasetError: the folder has no classes, or a class too few images (require_labeled).
    """
    require_labeled(dataset, root, "a classifier of the folder's classes")
    num_classes, channels = len(dataset.classes), int(dataset.images.shape[-1])
    folder = os.path.join(data_dir, "classifiers", f"folder-{dataset.fingerprint}")
    what = f"{num_classes}-class folder"
    required = (required_accuracy(num_classes), _folder_bar(num_classes))
    cached = _cached_classifier(folder, channels, num_classes, what, required, log)
    if cached:
        return cached
    # The cache is memory-mapped so that a folder larger than RAM trains; scoring it must not
    # read it whole either. The classifier trains on at most the images its steps use, and is
    # measured on as many held out (stratified_draw: each class in its share, the same images
    # for the same folder), read from the cache a chunk at a time, the held-out ones a batch at
    # a time as they are measured. It sees 32x32, as quality.quality scores (a 64x64 run's
    # images resized alike).
    limit = FOLDER_CLASSIFIER_STEPS * TRAIN_BATCH
    train, held = (stratified_draw(part, dataset.labels, limit)
                   for part in folder_split(dataset.labels, num_classes))
    train_set = (image_rows.read_rows(dataset.images, train, data.IMAGE_SIZE),
                 dataset.labels[train])
    held_set = (image_rows.ImageRows(dataset.images, held, data.IMAGE_SIZE),
                dataset.labels[held])
    batches = len(train) // min(TRAIN_BATCH, len(train))
    epochs = max(1, math.ceil(FOLDER_CLASSIFIER_STEPS / batches))
    info = {"dataset": data.FOLDER, "images": os.path.abspath(root),
            "fingerprint": dataset.fingerprint, "classes": list(dataset.classes)}
    return _train_and_cache(folder, what, Classifier(channels, num_classes), train_set, held_set,
                            epochs, required, info, log)


def dataset_classifier(dataset, root=None, data_dir="data", download=True, verify=True,
                       log=print):
    """The classifier that scores a run on `dataset`: load_folder_classifier for a folder (its
    path `root`), load_classifier for a named dataset."""
    if dataset.name == data.FOLDER:
        return load_folder_classifier(dataset, root, data_dir, log)
    return load_classifier(dataset.name, data_dir, download, verify, log)


def _accuracy_line(what, info, required):
    """The classifier's held-out accuracy, and whether it falls below `required`, a (bar, why
    or None) pair."""
    accuracy, (required, why) = info["heldout_accuracy"], required
    below = f" -- BELOW the required {required}" + (f" ({why})" if why else "") + \
        "; its scores are less trustworthy"
    return (f"{what} classifier: held-out accuracy {accuracy:.4f} on {info['heldout_images']} "
            f"images" + ("" if accuracy >= required else below))


def _train_and_cache(folder, what, classifier, train_set, held_set, epochs, required, info, log):
    """Trains `classifier`, measures it on `held_set` against `required` (bar, why), caches it
    in `folder`: (classifier, info)."""
    log(f"training the {what} classifier once ({len(train_set[0])} images, {epochs} epochs); "
        f"cached in {folder}")
    start = time.time()
    classifier.fit(*train_set, epochs, log=log)
    info = {"version": CLASSIFIER_VERSION, **info,
            "num_classes": classifier.num_classes, "channels": classifier.channels,
            "heldout_accuracy": classifier.accuracy(*held_set),
            "required_accuracy": required[0],
            "heldout_images": len(held_set[0]), "train_images": len(train_set[0]),
            "epochs": epochs, "train_seconds": round(time.time() - start, 1)}
    log(_accuracy_line(what, info, required))
    try:
        classifier.save(folder, info)
    except (OSError, tf.errors.OpError) as error:
        log(f"warning: cannot cache the classifier in {folder} ({error}); it will be trained "
            f"again next time")
    return classifier, info


def _cached_classifier(folder, channels, num_classes, what, required, log):
    """(Classifier, info) from the cache, or None: nothing cached, an older version or another
    shape, or a damaged cache (said, and then trained again and replaced). A cached classifier
    below its bar says so each time it is used."""
    info_path = os.path.join(folder, "info.json")
    if not os.path.exists(info_path):
        return None
    classifier = None
    try:
        with open(info_path, encoding="utf-8") as handle:
            info = json.load(handle)
        if not isinstance(info, dict) or not isinstance(info.get("heldout_accuracy"), float):
            raise ValueError("info.json is not the cache's record")
        # (caches written before the class count was recorded are the named datasets' 10)
        if info.get("version") != CLASSIFIER_VERSION or \
                info.get("num_classes", data.NUM_CLASSES) != num_classes:
            return None
        classifier = Classifier(channels, num_classes)
        classifier.restore(folder)
        if info["heldout_accuracy"] < required[0]:
            log(_accuracy_line(what, info, required))
        return classifier, info
    except (OSError, ValueError, tf.errors.OpError) as error:
        if classifier:
            classifier.close()
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log(f"the cached classifier in {folder} is damaged ({message}); training it again")
        return None
