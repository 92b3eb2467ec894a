"""Generated images nearer a training image than real images are: a check for near copies.

A generator that memorises reproduces training images, or near copies of them. In a feature
space, a generated image's distance to its nearest training image says how close it came; the
same distance for real images the training set does not hold says how close a genuinely new image
comes. A run trains on every image it has (a folder, mnist-sample), so the real images are held
out in turn: each is measured against the other training images (leave-one-out), which, the
images being independent draws, is a real image the reference set never saw. Those distances are
the null: the threshold is their `percentile`-th percentile (5 by default), so a generator whose
samples are new draws has about that share of them below it, and a clear excess points at copies
(the comparison behind Meehan et al. 2020's data-copying test, reduced to one tail).

The threshold is the r-th smallest held-out distance, r = floor(percentile / 100 (n_h + 1)). For
new draws the count below it is beta-binomial(n_g, r, n_h - r + 1) -- the threshold is itself
estimated from n_h images -- which gives the p-value. Distances are computed a block at a time
(chunk_rows x chunk_columns), never as a whole matrix.
"""
import dataclasses

import numpy as np
import scipy.stats

PERCENTILE = 5.0
NUM_PAIRS = 10
CHUNK_ROWS, CHUNK_COLUMNS = 1024, 4096
# Below this many held-out images the 5th percentile is one of the few smallest distances: too
# noisy a threshold to judge a rate by.
MIN_HELDOUT = 20


@dataclasses.dataclass
class NearCopies:
    """What near_copies found: the threshold (a held-out distance), the percentile and the rate
    expected of new samples (r / (n_h + 1)); how many generated images fell below it, of how
    many, against how many expected, and the p-value of that many or more; the closest pairs,
    (generated index, training index, distance), nearest first."""
    threshold: float
    percentile: float
    expected_rate: float
    num_flagged: int
    num_generated: int
    num_heldout: int
    expected_flagged: float
    p_value: float
    closest_pairs: list


def nearest_neighbours(queries, references, exclude=None, chunk_rows=CHUNK_ROWS,
                       chunk_columns=CHUNK_COLUMNS):
    """The Euclidean distance from each query to its nearest reference, and that reference's
    index; with `exclude`, query i never matches reference exclude[i] (itself, held out).

    Squared distances come from |q|^2 - 2 q.r + |r|^2 a block at a time; the winner's distance
    is then computed as |q - r| directly, since the expansion cancels badly for the nearly
    identical pairs this module exists to find.

    Returns:
      (distances float64 [n], indices int64 [n]).
    """
    queries, references = _checked(queries, "queries"), _checked(references, "references")
    if queries.shape[1] != references.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} columns and references "
                         f"{references.shape[1]}: they must come from one feature extractor")
    reference_norms = np.concatenate([
        np.einsum("ij,ij->i", block, block) for block in (
            np.asarray(references[start:start + chunk_columns], np.float64)
            for start in range(0, len(references), chunk_columns))])
    best_squared = np.full(len(queries), np.inf)
    best_index = np.zeros(len(queries), np.int64)
    for row in range(0, len(queries), chunk_rows):
        query = np.asarray(queries[row:row + chunk_rows], np.float64)
        rows = slice(row, row + len(query))
        query_norms = np.einsum("ij,ij->i", query, query)
        for column in range(0, len(references), chunk_columns):
            block = np.asarray(references[column:column + chunk_columns], np.float64)
            squared = (query_norms[:, None] - 2.0 * query @ block.T
                       + reference_norms[None, column:column + len(block)])
            if exclude is not None:
                own = np.asarray(exclude[rows]) - column
                inside = (own >= 0) & (own < len(block))
                squared[np.flatnonzero(inside), own[inside]] = np.inf
            winner = np.argmin(squared, axis=1)
            winner_squared = squared[np.arange(len(query)), winner]
            better = winner_squared < best_squared[rows]
            best_squared[rows] = np.where(better, winner_squared, best_squared[rows])
            best_index[rows] = np.where(better, winner + column, best_index[rows])
    distances = np.empty(len(queries))
    for row in range(0, len(queries), chunk_rows):
        rows = slice(row, row + chunk_rows)
        difference = (np.asarray(queries[rows], np.float64)
                      - np.asarray(references[best_index[rows]], np.float64))
        distances[rows] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
    return distances, best_index


def near_copies(generated, training, num_heldout, percentile=PERCENTILE, num_pairs=NUM_PAIRS):
    """Counts generated images nearer a training image than most real images held out in turn
    (the first `num_heldout` training images, each against the others) are.

    Args:
      generated: features [n_g, d] of generated images.
      training: features [n_t, d] of the images the generator trained on (n_t >= 2).
      num_heldout: how many of them are held out in turn, at least MIN_HELDOUT.

    Raises:
      ValueError: bad shapes or values, a percentile outside (0, 100), too few held out.
    """
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    if not MIN_HELDOUT <= num_heldout <= len(training) or len(training) < 2:
        raise ValueError(f"{num_heldout} held-out images of {len(training)} are too few for a "
                         f"percentile threshold; at least {MIN_HELDOUT} are needed")
    heldout, _ = nearest_neighbours(training[:num_heldout], training,
                                    exclude=np.arange(num_heldout))
    distances, nearest = nearest_neighbours(generated, training)
    rank = max(1, int(np.floor(percentile / 100.0 * (num_heldout + 1))))
    threshold = float(np.sort(heldout)[rank - 1])
    order = np.argsort(distances, kind="stable")
    flagged = int(np.sum(distances < threshold))
    null = scipy.stats.betabinom(len(distances), rank, num_heldout - rank + 1)
    return NearCopies(
        threshold=threshold, percentile=float(percentile),
        expected_rate=rank / (num_heldout + 1), num_flagged=flagged,
        num_generated=len(distances), num_heldout=num_heldout,
        expected_flagged=len(distances) * rank / (num_heldout + 1),
        p_value=float(null.sf(flagged - 1)),
        closest_pairs=[(int(g), int(nearest[g]), float(distances[g])) for g in order[:num_pairs]])


def describe(found, picture=None):
    """The line evaluate.py prints."""
    share = found.num_flagged / found.num_generated
    where = f"; the {len(found.closest_pairs)} closest pairs: {picture}" if picture else ""
    return (f"near copies: {found.num_flagged:,} of {found.num_generated:,} samples "
            f"({100 * share:.1f}%) are nearer a training image than "
            f"{100 - found.percentile:g}% of {found.num_heldout:,} real images held out in turn "
            f"are (new images: {100 * found.expected_rate:.1f}%, "
            f"{found.expected_flagged:,.0f}; p = {found.p_value:.3g}){where}")


def _checked(features, name):
    """The features (not copied), after checking their shape and values."""
    if not hasattr(features, "shape"):
        features = np.asarray(features)
    if len(features.shape) != 2 or features.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [n, d], "
                         f"got shape {tuple(features.shape)}")
    for start in range(0, features.shape[0], 8192):
        if not np.isfinite(features[start:start + 8192]).all():
            raise ValueError(f"{name} has NaN or infinite values (rows {start} onwards)")
    return features
