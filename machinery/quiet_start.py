"""Keeps TensorFlow's C++ start-up chatter off the terminal, so a run's first line is its own.

Importing TensorFlow 2.21 on a machine without a GPU prints, from C++ and before absl's logging is
set up (so TF_CPP_MIN_LOG_LEVEL, ABSL_MIN_LOG_LEVEL and GLOG_minloglevel do not reach it): absl's
"All log messages before absl::InitializeLog()" warning, oneDNN's and the CUDA stub's info lines
(twice: two libraries load), and on the first device query `E0000 ... failed call to cuInit` --
an "error" that only says there is no GPU. `import_tensorflow()` imports TensorFlow and lists its
devices with file descriptor 2 pointed into a pipe read by a small filter process, which drops
exactly those lines and passes every other byte through to the real stderr at once. Being a
separate process, the filter drains the pipe even if this one dies mid-import (a C++ CHECK
failure, a signal), so a real error is never swallowed. On a machine with an NVIDIA GPU (its
driver's /proc or /dev entries exist) every CUDA line is kept: there it may be the problem.
Afterwards stderr is the terminal again and nothing of this stays in the environment that child
processes inherit. DCGAN_TF_STARTUP_LOG=1 shows everything.
"""
import contextlib
import os
import subprocess
import sys

SHOW_ALL_VARIABLE = "DCGAN_TF_STARTUP_LOG"
_NVIDIA_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0")
_FILTER_SECONDS = 5.0  # the filter exits at end of file; a stuck one is left to finish alone

# The filter process: reads fd 0, writes what it keeps to fd 1. argv[1] == "keep-cuda" keeps
# CUDA's lines. A partial line is held back only while it may still become a dropped line.
_FILTER = r"""
import os, re, sys
keep_cuda = sys.argv[1] == "keep-cuda"
absl = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
prefixed = re.compile(rb"^([IWEF])\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\] (.*)$")
cuda_files = re.compile(rb"^(cuda|cudart|gpu)")
def dropped(line):
    if line.rstrip(b"\r") == absl:
        return True
    match = prefixed.match(line.rstrip(b"\r"))
    if not match:
        return False
    level, source, text = match.groups()
    if keep_cuda and cuda_files.match(source):
        return False
    return level == b"I" or (level == b"E" and source == b"cuda_platform.cc"
                             and text.startswith(b"failed call to cuInit"))
def may_become_dropped(partial):
    return (absl.startswith(partial) or bool(re.match(rb"^[IE]\d{0,4}( |$)", partial))) \
        and len(partial) < 4096
pending = b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    pending += chunk
    *lines, pending = pending.split(b"\n")
    out = b"".join(line + b"\n" for line in lines if not dropped(line))
    if pending and not may_become_dropped(pending):
        out, pending = out + pending, b""
    if out:
        os.write(1, out)
if pending and not dropped(pending):
    os.write(1, pending)
"""


def _machine_has_nvidia_gpu():
    return any(os.path.exists(path) for path in _NVIDIA_DRIVER_PATHS)


@contextlib.contextmanager
def chatter_filtered():
    """Within it, file descriptor 2 goes through the filter process (see above); on leaving, the
    real stderr is back. If the pipe or the process cannot be had, nothing is filtered."""
    try:
        read_end, write_end = os.pipe()
        saved_stderr = os.dup(2)
        cuda = "keep-cuda" if _machine_has_nvidia_gpu() else "drop-cuda"
        filter_process = subprocess.Popen([sys.executable, "-S", "-c", _FILTER, cuda],
                                          stdin=read_end, stdout=saved_stderr)
    except OSError:
        yield
        return
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        try:
            filter_process.wait(_FILTER_SECONDS)
        except subprocess.TimeoutExpired:
            pass


def import_tensorflow():
    """Imports TensorFlow and lists its devices, with its C++ start-up chatter filtered out.

    Call it before anything imports TensorFlow; later `import tensorflow` statements are then
    instant. Returns the tensorflow module.
    """
    if "tensorflow" in sys.modules or os.environ.get(SHOW_ALL_VARIABLE) == "1":
        import tensorflow
        return tensorflow
    # INFO lines printed after absl is initialized do obey this; it is read once, at the first
    # log line, so taking it out again afterwards keeps child processes' environment as it was.
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    try:
        with chatter_filtered():
            import tensorflow
            tensorflow.config.list_physical_devices()  # CUDA's initialization: the cuInit line
    finally:
        if level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    return tensorflow


def parse_flags_then_import_tensorflow(parse_args):
    """An entry point's start: its flags first, then TensorFlow (quietly). TensorFlow takes
    seconds to import; --help and a mistyped flag do not wait for it. Returns parse_args()."""
    args = parse_args()
    import_tensorflow()
    return args
