"""What several test files share, as plain functions and constants (the fixtures are in
conftest.py): train.py's command line in the tests, what a run directory holds, the data files in
their published formats, folders of pictures, the network sizes counted by hand, and the small
graphs trained on one device and on several."""
import csv
import gzip
import hashlib
import http.server
import importlib
import io
import os
import resource
import signal
import struct
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

import data
from machinery import (checkpoints, metrics, run_directory, sessions, strategies,
                       training_step)

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
# metrics.csv and config.json as the first version (538f904) and the last before the marker
# (cb75821, with --eval-every 1 and a resume) wrote them, by running those versions' train.py on
# this suite's 64-image SVHN data with --batch-size 16.
FIRST_METRICS = os.path.join(FIXTURES, "metrics_538f904.csv")
FIRST_CONFIG = os.path.join(FIXTURES, "config_538f904.json")
QUALITY_METRICS = os.path.join(FIXTURES, "metrics_cb75821.csv")
# The first 12 rows of the metrics.csv 016da8e's train.py wrote (health columns, no KID) in a run
# of docs/augmentation.md: 500 digits, batch 64, --augment translation,cutout,color --augment-p 1.
HEALTH_METRICS = os.path.join(FIXTURES, "metrics_016da8e.csv")
TEST_CPU_DEVICES = 2  # logical CPU devices in the test process, for --devices 2 (tf.distribute)


# --- The commands in the tests -------------------------------------------------------------------
ENTRY_POINTS = ("train", "generate", "evaluate", "features", "bench", "export")
REQUIRED = {"export": ["--out", "y"]}  # flags a command needs besides --run
TRAIN_BATCH = 16  # the batch of train_args: conftest.py's 64 images are 4 steps an epoch


def train_args(data_dir, out, *extra):
    """train.py's flags for a run on SVHN-format files in data_dir, offline."""
    return ["--dataset", "svhn", "--data-dir", data_dir, "--skip-checksum", "--no-download",
            "--batch-size", str(TRAIN_BATCH), "--out", str(out), "--log-every", "1", *extra]


def start_training(data_dir, run, *extra, preexec_fn=None):
    """train.py with train_args, as a process of its own."""
    command = [sys.executable, os.path.join(ROOT, "train.py"), *train_args(data_dir, run, *extra)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn)


