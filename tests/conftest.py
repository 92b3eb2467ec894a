"""Puts the project root on sys.path so tests import the modules as a user's script does;
fixtures shared by several test files."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("TF_CONFIG", None)  # a test that wants one sets it itself
TEST_CPU_DEVICES = 2  # logical CPU devices in the test process, for --devices 2 (tf.distribute)


def pytest_configure(config):
    """Splits the CPU into TEST_CPU_DEVICES logical devices before any test starts TensorFlow's
    runtime (it cannot change afterwards). One-device graphs are placed on CPU:0 as before.
    TensorFlow is imported as the entry points import it, its start-up lines filtered."""
    from machinery import quiet_start

    tf = quiet_start.import_tensorflow()

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * TEST_CPU_DEVICES)


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
    from test_data import write_svhn

    folder = tmp_path_factory.mktemp("data")
    write_svhn(str(folder / "svhn" / "train_32x32.mat"), 40, seed=1)
    write_svhn(str(folder / "svhn" / "test_32x32.mat"), 24, seed=2)
    return str(folder)


@pytest.fixture(scope="session")
def two_epochs(data_dir, tmp_path_factory):
    """A run of two epochs on data_dir: checkpoints model-4 and model-8, metrics for steps 1..8."""
    import train
    from test_train import args

    run = tmp_path_factory.mktemp("base") / "run"
    assert train.main(args(data_dir, run, "--epochs", "2")) == 0
    return run
