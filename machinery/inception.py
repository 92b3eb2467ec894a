"""The papers' FID: Inception pool_3 features as TTUR's reference code (bioinf-jku/TTUR, fid.py)
computes them, and the file they come from.

The graph is classify_image_graph_def.pb from inception-2015-12-05.tgz, a frozen GraphDef made
to classify one JPEG: DecodeJpeg -> Cast -> ExpandDims ([1, ?, ?, 3]) -> ResizeBilinear (to
299 x 299) -> Sub 128 -> Mul 1/128 -> ... -> pool_3 ([1, 1, 1, 2048]) -> softmax. TTUR feeds RGB
pixel values 0..255 of a batch [N, H, W, 3] into 'ExpandDims:0' -- the resize to 299 happens
inside the graph -- and reads 'pool_3:0'. Every static shape after ExpandDims says batch 1; TTUR
overwrites private cached shapes to feed N images. Here the graph is imported with an input_map
from 'ExpandDims:0' to a [None, None, None, 3] placeholder instead (public API only), after the
'_output_shapes' hints are dropped (a hint of batch 1 would survive the map): the ops computed
on the pixels are TTUR's, so the features are too (tests/test_inception.py compares them on a
stand-in graph). The 2015 file holds BatchNormWithGlobalNormalization, which TensorFlow still
runs in GraphDefs of producer version below 9, as this one is.

The file: no publisher gives a checksum of the archive or of the graph. graph_in_data_dir fetches
the archive once into <data-dir>/inception/, checks its known size (88,931,400 bytes), extracts
the graph, checks its size (95,673,916 bytes) and its interface (the nodes and the 2,048 features
above), and records the MD5 of both in md5.json: every later use is checked against the MD5
recorded then (and prints it, to compare with another machine's).
"""
import hashlib
import json
import os
import tarfile

import numpy as np
import tensorflow as tf
from google.protobuf import message

from machinery import downloads, durable

tf1 = tf.compat.v1

ARCHIVE = "inception-2015-12-05.tgz"
ARCHIVE_URL = "http://download.tensorflow.org/models/image/imagenet/"
ARCHIVE_BYTES = 88_931_400
GRAPH_FILE = "classify_image_graph_def.pb"
GRAPH_BYTES = 95_673_916
RECORD_FILE = "md5.json"
INPUT_NODE, INPUT_TENSOR = "ExpandDims", "ExpandDims:0"
FEATURE_NODE, FEATURE_TENSOR = "pool_3", "pool_3:0"
FEATURE_SIZE = 2048
BATCH_SIZE = 50  # TTUR's get_activations default
MAX_PIXEL = 255.0
VERSION = "inception-2015-12-05"
_GZIP_MAGIC = b"\x1f\x8b"
WHERE = (f"download {ARCHIVE_URL}{ARCHIVE} ({ARCHIVE_BYTES:,} bytes) and extract {GRAPH_FILE} "
         f"from it (tar -xzf)")


class InceptionGraphError(ValueError):
    """The graph file is missing, damaged or not TTUR's Inception graph (a one-line message)."""


def load_graph_def(path, expected_md5=None):
    """Reads and checks a frozen Inception GraphDef.

    Args:
      path: the .pb file (classify_image_graph_def.pb).
      expected_md5: hex MD5 the file must have, or None not to check.

    Returns:
      (the tf1.GraphDef, the file's MD5).

    Raises:
      InceptionGraphError: no such file, a gzip archive, not a GraphDef (random, truncated),
        another MD5, or no float ExpandDims / no pool_3 node.
    """
    try:
        with open(path, "rb") as handle:
            contents = handle.read()
    except OSError as error:
        raise InceptionGraphError(f"cannot read the Inception graph {path} ({error.strerror}): "
                                  f"{WHERE}, or use --download-inception") from None
    if contents.startswith(_GZIP_MAGIC):
        raise InceptionGraphError(f"{path} is a gzip archive, not a GraphDef: extract "
                                  f"{GRAPH_FILE} from it (tar -xzf)")
    actual = hashlib.md5(contents).hexdigest()
    if expected_md5 is not None and actual != expected_md5.lower():
        raise InceptionGraphError(f"{path} has MD5 {actual}, not the {expected_md5} recorded "
                                  f"when it was downloaded ({len(contents):,} bytes; the real "
                                  f"file has {GRAPH_BYTES:,}): delete it to download it again")
    graph_def = tf1.GraphDef()
    try:
        graph_def.ParseFromString(contents)
    except message.DecodeError:
        raise InceptionGraphError(f"{path} is not a TensorFlow GraphDef ({len(contents)} bytes "
                                  f"that do not parse: a truncated download or another file)"
                                  ) from None
    check_graph_def(graph_def, path)
    return graph_def, actual


