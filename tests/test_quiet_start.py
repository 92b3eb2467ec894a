"""machinery/quiet_start.py: TensorFlow's start-up chatter kept off the terminal without hiding a
real error: the filter's lines, with and without an NVIDIA GPU, a process that dies inside it,
the environment left as it was, and a CPU run whose first line is its own."""
import os
import re
import subprocess
import sys

import pytest

from machinery import quiet_start
from helpers import ROOT, run_python


# A line of TensorFlow's C++ logging (absl/glog format), or absl's pre-initialization warning.
CPP_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]|WARNING: All log "
                          r"messages before absl::InitializeLog)")


def run_filter(data, cuda="drop-cuda"):
    return subprocess.run([sys.executable, "-S", "-c", quiet_start._FILTER, cuda], input=data,
                          capture_output=True, timeout=30).stdout


CHATTER = (b"WARNING: All log messages before absl::InitializeLog() is called are written to "
           b"STDERR\n"
           b"I0000 00:00:1796168643.442190    3147 port.cc:153] oneDNN custom operations are on.\n"
           b"I0000 00:00:1796168643.442557    3147 cudart_stub.cc:31] Could not find cuda drivers "
           b"on your machine, GPU will not be used.\n"
           b"E0000 00:00:1796168646.751202    3147 cuda_platform.cc:52] failed call to cuInit: "
           b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")


REAL = (b"E0000 00:00:1796168646.751202    3147 op_kernel.cc:1830] OP_REQUIRES failed: "
        b"out of memory\n"
        b"W0000 00:00:1796168646.751202    3147 allocator.cc:122] Allocation exceeds 10%\n"
        b"Traceback (most recent call last):\n")


def test_the_filter_drops_the_chatter_and_keeps_everything_else():
    assert run_filter(CHATTER + REAL + b"progress 1/3\rprogress 2/3\r") == \
        REAL + b"progress 1/3\rprogress 2/3\r"


def test_on_a_machine_with_an_nvidia_gpu_the_cuda_lines_are_kept():
    kept = run_filter(CHATTER, cuda="keep-cuda")
    assert b"cuInit" in kept and b"Could not find cuda drivers" in kept
    assert b"oneDNN" not in kept and b"absl::InitializeLog" not in kept


def test_a_process_that_dies_inside_the_filter_loses_no_real_line():
    """The filter is a process of its own: it drains the pipe after this one is killed (a C++
    CHECK failure aborts the process in the middle of TensorFlow's import)."""
    program = ("import os\nfrom machinery import quiet_start\n"
               "with quiet_start.chatter_filtered():\n"
               f"    os.write(2, {CHATTER!r})\n"
               "    os.write(2, b'F0000 00:00:1.0 1 check.cc:1] Check failed: real problem\\n')\n"
               "    os.abort()\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                            timeout=60)
    assert result.returncode != 0
    assert b"Check failed: real problem" in result.stderr
    assert b"cuInit" not in result.stderr and b"oneDNN" not in result.stderr


@pytest.mark.slow
def test_importing_tensorflow_leaves_the_environment_and_stderr_as_they_were():
    program = ("import os, sys\nfrom machinery import quiet_start\n"
               "quiet_start.import_tensorflow()\n"
               "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
               "print('after the import', file=sys.stderr)\n")
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = run_python(["-c", program], env=environment)
    assert result.returncode == 0
    assert result.stdout.strip() == "None"
    assert result.stderr.strip().splitlines() == ["after the import"]


@pytest.mark.slow
def test_a_cpu_run_starts_with_its_own_lines(tmp_path):
    """No line of TensorFlow's C++ logging anywhere in a short run's output, and the first line
    is this program's settings."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", quiet_start.SHOW_ALL_VARIABLE)}
    result = run_python(["train.py", "--dataset", "mnist-sample", "--epochs", "1", "--max-steps",
                         "1", "--batch-size", "8", "--sample-grid", "2",
                         "--out", str(tmp_path / "run")], timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("settings")
    lines = result.stdout.splitlines() + result.stderr.replace("\r", "\n").splitlines()
    assert [line for line in lines if CPP_LOG_LINE.match(line)] == []
    assert "done: 1 step, 0 epochs" in result.stdout
