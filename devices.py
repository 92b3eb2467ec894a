"""What the machine offers the step: the device TensorFlow places it on, where its ops ran, and
whether bfloat16 compute is fast here."""
import os

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
    """'<device>: <n> ops, ...' for a step traced with RunOptions.SOFTWARE_TRACE."""
    counts = {}
    for device in run_metadata.step_stats.dev_stats:
        counts[device.device] = counts.get(device.device, 0) + len(device.node_stats)
    return ", ".join(f"{name}: {count} ops" for name, count in sorted(counts.items()))


def bfloat16_support():
    """Whether this machine runs bfloat16 compute fast: (supported, reason).

    On a CPU, oneDNN needs AVX512_BF16 or AMX; without them TensorFlow emulates bfloat16 and is
    slower than float32. A GPU needs compute capability 8.0 (Ampere) or newer.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability", (0, 0))
        if tuple(capability) >= (8, 0):
            return True, f"GPU with compute capability {capability}"
        return False, f"GPU compute capability {capability} < 8.0 has no fast bfloat16"
    try:
        with open("/proc/cpuinfo") as handle:
            flags = {flag for line in handle if line.startswith("flags")
                     for flag in line.split(":", 1)[1].split()}
    except OSError:
        return False, "cannot read /proc/cpuinfo to find AVX512_BF16 or AMX (Linux only)"
    found = sorted(flags & {"avx512_bf16", "amx_bf16"})
    if found:
        return True, f"CPU with {', '.join(found)}"
    return False, "this CPU has neither AVX512_BF16 nor AMX-BF16; bfloat16 would be emulated"
