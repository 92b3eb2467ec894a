"""Puts the project root on sys.path so tests import the modules as a user's script does;
registers the `slow` marker; fixtures shared by several test files (plain helpers: helpers.py).

Two tiers: `python -m pytest -m "not slow" tests` runs each module's contract (shapes, parameter
counts, losses, update isolation, flag bounds, file formats, run-directory rules) in under two
minutes on 2 cores; the `slow` tier holds what needs real training steps, a subprocess running a
command or TensorFlow, several workers, or the byte-identical training fixture."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("TF_CONFIG", None)  # a test that wants one sets it itself


def pytest_configure(config):
    """Registers the `slow` marker. Splits the CPU into TEST_CPU_DEVICES logical devices and
    starts TensorFlow's runtime with them (they cannot change afterwards). One-device graphs are
    placed on CPU:0 as before. TensorFlow is imported as the entry points import it, its start-up
    lines filtered (so helpers.py, which imports it, is imported only after that)."""
    config.addinivalue_line(
        "markers", "slow: real training steps, a subprocess running a command or TensorFlow, "
        "several workers, or the byte-identical training fixture (deselect: -m \"not slow\")")
    from machinery import quiet_start

    tf = quiet_start.import_tensorflow()
    from helpers import TEST_CPU_DEVICES

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * TEST_CPU_DEVICES)
    # Start the runtime now, so every test finds these devices whatever ran before it: a run that
    # asks for more (--devices 4) is refused, instead of splitting the CPU anew when it happens to
    # be the first to start the runtime (as in a tier or a single file).
    assert len(tf.config.list_logical_devices("CPU")) == TEST_CPU_DEVICES


@pytest.fixture
def graph():
    """A fresh default graph with a fixed graph-level seed, for tests that build graph pieces."""
    import tensorflow as tf

    with tf.Graph().as_default() as g:
        tf.compat.v1.set_random_seed(1)
        yield g


@pytest.fixture
def umask():
    """The process's umask, read independently of data.py's DEFAULT_FILE_MODE."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """64 SVHN-format images (train 40 + test 24): 4 batches of 16 per epoch."""
    from helpers import write_svhn

    folder = tmp_path_factory.mktemp("data")
    write_svhn(str(folder / "svhn" / "train_32x32.mat"), 40, seed=1)
    write_svhn(str(folder / "svhn" / "test_32x32.mat"), 24, seed=2)
    return str(folder)


@pytest.fixture(scope="session")
def two_epochs(data_dir, tmp_path_factory):
    """A run of two epochs on data_dir: checkpoints model-4 and model-8, metrics for steps 1..8."""
    import train
    from helpers import train_args

    run = tmp_path_factory.mktemp("base") / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "2")) == 0
    return run


@pytest.fixture
def run(two_epochs, tmp_path):
    """A copy of two_epochs' run directory, for a test to damage or train on."""
    copy = tmp_path / "run"
    shutil.copytree(two_epochs, copy)
    return copy


@pytest.fixture
def quick_classifier(monkeypatch):
    """A folder classifier of 40 Adam steps: enough for these easy classes, and quick."""
    from machinery import classifiers

    monkeypatch.setattr(classifiers, "FOLDER_CLASSIFIER_STEPS", 40)
