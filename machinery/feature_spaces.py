"""Fixed feature spaces, for scoring images that have no labels (a flat folder), and the choice of
what scores a run's images (scorer).

A classifier trained on the real images is the best judge of generated ones (quality.py), but a
flat folder has no classes to train one on. Its images are scored in a feature space that is the
same for every folder and every machine -- fixed weights from a fixed seed, named in the output --
so two runs on one folder, or two folders, compare. It is never the run's own discriminator,
which trained against the generator it would judge.

The candidates (SPACES) share one interface, the classifier's: predict(uint8 images 32x32,
gray or RGB) gives (None: no classes, float32 features (N, 256)); name, key (for file names),
close(). Gray images are repeated to three channels first, so gray and colour folders share a
space:

  random-cnn-v1  the classifier's architecture (classifiers.py: conv 3x3 of 32, 64 and 128
                 channels, each with ReLU and a 2x2 max-pool, then dense 256 with ReLU) with
                 random He-normal weights and zero biases, never trained;
  pixels-v1      the pixels scaled to [-1, 1], projected to 256 dimensions by a fixed Gaussian
                 matrix (Johnson-Lindenstrauss: distances between images kept up to a few
                 percent).

Their weights come from NumPy's legacy RandomState(seed), whose streams NumPy keeps unchanged
in every version. FLAT_FOLDER_SPACE is the one flat folders use; machinery/studies.py measures
the candidates against the class-based numbers of labeled digit folders (docs/quality.md).
"""
import hashlib
import json

import numpy as np
import tensorflow as tf

import data
from machinery import classifiers, sessions

tf1 = tf.compat.v1

FEATURE_SIZE = 256
SEED = 0
BATCH = 500
FLAT_FOLDER_SPACE = "random-cnn-v1"  # chosen by measurement (docs/measuring.md): studies.py spaces


def _rgb(images):
    """uint8 images (N, 32, 32, C) with 3 channels: gray repeated."""
    if images.shape[1:3] != (data.IMAGE_SIZE, data.IMAGE_SIZE):
        raise ValueError(f"a feature space takes {data.IMAGE_SIZE}x{data.IMAGE_SIZE} images, "
                         f"got {images.shape[1]}x{images.shape[2]}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


class RandomCNN:
    """random-cnn-v1: the classifier's network with fixed random weights (see the module)."""

    version = "random-cnn-v1"

    def __init__(self, seed=SEED):
        self.name, self.key = f"{self.version} (seed {seed})", f"{self.version}-seed{seed}"
        rng = np.random.RandomState(seed)

        def he_normal(*shape):  # fan in: every dimension but the last
            return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))).astype(
                np.float32)

        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf1.placeholder(tf.uint8, [None, data.IMAGE_SIZE, data.IMAGE_SIZE, 3])
            h = sessions.scale_pixels(self.images)
            for filters in (32, 64, 128):
                h = tf.nn.relu(tf.nn.conv2d(h, he_normal(3, 3, int(h.shape[-1]), filters), 1,
                                            "SAME"))
                h = tf.nn.max_pool2d(h, 2, 2, "VALID")
            h = tf.reshape(h, [-1, 4 * 4 * 128])
            self.features = tf.nn.relu(tf.matmul(h, he_normal(4 * 4 * 128, FEATURE_SIZE)))
        self.graph.finalize()
        self.session = tf1.Session(graph=self.graph, config=sessions.session_config())

    def predict(self, images):
        """uint8 32x32 images -> (None, float32 features (N, 256))."""
        return None, np.concatenate(
            [self.session.run(self.features, {self.images: _rgb(images[start:start + BATCH])})
             for start in range(0, len(images), BATCH)] or [np.zeros((0, FEATURE_SIZE),
                                                                     np.float32)])

    def close(self):
        self.session.close()


class PixelProjection:
    """pixels-v1: pixels in [-1, 1], projected by a fixed Gaussian matrix (see the module)."""

    version = "pixels-v1"

    def __init__(self, seed=SEED):
        self.name, self.key = f"{self.version} (seed {seed})", f"{self.version}-seed{seed}"
        pixels = data.IMAGE_SIZE * data.IMAGE_SIZE * 3
        self.matrix = (np.random.RandomState(seed).standard_normal((pixels, FEATURE_SIZE))
                       / np.sqrt(FEATURE_SIZE)).astype(np.float32)

    def predict(self, images):
        rows = [data.scale(_rgb(images[start:start + BATCH])).reshape(-1, len(self.matrix))
                @ self.matrix for start in range(0, len(images), BATCH)]
        return None, np.concatenate(rows or [np.zeros((0, FEATURE_SIZE), np.float32)])

    def close(self):
        pass


SPACES = {space.version: space for space in (RandomCNN, PixelProjection)}


class ClassifierSpace:
    """A classifiers.Classifier seen as a feature space: its probabilities and features, with a
    name for the output and a key that changes whenever the classifier is trained anew."""

    def __init__(self, classifier, info, what):
        self.classifier, self.name = classifier, f"the {what} classifier"
        digest = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode())
        self.key = f"classifier-{digest.hexdigest()[:12]}"

    def predict(self, images):
        return self.classifier.predict(images)

    def close(self):
        self.classifier.close()


def is_labeled(dataset):
    """Whether a dataset has classes a classifier can be trained on (a flat folder has none)."""
    return dataset.name != data.FOLDER or bool(dataset.classes and dataset.labels is not None)


def scorer(dataset, root=None, data_dir="data", download=True, verify=True, log=print,
           flat_space=FLAT_FOLDER_SPACE):
    """What scores a run on `dataset`: the dataset's classifier (a labeled folder's: of its
    classes, classifiers.dataset_classifier), or for a flat folder the fixed space `flat_space`.

    Returns:
      (space, classifier info or None): space.predict, .name, .key, .close().

    Raises:
      data.DatasetError: no classifier (a missing file, a class of too few images).
    """
    if not is_labeled(dataset):
        return SPACES[flat_space](), None
    classifier, info = classifiers.dataset_classifier(dataset, root, data_dir, download, verify,
                                                      log)
    what = f"folder's {classifier.num_classes}-class" if dataset.name == data.FOLDER else \
        dataset.name
    return ClassifierSpace(classifier, info, what), info