def check_graph_def(graph_def, source="the GraphDef"):
    """Raises InceptionGraphError unless graph_def has TTUR's input and feature nodes.

    Args:
      graph_def: a tf1.GraphDef.
      source: how to name it in the message (its path).
    """
    nodes = {node.name: node for node in graph_def.node}
    missing = [name for name in (INPUT_NODE, FEATURE_NODE) if name not in nodes]
    if missing:
        raise InceptionGraphError(
            f"{source} has no {' and no '.join(repr(name) for name in missing)} node "
            f"({len(nodes)} nodes): not the Inception graph of {ARCHIVE}, or a truncated copy")
    expand = nodes[INPUT_NODE]
    if expand.op != "ExpandDims" or expand.attr["T"].type != tf.float32.as_datatype_enum:
        raise InceptionGraphError(f"{source}: node {INPUT_NODE!r} is a {expand.op} of "
                                  f"{tf.dtypes.as_dtype(expand.attr['T'].type).name}, "
                                  f"expected an ExpandDims of float32")


class InceptionFeatures:
    """pool_3 features of images, in a tf.Graph and tf1.Session of its own.

    Usage:
      with InceptionFeatures("classify_image_graph_def.pb") as inception:
          features = inception.features(images)   # [N, 2048] float64
    """

    def __init__(self, path, batch_size=BATCH_SIZE, expected_md5=None,
                 session_config=None):
        """Loads the graph and opens its session.

        Args:
          path: classify_image_graph_def.pb.
          batch_size: images per session run (memory grows with it: 299 x 299 activations).
          expected_md5: the file's MD5 to insist on, or None.
          session_config: a tf1.ConfigProto (threads, devices), or None.

        Raises:
          InceptionGraphError: see load_graph_def; or the graph does not import, or its pool_3
            is not [N, 1, 1, 2048].
          ValueError: batch_size below 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        graph_def, self.md5 = load_graph_def(path, expected_md5)
        self.path = path
        self.name = f"Inception ({GRAPH_FILE} of {ARCHIVE}, pool_3, {FEATURE_SIZE:,} features)"
        self.key = f"{VERSION}-{self.md5[:10]}"
        for node in graph_def.node:
            if "_output_shapes" in node.attr:
                del node.attr["_output_shapes"]
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf1.placeholder(tf.float32, [None, None, None, 3], "images")
            try:
                (self.pool_3,) = tf1.import_graph_def(
                    graph_def, input_map={INPUT_TENSOR: self.images},
                    return_elements=[FEATURE_TENSOR], name="inception")
            except (ValueError, tf.errors.OpError) as error:
                raise InceptionGraphError(f"{path} does not import into TensorFlow "
                                          f"{tf.__version__}: {_first_line(error)}") from None
        if not self.pool_3.shape.is_compatible_with([None, 1, 1, FEATURE_SIZE]):
            raise InceptionGraphError(f"{path}: {FEATURE_TENSOR} has shape {self.pool_3.shape}, "
                                      f"expected [N, 1, 1, {FEATURE_SIZE}]")
        self.graph.finalize()
        self.session = tf1.Session(graph=self.graph, config=session_config)

    def features(self, images):
        """pool_3 features of images, batch by batch.

        Args:
          images: [N, H, W, 3] RGB, [N, H, W, 1] or [N, H, W] gray (repeated to 3 channels);
            uint8 or float pixel values in 0..255 (not [0, 1] or [-1, 1]: TTUR feeds raw
            values and the graph itself maps 0..255 to [-1, 1]). Any H and W: the graph
            resizes to 299 x 299.

        Returns:
          float64 array [N, 2048] (float64 as TTUR's activations, for the covariances).

        Raises:
          ValueError: another shape or channel count, or values outside 0..255.
          InceptionGraphError: pool_3 produced another shape.
        """
        images = _as_image_batch(images)
        result = np.empty((len(images), FEATURE_SIZE))
        for start in range(0, len(images), self.batch_size):
            batch = _pixels(images[start:start + self.batch_size], start)
            pooled = self.session.run(self.pool_3, {self.images: batch})
            if pooled.shape != (len(batch), 1, 1, FEATURE_SIZE):
                raise InceptionGraphError(f"{FEATURE_TENSOR} gave shape {pooled.shape} for "
                                          f"{len(batch)} images, expected "
                                          f"({len(batch)}, 1, 1, {FEATURE_SIZE})")
            result[start:start + len(batch)] = pooled.reshape(len(batch), FEATURE_SIZE)
        return result

    def predict(self, images):
        """The feature spaces' interface (feature_spaces.py): (None, float32 features)."""
        return None, self.features(images).astype(np.float32)

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _as_image_batch(images):
    """images as an array [N, H, W, C] with C 1 or 3, not yet converted or copied."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, 3] RGB, or [N, H, W, 1] or [N, H, W] gray; "
                         f"got shape {images.shape} (RGBA: drop or composite the alpha first)")
    if min(images.shape[1:3]) < 1:
        raise ValueError(f"images have no pixels: shape {images.shape}")
    if images.dtype.kind not in "uif":
        raise ValueError(f"images must be integer or float pixel values, got {images.dtype}")
    return images


def _pixels(batch, first_index):
    """One batch as float32 RGB 0..255, gray repeated to three channels."""
    batch = batch.astype(np.float32)
    low, high = float(batch.min()), float(batch.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0.0 or high > MAX_PIXEL:
        raise ValueError(f"images {first_index}..{first_index + len(batch) - 1} have values in "
                         f"[{low:g}, {high:g}]; Inception takes pixel values 0..255 (scale "
                         f"[-1, 1] images by (x + 1) * 127.5)")
    if batch.shape[-1] == 1:
        batch = np.repeat(batch, 3, axis=-1)
    return batch


def _first_line(error):
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- The file, fetched once into the data folder ----------------------------------------------
def graph_in_data_dir(data_dir, download=True, log=print):
    """The path of the Inception graph kept under <data_dir>/inception/ and the MD5 recorded when
    it was fetched (see the module), downloading and extracting the archive once if missing.

    Raises:
      InceptionGraphError: missing with downloading off, a failed download, an archive or a
        graph of another size, a graph without the interface, or a recorded MD5 that no longer
        matches; one line that says where to get the file.
    """
    folder = os.path.join(data_dir, "inception")
    graph, record_path = os.path.join(folder, GRAPH_FILE), os.path.join(folder, RECORD_FILE)
    if os.path.exists(graph):
        try:
            with open(record_path, encoding="utf-8") as handle:
                return graph, json.load(handle)["graph_md5"]
        except (OSError, ValueError, KeyError, TypeError):
            return graph, None  # placed by hand: its interface is checked as it loads
    if not download:
        raise InceptionGraphError(f"{graph} not found and downloading is off: {WHERE} into "
                                  f"{folder}, or pass its path as --inception-graph")
    archive = os.path.join(folder, ARCHIVE)
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.path.exists(archive):
            log(f"downloading {ARCHIVE_URL}{ARCHIVE} ({ARCHIVE_BYTES:,} bytes) into {folder}")
            downloads.download_file(ARCHIVE_URL + ARCHIVE, archive)
    except (OSError, downloads.DownloadError) as error:
        raise InceptionGraphError(f"cannot fetch the Inception graph ({error}): {WHERE} into "
                                  f"{folder}, or pass its path as --inception-graph") from None
    if os.path.getsize(archive) != ARCHIVE_BYTES:
        raise InceptionGraphError(f"{archive} has {os.path.getsize(archive):,} bytes, not "
                                  f"{ARCHIVE_BYTES:,}: not the published archive; delete it to "
                                  f"download it again")
    _extract(archive, graph)
    md5s = {"archive_md5": downloads.md5sum(archive), "graph_md5": downloads.md5sum(graph)}
    durable.write_json(record_path, md5s)
    log(f"extracted {graph}; no publisher gives its checksum, so its size and interface were "
        f"checked and its MD5 recorded in {record_path} for every later use: archive "
        f"{md5s['archive_md5']}, graph {md5s['graph_md5']}")
    return graph, md5s["graph_md5"]


def _extract(archive, graph):
    """Writes the archive's GRAPH_FILE to `graph` atomically, after checking its size and its
    interface (load_graph_def)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = next((item for item in tar if os.path.basename(item.name) == GRAPH_FILE
                           and item.isfile()), None)
            if member is None or member.size != GRAPH_BYTES:
                found = f"{member.size:,} bytes" if member else "no such member"
                raise InceptionGraphError(f"{archive} holds no {GRAPH_FILE} of {GRAPH_BYTES:,} "
                                          f"bytes ({found}); delete it to download it again")
            contents = tar.extractfile(member).read()
    except (OSError, EOFError, tarfile.TarError) as error:
        raise InceptionGraphError(f"{archive} cannot be read as a gzip tar archive ({error}); "
                                  f"delete it to download it again") from None
    temporary = durable.temporary_path(os.path.dirname(os.path.abspath(graph)))
    try:
        with open(temporary, "wb") as handle:
            handle.write(contents)
        load_graph_def(temporary)
        durable.move_into_place(temporary, graph)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