def run_python(args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


# --- What a run directory holds ------------------------------------------------------------------
def checkpoint_values(run_dir):
    """{variable name: value} of the newest checkpoint TensorFlow's state file names."""
    reader = tf.train.load_checkpoint(
        tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def checkpoint_steps(run):
    """The steps of the run's checkpoints, newest first, as checkpoints.listed finds them."""
    return [checkpoints.checkpoint_step(prefix)
            for prefix in checkpoints.listed(run_directory.RunDir(str(run)).checkpoint_dir)]


def csv_steps(run_dir):
    """The step of every row of metrics.csv, read with the csv module."""
    with open(os.path.join(run_dir, "metrics.csv")) as handle:
        return [int(float(row["step"])) for row in csv.DictReader(handle)]


def metric_steps(run):
    """The steps of metrics.csv's loss rows, as metrics.read_metrics reads them."""
    return [int(row["step"])
            for row in metrics.read_metrics(run_directory.RunDir(str(run)).metrics_path)
            if "d_loss" in row]


def snapshot(folder, skip=()):
    """{relative path: sha256} of every file under folder except those named in skip."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            relative = os.path.relpath(path, folder)
            if relative not in skip and name != ".lock":
                with open(path, "rb") as handle:
                    found[relative] = hashlib.sha256(handle.read()).hexdigest()
    return found


def assert_intact(before, folder):
    """Every file of the `before` snapshot is still in folder, byte for byte."""
    after = snapshot(folder)
    assert {path: after.get(path) for path in before} == before


def one_error_line(stderr):
    """The single 'error: ...' line of a failed command (and no traceback)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def only_error_line(err):
    """All of err, which must be one line, 'error: ...'."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def refusal(entry_point, argv, capsys):
    """The error line of a parse that must fail with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(entry_point).parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    return lines[0]


# --- Data files in the published formats ---------------------------------------------------------
def write_svhn(path, count, seed=0, labels=None):
    """SVHN's .mat: X (32, 32, 3, N) uint8 and y (N, 1), where 10 means the digit 0."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
    if labels is None:
        labels = (np.arange(count) % 10 + 1).reshape(-1, 1)  # 1..10, 10 = digit 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {"X": images, "y": labels.astype(np.uint8)})
    return images, labels


def idx_bytes(array, magic):
    """An IDX file: big-endian header of the magic number and the sizes, then the bytes."""
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + \
        array.astype(np.uint8).tobytes()


def write_gzip(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(payload)


def write_mnist_split(folder, split, count, seed=0):
    """MNIST's gzipped IDX files of one split: magic 2051 (images), 2049 (labels)."""
    (image_file, _), (label_file, _) = data.MNIST_FILES[split]
    rng = np.random.default_rng(seed)
    digits = rng.integers(1, 256, (count, 28, 28), dtype=np.uint8)
    labels = np.arange(count) % 10
    write_gzip(os.path.join(folder, image_file), idx_bytes(digits, 2051))
    write_gzip(os.path.join(folder, label_file), idx_bytes(labels, 2049))
    return digits, labels


# --- CIFAR-10's binary version -------------------------------------------------------------------
CIFAR10_MEMBER_DIR = "cifar-10-batches-bin"


def records(images, labels):
    """The published layout: per image its label, then red, green and blue planes, row-major."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1).tobytes()


def add_member(archive, name, payload, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.type = len(payload), kind
    archive.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)


def write_cifar10(path, per_batch=3, seed=0, skip=(), extra=()):
    """The archive with 5 training batches and a test batch of `per_batch` images each (the real
    one has 10,000), its meta and readme files, minus `skip`, plus `extra` (name, payload)
    members; returns {member: (images, labels)}."""
    rng = np.random.default_rng(seed)
    written = {}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        add_member(archive, f"{CIFAR10_MEMBER_DIR}/batches.meta.txt", b"airplane\nautomobile\n")
        for member in data.CIFAR10_MEMBERS["train"] + data.CIFAR10_MEMBERS["test"]:
            if member in skip:
                continue
            images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, 10, per_batch)
            add_member(archive, member, records(images, labels))
            written[member] = (images, labels)
        add_member(archive, f"{CIFAR10_MEMBER_DIR}/readme.html", b"<html></html>")
        for name, payload in extra:
            add_member(archive, name, payload)
    return written


def archive_path(root):
    return os.path.join(str(root), "cifar10", data.CIFAR10_ARCHIVE[0])


# --- Folders of pictures, and images of two easy classes -----------------------------------------
CLASSES = ("bottom", "left", "top")  # sorted, so labels 0, 1, 2


def write_folder(root, per_class=10, classes=CLASSES, flat=False, blank=False):
    """Gray 20x20 PNGs over noise, brightened where the class says (its bottom, left or top
    half), each class in its sub-folder (or all in `root` when flat); `blank`: all black, so no
    classifier can tell the classes apart."""
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root if flat else os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for index in range(per_class):
            pixels = np.zeros((20, 20), np.uint8) if blank else \
                rng.integers(0, 60, (20, 20)).astype(np.uint8)
            if not blank:
                half = {"top": np.s_[:10], "bottom": np.s_[10:], "left": np.s_[:, :10]}[name]
                pixels[half] += 180
            Image.fromarray(pixels).save(os.path.join(folder, f"{name}{index:02d}.png"))


def quiet(message):
    pass


class CountedRows:
    """An image array whose row reads are recorded: what a memory-mapped cache is asked for."""

    def __init__(self, images):
        self.images, self.shape, self.reads = images, images.shape, []

    def __getitem__(self, rows):
        self.reads.append(np.asarray(rows).copy())
        return self.images[rows]


def easy_classes(count, seed):
    """Class 0: a bright top half; class 1: a bright bottom half; both with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = rng.integers(0, 60, (count, 32, 32, 1)).astype(np.uint8)
    for index, label in enumerate(labels):
        rows = slice(0, 16) if label == 0 else slice(16, 32)
        images[index, rows] += 180
    return images, labels


# --- Graphs --------------------------------------------------------------------------------------
def session(graph):
    return tf1.Session(graph=graph, config=sessions.session_config())


def values_by_name(sess):
    return {v.op.name: value for v, value in
            zip(tf1.global_variables(), sess.run(tf1.global_variables()))}


# The networks, written out by hand from the rule: G from 4x4, its last hidden layer 128
# filters, doubling towards z, at most 1,024; D from 64 filters, doubling, down to 4x4.
G_WIDTHS = {16: (256, 128), 32: (512, 256, 128), 64: (1024, 512, 256, 128),
            128: (1024, 1024, 512, 256, 128)}
D_WIDTHS = {16: (64, 128), 32: (64, 128, 256), 64: (64, 128, 256, 512),
            128: (64, 128, 256, 512, 1024)}


def generator_parameters(widths, channels, z_dim=100):
    """dense z -> 4x4xw0 (no bias), a gamma and beta per batch norm, 5x5 transposed kernels
    (no bias before a batch norm), the output layer's bias."""
    count = z_dim * 4 * 4 * widths[0] + 2 * widths[0]
    for c_in, c_out in zip(widths, widths[1:]):
        count += 25 * c_in * c_out + 2 * c_out
    return count + 25 * widths[-1] * channels + channels


def discriminator_parameters(widths, channels):
    """The first conv with a bias and no batch norm, the others with batch norm, the dense
    logit from 4x4 x the last width."""
    count = 25 * channels * widths[0] + widths[0]
    for c_in, c_out in zip(widths, widths[1:]):
        count += 25 * c_in * c_out + 2 * c_out
    return count + 4 * 4 * widths[-1] + 1


def trainable_count(scope):
    return sum(int(np.prod(v.shape.as_list())) for v in tf1.trainable_variables(scope + "/"))


# --- One device and several ----------------------------------------------------------------------
# The graphs train_steps builds (and tests/multi_worker_step.py): 16x16, one channel, batch 8.
REPLICA_SIZE, REPLICA_BATCH, Z_DIM = 16, 8, 100


def images(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (REPLICA_BATCH, REPLICA_SIZE,
                                                         REPLICA_SIZE, 1), dtype=np.uint8)


def train_steps(devices, steps=3, sync_batch_norm=False, g_steps=1, g_ema_decay=0.0):
    """Builds the model on `devices` replicas, trains `steps` steps on a fixed batch; returns
    ({variable: value}, {variable: [each replica's copy]}, [the logged losses of each step]) and
    the initial weights."""
    engine = strategies.make_engine(devices)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        model = training_step.build_model(1, strategy=engine.strategy,
                                          sync_batch_norm=sync_batch_norm,
                                          image_size=REPLICA_SIZE, g_steps=g_steps,
                                          g_ema_decay=g_ema_decay)
        config = sessions.session_config(cpu_devices=engine.cpu_devices)
        with tf1.Session(config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            if model.start_average is not None:
                sess.run(model.start_average)
            initial = {v.op.name: sess.run(v) for v in tf1.global_variables()}
            logged = [sess.run([model.train_step, model.d_loss, model.g_loss],
                               {model.real_images: images(),
                                model.z: sessions.step_z(0, step, REPLICA_BATCH, Z_DIM)})
                      for step in range(steps)]
            values = {v.op.name: sess.run(v) for v in tf1.global_variables()}
            copies = {v.op.name: sess.run(list(v.values)) for v in tf1.global_variables()
                      if hasattr(v, "values")}
    return values, copies, logged, initial


def relative_difference(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-12))


# Two replicas at B/2 with synchronized batch norm compute what one device computes at B, up to
# float32 round-off, which Adam then amplifies: its first step divides each gradient by its own
# size, so where a gradient is near zero a difference of 1e-6 moves the weight by a few percent
# of the learning rate, and the generator's gradient, taken after the discriminator's update,
# inherits that. Measured after one step (32x32, batch 16): D's Adam moments within 2e-6 of their
# largest value, G's within 4e-3 on an AMD EPYC (Zen 5) and within 3.5e-2 on an Intel Xeon
# (Emerald Rapids: its kernels round otherwise), and every weight within 11% of the learning rate
# (a handful of G's 3.3 million) but where a near-zero gradient's sign comes out the other way:
# that weight steps the other way, 200% of the learning rate. On that Xeon, from run to run,
# none to 0.05% of a G variable's weights did (1,699 of deconv2's 3.3 million). So at most a
# FLIPPED_WEIGHTS share of a variable's weights may differ by more than WEIGHT_STEPS: a batch of
# other rows moves 4% to 24% of every variable's weights the other way (16x16, one step). A
# missing 1/N doubles every first moment and quadruples every second one (a difference of 1 and
# 3: ten times the bound). After a few steps both runs, like any two float32 orders of summation,
# drift apart (two one-device runs with TensorFlow's and the rewritten convolutions: 30% in G's
# moments by step 4), so the comparison is of one step.
D_MOMENTS, G_MOMENTS, WEIGHT_STEPS, FLIPPED_WEIGHTS = 1e-5, 1e-1, 0.5, 1e-2
LEARNING_RATE = 2e-4  # hyperparameters.LEARNING_RATE


def assert_matches_one_device(one, two):
    assert set(one) == set(two)  # the same variables under the same names
    for name, value in one.items():
        if np.asarray(value).dtype.kind != "f" or name.startswith("run_state/"):
            continue
        if "adam" in name.rsplit("/", 1)[-1] and "/" in name:
            bound = D_MOMENTS if name.startswith("discriminator/") else G_MOMENTS
            assert relative_difference(value, two[name]) < bound, name
        elif "moving_" in name:
            assert relative_difference(value, two[name]) < 1e-4, name
        elif name.startswith(("discriminator/", "generator/", "g_ema/")):
            moved_otherwise = np.abs(value - two[name]) >= WEIGHT_STEPS * LEARNING_RATE
            assert moved_otherwise.mean() <= FLIPPED_WEIGHTS, (name, int(moved_otherwise.sum()))


class LocalServer:
    """A stand-in for the dataset hosts on 127.0.0.1: serves `files`, 404 for the rest."""

    def __init__(self, files):
        files_ = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files_.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def folder_run_args(tmp_path, folder="pictures", out="run", *extra):
    return ["--dataset", "folder", "--images", str(tmp_path / folder), "--data-dir",
            str(tmp_path / "data"), "--out", str(tmp_path / out), "--image-size", "16",
            "--batch-size", "8", "--sample-grid", "2", "--epochs", "1", *extra]


def limit_file_size(limit):
    """A subprocess preexec_fn: writes past `limit` bytes fail with EFBIG (a disk that fills)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply
