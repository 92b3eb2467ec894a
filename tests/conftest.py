"""Puts the project root on sys.path so tests import dcgan, data and train as a user's script does."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def umask():
    """The process's umask, read independently of data.py's DEFAULT_FILE_MODE."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
