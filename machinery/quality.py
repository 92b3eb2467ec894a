"""Sample quality in numbers, for evaluate.py and train.py --eval-every.

Losses do not say whether a GAN is any good. Like TF-GAN's MNIST evaluation, this scores
generated images with a classifier trained on the real labeled images, offline:

  classifier score   exp(E_x KL(p(y|x) || p(y))): 1 (one class, or unsure) .. K (confident and
                     spread over all K classes); the Inception Score with a digit classifier.
  Frechet distance   between Gaussian fits of the classifier's penultimate features of generated
                     and real images (FID with a digit classifier); 0 for identical statistics.
  KID                the Kernel Inception Distance (kid.py) of the same features: unbiased at
                     every sample size, where the Frechet distance falls as more images are drawn;
                     its mean and standard deviation over 100 subsets of 1,000.
  class coverage     the predicted classes of the generated images: their entropy (nats; ln K is
                     uniform: 2.303 for ten classes) and the smallest class share (1/K is uniform).

A flat folder has no classes to train a classifier on: its images are scored in a fixed feature
space instead (feature_spaces.py), with the Frechet distance and KID only.

K is the classifier's number of classes (the width of its probabilities): 10 for every named
dataset, the number of sub-folders for a labeled folder of the user's pictures.

The same numbers for two disjoint halves of the real data are the floor a perfect generator would
reach. The classifier is trained once per dataset (per fingerprint for a folder) and cached under
<data-dir>/classifiers/ (classifiers.py). It sees 32x32 images: a run at another --image-size has
its generated and its real images resized to 32x32 alike (image_rows.resize) before they are
scored, so neither side gains from the resize.
"""
import numpy as np
import scipy.linalg

import data
from machinery import image_rows, kid

DEFAULT_NUM = 5000
# The real images are split in two halves for the floor, and a Frechet distance needs a
# covariance, so each half needs two images.
MIN_IMAGES = 4
MIN_IMAGES_WHY = "two halves of real images of at least 2 each, the least that has a covariance"
# The generated images are held as float32 while they are scored: 200,000 are 2.4 GB.
MAX_IMAGES = 200_000
IMAGES_WHY = f"at least {MIN_IMAGES}: {MIN_IMAGES_WHY}; at most what memory holds as float32"
# The number --eval-every chooses the best checkpoint by: KID when fewer real images than this are
# compared, the Frechet distance from here on. Below it the Frechet distance's bias -- it falls as
# more images are drawn, by an amount that depends on the generator (Chong & Forsyth 2020), so it
# can reorder two checkpoints -- is large beside the differences late in a run; KID has none.
# At 10,000 (TTUR's advice for FID) the bias is small and the Frechet distance is the less noisy.
BEST_BY_FRECHET_FROM = 10_000
METRIC_NAMES = {"kid": "KID", "frechet_distance": "Frechet distance"}


# --- Metrics (plain NumPy / SciPy, tested on known inputs) -----------------------------------
def classifier_score(probabilities):
    """exp(mean over x of KL(p(y|x) || p(y))), p(y) the mean of p(y|x): in [1, K] for
    probabilities of shape (N, K)."""
    p = np.asarray(probabilities, np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


def frechet_distance(features_a, features_b):
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) between Gaussian fits.

    Tr((C_a C_b)^(1/2)) is computed as Tr((A C_b A)^(1/2)) with A = C_a^(1/2): the two matrices
    are similar, and the second is symmetric positive semi-definite, so symmetric eigensolvers
    give it stably even when a covariance is singular (dead features, few samples), where a
    general matrix square root (scipy.linalg.sqrtm) warns and returns complex round-off.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    eigenvalues, eigenvectors = scipy.linalg.eigh(cov_a)
    root_a = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(scipy.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(value, 0.0))


def class_coverage(probabilities):
    """(entropy in nats of the predicted-class histogram, smallest class share) for
    probabilities of shape (N, K): uniform over the K classes is (ln K, 1/K); a class never
    predicted makes the smallest share 0."""
    probabilities = np.asarray(probabilities)
    predicted = np.argmax(probabilities, axis=1)
    shares = np.bincount(predicted, minlength=probabilities.shape[1]) / len(predicted)
    nonzero = shares[shares > 0]
    entropy = max(0.0, float(-(nonzero * np.log(nonzero)).sum()))  # one class: 0, not -0
    return entropy, float(shares.min())


