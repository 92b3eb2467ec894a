"""The digit classifier behind the sample-quality numbers (quality.py), trained once per dataset.

A small CNN trained on the dataset's real labeled images, offline; its class probabilities and its
penultimate features are what quality.py scores. Trained on first use and cached under
<data-dir>/classifiers/<dataset>/ (a damaged or older cache is trained again).
"""
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

import data
import dcgan
import durable

tf1 = tf.compat.v1

CLASSIFIER_VERSION = 1   # bump when the architecture or its training changes: the cache retrains
FEATURE_SIZE = 256
# Held-out accuracy each cached classifier must reach (the bar); below it, a warning.
REQUIRED_ACCURACY = {"mnist": 0.98, "svhn": 0.90, "mnist-sample": 0.95, "cifar10": 0.70}
# (train splits, held-out splits, epochs): the classifier learns the real labels of the dataset.
CLASSIFIER_DATA = {
    "mnist": (("train",), ("test",), 4),
    "svhn": (("train",), ("test",), 6),
    "mnist-sample": (None, None, 25),  # a seeded 4,000 / 1,000 split of the 5,000 digits
    "cifar10": (("train",), ("test",), 10),
}
MNIST_SAMPLE_HOLDOUT = 1000
PREDICT_BATCH = 500


def _classifier_graph(channels, num_classes):
    """conv3x3 32 - pool - conv3x3 64 - pool - conv3x3 128 - pool - dense 256 - dense K."""
    images = tf1.placeholder(tf.uint8, [None, data.IMAGE_SIZE, data.IMAGE_SIZE, channels], "images")
    labels = tf1.placeholder(tf.int64, [None], "labels")
    h = dcgan.scale_pixels(images)
    init = tf1.variance_scaling_initializer(2.0)  # He initialization for ReLU
    with tf1.variable_scope("classifier"):
        for index, filters in enumerate((32, 64, 128), start=1):
            kernel = tf1.get_variable(f"conv{index}/kernel", [3, 3, h.shape[-1], filters],
                                      initializer=init)
            bias = tf1.get_variable(f"conv{index}/bias", [filters], initializer=tf1.zeros_initializer())
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
        self.session = tf1.Session(graph=self.graph, config=dcgan.session_config())
        self.session.run(init)

    def fit(self, images, labels, epochs, batch_size=128, seed=0, log=print):
        rng = np.random.default_rng(seed)
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
    """The cached classifier of a dataset, trained (and cached) on first use.

    Returns:
      (Classifier, info dict with its held-out accuracy).
    """
    folder = os.path.join(data_dir, "classifiers", name)
    cached = _cached_classifier(name, folder, log)
    if cached:
        return cached
    train_images, train_labels, held_images, held_labels = classifier_split(
        name, data_dir, download, verify)
    epochs = CLASSIFIER_DATA[name][2]
    log(f"training the {name} classifier once ({len(train_images)} images, {epochs} epochs); "
        f"cached in {folder}")
    start = time.time()
    classifier = Classifier(data.channels(name))
    classifier.fit(train_images, train_labels, epochs, log=log)
    accuracy = classifier.accuracy(held_images, held_labels)
    info = {"version": CLASSIFIER_VERSION, "dataset": name, "heldout_accuracy": accuracy,
            "heldout_images": len(held_images), "train_images": len(train_images),
            "epochs": epochs, "train_seconds": round(time.time() - start, 1)}
    required = REQUIRED_ACCURACY[name]
    log(f"{name} classifier: held-out accuracy {accuracy:.4f} on {len(held_images)} images"
        + ("" if accuracy >= required else f" -- BELOW the required {required}; its scores are "
                                             f"less trustworthy"))
    try:
        classifier.save(folder, info)
    except (OSError, tf.errors.OpError) as error:
        log(f"warning: cannot cache the classifier in {folder} ({error}); it will be trained "
            f"again next time")
    return classifier, info


def _cached_classifier(name, folder, log):
    """(Classifier, info) from the cache, or None: nothing cached, an older version, or a damaged
    cache (said, and then trained again and replaced)."""
    info_path = os.path.join(folder, "info.json")
    if not os.path.exists(info_path):
        return None
    classifier = None
    try:
        with open(info_path, encoding="utf-8") as handle:
            info = json.load(handle)
        if not isinstance(info, dict) or not isinstance(info.get("heldout_accuracy"), float):
            raise ValueError("info.json is not the cache's record")
        if info.get("version") != CLASSIFIER_VERSION:
            return None
        classifier = Classifier(data.channels(name))
        classifier.restore(folder)
        return classifier, info
    except (OSError, ValueError, tf.errors.OpError) as error:
        if classifier:
            classifier.close()
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log(f"the cached classifier in {folder} is damaged ({message}); training it again")
        return None
