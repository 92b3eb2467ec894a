"""The features of a dataset's real images, computed once per dataset and feature space and kept
on disk, so that scoring a run again, or every --eval-every, does not compute them again.

A folder's are kept beside its image cache (image_folder.cache_folder), one file per folder
fingerprint and feature space, `features-<fingerprint>-<space key>.npz`: a changed folder has
another fingerprint, so its old features are never used. A named dataset's live under
<data-dir>/features/<name>-<splits>-<size>px/. Each file holds the rows computed so far (sorted
dataset indices), their features and, for a classifier, their class probabilities; a request for
other rows computes only those, and the file is rewritten with all of them, atomically
(durable.atomic_write): a kill or a full disk leaves the previous file whole. A file that cannot
be read is said and computed again; one that cannot be written is said, and the features are
used all the same.
"""
import os
import zipfile

import numpy as np

import data
from machinery import durable, image_folder, image_rows

FORMAT_VERSION = 1
COMPUTE_CHUNK = 4096  # rows read, resized and scored at a time: a folder may be larger than RAM


def location(dataset, root, data_dir, splits=None):
    """The folder a dataset's feature files live in (see the module)."""
    if dataset.name == data.FOLDER:
        return image_folder.cache_folder(root, os.path.join(data_dir, data.FOLDER_CACHES))
    splits = "+".join(splits or data.DEFAULT_SPLITS[dataset.name])
    return os.path.join(data_dir, "features",
                        f"{dataset.name}-{splits}-{dataset.images.shape[1]}px")


def cache_path(dataset, root, data_dir, space_key, splits=None):
    """The feature file of a dataset and a feature space."""
    fingerprint = f"{dataset.fingerprint}-" if dataset.fingerprint else ""
    return os.path.join(location(dataset, root, data_dir, splits),
                        f"features-{fingerprint}{space_key}.npz")


def _read(path, log):
    """(rows, features, probabilities or None) of the file, or None when there is none or it
    cannot be used (said)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["version"]) != FORMAT_VERSION:
                return None
            rows, features = stored["rows"], stored["features"]
            probabilities = stored["probabilities"] if stored["probabilities"].size else None
        if features.ndim != 2 or len(features) != len(rows) or (
                probabilities is not None and len(probabilities) != len(rows)) or \
                np.any(np.diff(rows) <= 0):
            raise ValueError("its arrays do not fit together")
        return rows, features, probabilities
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        log(f"the feature cache {path} cannot be read ({type(error).__name__}: {error}); "
            f"computing its features again")
        return None


def _write(path, rows, features, probabilities, log):
    def write(handle):
        np.savez(handle, version=FORMAT_VERSION, rows=rows, features=features,
                 probabilities=np.zeros(0, np.float32) if probabilities is None
                 else probabilities)

    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        durable.atomic_write(path, write)
    except OSError as error:
        log(f"warning: cannot keep the features in {path} ({error.strerror or error}); they "
            f"are used all the same, and computed again next time")


def real_outputs(path, images, rows, predict, log=print, size=data.IMAGE_SIZE):
    """predict(the images of `rows` of `images`, resized to `size`, None: as they are) --
    (probabilities or None, features) -- with the rows the file at `path` holds read from it and
    only the others computed (then all kept in it). `images` may be a memory-mapped folder
    cache: the rows are read a chunk at a time."""
    rows = np.asarray(rows, np.int64)
    stored = _read(path, log)
    known_rows = stored[0] if stored else np.zeros(0, np.int64)
    missing = np.setdiff1d(rows, known_rows)
    if len(missing):
        computed = [predict(image_rows.read_rows(images, missing[start:start + COMPUTE_CHUNK],
                                                 size))
                    for start in range(0, len(missing), COMPUTE_CHUNK)]
        new_features = np.concatenate([features for _, features in computed])
        new_probabilities = None if computed[0][0] is None else \
            np.concatenate([probabilities for probabilities, _ in computed])
        if stored:
            order = np.argsort(np.concatenate([known_rows, missing]), kind="stable")
            known_rows = np.concatenate([known_rows, missing])[order]
            features = np.concatenate([stored[1], new_features])[order]
            probabilities = None if new_probabilities is None or stored[2] is None else \
                np.concatenate([stored[2], new_probabilities])[order]
        else:
            known_rows, features, probabilities = missing, new_features, new_probabilities
        stored = (known_rows, features, probabilities)
        _write(path, *stored, log)
    positions = np.searchsorted(stored[0], rows)
    return (None if stored[2] is None else stored[2][positions]), stored[1][positions]