# --- Evaluation ------------------------------------------------------------------------------
def quality(classifier, generated, real, seed=0, real_outputs=None, generated_outputs=None):
    """All numbers for generated uint8 images against real uint8 images, and the real floor.

    Args:
      classifier: what scores the images: its predict(uint8 32x32 images) gives (class
        probabilities (N, K), or None when it knows no classes, features (N, d)) -- a
        classifiers.Classifier, or a feature_spaces space (then only the Frechet distance and
        KID are computed).
      generated, real: uint8 images of one shape; of another size than 32x32 both are resized
        to it first with the same filter.
      seed: the seed of the real halves and of KID's subsets.
      real_outputs, generated_outputs: classifier.predict of the resized `real` and
        `generated`, when already known (a cache; near copies use them too).

    The floor compares two disjoint halves of `real` (each at most len(generated) images). KID's
    floor is 0: it is unbiased, and its standard deviation over subsets says its noise.

    Raises:
      ValueError: the generated and the real images differ in size.
    """
    if generated.shape[1:] != real.shape[1:]:
        raise ValueError(f"generated images {generated.shape[1:]} and real ones "
                         f"{real.shape[1:]} differ in shape")
    image_size = generated.shape[1]
    gen_probabilities, gen_features = generated_outputs or classifier.predict(
        image_rows.resize(generated, data.IMAGE_SIZE))
    real_probabilities, real_features = real_outputs or classifier.predict(
        image_rows.resize(real, data.IMAGE_SIZE))
    order = np.random.default_rng(seed).permutation(len(real))
    half = min(len(real) // 2, len(generated))
    first, second = order[:half], order[half:2 * half]
    kid_mean, kid_std = kid.kernel_distance(gen_features, real_features, seed=seed)
    result = {
        "frechet_distance": frechet_distance(gen_features, real_features),
        "kid": kid_mean, "kid_std": kid_std,
        "kid_subsets": kid.NUM_SUBSETS,
        "kid_subset_size": kid.rows_per_subset(len(generated), len(real)),
        "real_frechet_distance": frechet_distance(real_features[first], real_features[second]),
        "num_generated": len(generated), "num_real": len(real), "num_real_half": int(half),
        "image_size": int(image_size), "scored_size": data.IMAGE_SIZE,
    }
    if gen_probabilities is not None:
        entropy, smallest = class_coverage(gen_probabilities)
        real_entropy, real_smallest = class_coverage(real_probabilities[first])
        result.update({
            "classifier_score": classifier_score(gen_probabilities),
            "class_entropy": entropy, "min_class_share": smallest,
            "real_classifier_score": classifier_score(real_probabilities[first]),
            "real_class_entropy": real_entropy, "real_min_class_share": real_smallest,
            "num_classes": int(gen_probabilities.shape[1])})
    return result


def class_agreement(probabilities, labels, num_classes):
    """A conditional generator's images against the classes they were asked for: how often the
    classifier reads the class asked for, over all of them and within each class (None for a
    class none was asked for)."""
    read = np.argmax(probabilities, axis=1) == np.asarray(labels)
    by_class = [float(read[labels == label].mean()) if np.any(labels == label) else None
                for label in range(num_classes)]
    return {"class_agreement": float(read.mean()), "class_agreement_by_class": by_class}


def format_agreement(result, names):
    """'the classifier reads the class asked for in 93.1% of the images (0 98.0%, 1 96.5%, ...)'"""
    parts = ", ".join(f"{name} {100 * rate:.1f}%" for name, rate in
                      zip(names, result["class_agreement_by_class"]) if rate is not None)
    return (f"the classifier reads the class asked for in {100 * result['class_agreement']:.1f}% "
            f"of the images ({parts})")


def selection_metric(num_real):
    """The result's key the best checkpoint is chosen by (lower is better): see
    BEST_BY_FRECHET_FROM."""
    return "kid" if num_real < BEST_BY_FRECHET_FROM else "frechet_distance"


def real_rows(count, num, seed=0):
    """The indices of `num` of `count` real images drawn without replacement (all of them if
    there are fewer); the first n of a larger draw are the draw of n."""
    return np.random.default_rng([seed, 3]).permutation(count)[:num]


def real_images(dataset, num, seed=0):
    """num real images drawn without replacement (all of them if the dataset is smaller)."""
    return dataset.images[real_rows(len(dataset.images), num, seed)]


def format_kid(result):
    """'KID 0.0123 (sd 0.0011 over 100 subsets of 1,000)', or '' for a result saved before KID;
    with both sets of one subset's size: 'KID 0.0123 (one subset: both sets whole, so no sd)'."""
    if "kid" not in result:
        return ""
    sizes = [result.get(key) for key in ("num_generated", "num_real", "kid_subset_size")]
    if None not in sizes and kid.one_subset(*sizes):
        return f"KID {result['kid']:.4f} (one subset: both sets whole, so no sd)"
    return (f"KID {result['kid']:.4f} (sd {result['kid_std']:.4f} over "
            f"{result.get('kid_subsets', kid.NUM_SUBSETS)} subsets of "
            f"{result.get('kid_subset_size', kid.SUBSET_SIZE):,})")


def format_quality(result):
    size, scored = result.get("image_size", data.IMAGE_SIZE), result.get("scored_size",
                                                                         data.IMAGE_SIZE)
    resized = "" if size == scored else (
        f" (scored at {scored}x{scored}: the features' size; the generated and the real "
        f"{size}x{size} images both resized to it with the same Lanczos filter)")
    space = f" in the features of {result['feature_space']}" if "feature_space" in result else ""
    distances = (f"Frechet distance {result['frechet_distance']:.3f} (real halves "
                 f"{result['real_frechet_distance']:.3f})" + (", " + format_kid(result)
                                                              if "kid" in result else ""))
    if "classifier_score" not in result:  # a feature space without classes
        return distances + space + resized
    classes = result.get("num_classes", data.NUM_CLASSES)  # results saved before it was recorded
    return (f"classifier score {result['classifier_score']:.3f} of at most {classes} (real "
            f"{result['real_classifier_score']:.3f}), {distances}, class entropy "
            f"{result['class_entropy']:.3f} (real {result['real_class_entropy']:.3f}), smallest "
            f"class share {result['min_class_share']:.3f} (real "
            f"{result['real_min_class_share']:.3f})" + space + resized)
