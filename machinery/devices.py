"""What the machine offers the step: the device TensorFlow places it on, where its ops ran,
whether bfloat16 compute is fast here, and an NVIDIA GPU that TensorFlow does not see."""
import collections
import os
import subprocess
import sys

import tensorflow as tf


def device_type():
    """'GPU' when TensorFlow sees one (graph mode then places the step there), else 'CPU'."""
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def describe_device():
    """One line for the logs: the GPU(s) TensorFlow sees, or the CPU and its core count."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                 for gpu in gpus]
        return f"GPU ({', '.join(names)})"
    return f"CPU ({os.cpu_count()} cores; TensorFlow sees no GPU)"


def placement_summary(run_metadata):
    """'<device>: <n> ops, ...' for a step traced with RunOptions.SOFTWARE_TRACE (FULL_TRACE in a
    session of a tf.distribute server)."""
    counts = {}
    for device in run_metadata.step_stats.dev_stats:
        counts[device.device] = counts.get(device.device, 0) + len(device.node_stats)
    return ", ".join(f"{name}: {count} ops" for name, count in sorted(counts.items())) or \
        "(the session returned no trace)"


Bfloat16Check = collections.namedtuple("Bfloat16Check", "hardware fast reason")
BFLOAT16_CHECK_COMMAND = "python bench.py --g-steps 1 --channels 3 --precision both"


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (Linux), or None if they cannot be read."""
    try:
        with open(cpuinfo) as handle:
            return {flag for line in handle if line.startswith("flags")
                    for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None


def bfloat16_support(flags=None, gpu_capability=None):
    """Whether bfloat16 compute has hardware here, and whether it is known to be faster.

    Measured (README, bfloat16): with AMX-BF16 the step ran 1.5-2.2x float32; with AVX512_BF16
    but no AMX, bfloat16 was slower than float32 on one CPU and faster on another; with neither,
    TensorFlow emulates it. A GPU needs compute capability 8.0 (Ampere) or newer.

    Args:
      flags: the CPU's feature flags; default: this machine's (cpu_flags()).
      gpu_capability: (major, minor) of the GPU the step runs on; default: the first GPU
        TensorFlow sees, if any.

    Returns:
      Bfloat16Check(hardware, fast, reason): `fast` only where bfloat16 was measured faster
      (AMX, or a GPU of compute capability 8.0+); `reason` names what was found.
    """
    if gpu_capability is None:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            gpu_capability = tuple(details.get("compute_capability", (0, 0)))
    if gpu_capability is not None:
        if tuple(gpu_capability) >= (8, 0):
            return Bfloat16Check(True, True, f"GPU with compute capability {gpu_capability}")
        return Bfloat16Check(False, False, f"GPU compute capability {gpu_capability} < 8.0 has "
                                           f"no bfloat16 units")
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return Bfloat16Check(False, False, "cannot read the CPU's flags (/proc/cpuinfo) to find "
                                           "AMX-BF16 or AVX512_BF16")
    if "amx_bf16" in flags:
        return Bfloat16Check(True, True, "CPU with AMX-BF16")
    if "avx512_bf16" in flags:
        return Bfloat16Check(True, False, "CPU with AVX512_BF16 but no AMX-BF16: measured slower "
                                          "than float32 on some such CPUs, faster on others")
    return Bfloat16Check(False, False, "CPU with neither AMX-BF16 nor AVX512_BF16: TensorFlow "
                                       "emulates bfloat16, slower than float32")


def bfloat16_warning(check):
    """The one line to print before a bfloat16 run, or None where bfloat16 is known to be fast."""
    if check.fast:
        return None
    return (f"warning: bfloat16 may be slower than float32 here ({check.reason}); compare both "
            f"on this machine with: {BFLOAT16_CHECK_COMMAND}")


# --- An NVIDIA GPU that TensorFlow does not see ------------------------------------------------
GPU_INSTALL_COMMAND = 'pip install "tensorflow[and-cuda]"'
_NVIDIA_SMI_SECONDS = 2.0


def nvidia_gpus(proc_dir="/proc/driver/nvidia/gpus", nvidia_smi="nvidia-smi"):
    """Names of the NVIDIA GPUs the machine has, from `nvidia-smi -L` or the driver's /proc
    folder; [] when neither finds one. Never raises: a missing or failing nvidia-smi means no
    GPU known."""
    try:
        listing = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True,
                                 timeout=_NVIDIA_SMI_SECONDS)
        names = [line.split(":", 1)[1].split("(UUID")[0].strip()
                 for line in listing.stdout.splitlines()
                 if listing.returncode == 0 and line.startswith("GPU ") and ":" in line]
        if names:
            return names
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return [f"NVIDIA GPU {name}" for name in sorted(os.listdir(proc_dir))]
    except OSError:
        return []


def unseen_gpu_warning(tensorflow_gpus=None, machine_gpus=None):
    """One line when the machine has an NVIDIA GPU that TensorFlow does not list, else None.

    Args:
      tensorflow_gpus: the GPUs TensorFlow lists; default: tf.config.list_physical_devices.
      machine_gpus: the NVIDIA GPUs the machine has; default: nvidia_gpus().
    """
    if tensorflow_gpus is None:
        tensorflow_gpus = tf.config.list_physical_devices("GPU")
    if tensorflow_gpus:
        return None
    machine_gpus = nvidia_gpus() if machine_gpus is None else machine_gpus
    if not machine_gpus:
        return None
    return (f"warning: this machine has an NVIDIA GPU ({', '.join(machine_gpus)}) but TensorFlow "
            f"sees none, so this runs on the CPU, many times slower. On Linux install TensorFlow "
            f"with its CUDA libraries: {GPU_INSTALL_COMMAND} (README: On a GPU)")


def warn_if_gpu_unseen():
    """Prints unseen_gpu_warning() to stderr, if there is one."""
    warning = unseen_gpu_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)
