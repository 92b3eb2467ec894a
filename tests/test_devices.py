"""machinery/devices.py: the bfloat16 check's outcomes from injected CPU flags and GPU capabilities,
the warning for an NVIDIA GPU TensorFlow does not see (a fake nvidia-smi on the PATH), and both as
the commands print them."""
import os
import stat
import time

import pytest

import generate
import train
from machinery import devices
from helpers import train_args


@pytest.mark.parametrize("flags, gpu, fast, hardware, found", [
    ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, None, True, True, "AMX-BF16"),
    ({"avx512f", "avx512_bf16"}, None, False, True, "AVX512_BF16 but no AMX-BF16"),
    ({"avx2", "fma"}, None, False, False, "neither AMX-BF16 nor AVX512_BF16"),
    (set(), (8, 6), True, True, "compute capability (8, 6)"),
    (set(), (7, 5), False, False, "(7, 5) < 8.0"),
])
def test_bfloat16_check_outcomes(flags, gpu, fast, hardware, found):
    check = devices.bfloat16_support(flags=flags, gpu_capability=gpu)
    assert (check.fast, check.hardware) == (fast, hardware) and found in check.reason
    warning = devices.bfloat16_warning(check)
    if fast:
        assert warning is None  # silent where bfloat16 was measured faster
    else:
        assert warning.startswith("warning: bfloat16 may be slower than float32 here")
        assert found in warning and devices.BFLOAT16_CHECK_COMMAND in warning


def test_unreadable_cpu_flags_warn(tmp_path, monkeypatch):
    assert devices.cpu_flags(str(tmp_path / "missing")) is None
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 sse\n")
    assert devices.cpu_flags(str(tmp_path / "cpuinfo")) == {"fpu", "avx512_bf16", "sse"}
    monkeypatch.setattr(devices, "cpu_flags", lambda: None)
    monkeypatch.setattr(devices.tf.config, "list_physical_devices", lambda kind: [])
    check = devices.bfloat16_support()
    assert not check.fast and "cannot read the CPU's flags" in devices.bfloat16_warning(check)


@pytest.mark.slow
@pytest.mark.parametrize("flags, warned", [({"avx512_bf16"}, True), ({"amx_bf16"}, False)])
def test_train_with_bfloat16_warns_only_without_amx_and_runs(data_dir, tmp_path, capsys,
                                                             monkeypatch, flags, warned):
    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    assert train.main(train_args(data_dir, tmp_path / "run", "--precision", "bfloat16",
                                 "--max-steps", "1")) == 0
    err = capsys.readouterr().err
    assert ("bfloat16 may be slower than float32 here" in err) == warned
    assert ("python bench.py --g-steps 1 --channels 3 --precision both" in err) == warned


# --- An NVIDIA GPU TensorFlow does not see ---------------------------------------------------
def fake_nvidia_smi(folder, script):
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_no_gpu_on_the_machine_is_silent(tmp_path):
    missing = str(tmp_path / "no-such-nvidia-smi")
    assert devices.nvidia_gpus(str(tmp_path / "no-proc"), missing) == []
    assert devices.unseen_gpu_warning(tensorflow_gpus=[], machine_gpus=[]) is None


def test_a_gpu_tensorflow_sees_is_silent():
    assert devices.unseen_gpu_warning(tensorflow_gpus=["GPU:0"],
                                      machine_gpus=["NVIDIA A100"]) is None


def test_a_gpu_tensorflow_does_not_see_is_one_warning(tmp_path):
    smi = fake_nvidia_smi(tmp_path, 'echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1234)"\n')
    gpus = devices.nvidia_gpus(str(tmp_path / "no-proc"), smi)
    assert gpus == ["NVIDIA A100-SXM4-40GB"]
    warning = devices.unseen_gpu_warning(tensorflow_gpus=[], machine_gpus=gpus)
    assert warning.startswith("warning: this machine has an NVIDIA GPU (NVIDIA A100-SXM4-40GB)")
    assert 'pip install "tensorflow[and-cuda]"' in warning and "\n" not in warning
    proc = tmp_path / "proc-gpus"
    (proc / "0000:00:04.0").mkdir(parents=True)  # the driver's folder, without nvidia-smi
    assert devices.nvidia_gpus(str(proc), str(tmp_path / "missing")) == \
        ["NVIDIA GPU 0000:00:04.0"]


def test_a_failing_or_hanging_nvidia_smi_means_no_gpu_known(tmp_path):
    failing = fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert devices.nvidia_gpus(str(tmp_path / "no-proc"), failing) == []
    (tmp_path / "slow").mkdir()
    hanging = fake_nvidia_smi(tmp_path / "slow", "sleep 30\n")
    start = time.monotonic()
    assert devices.nvidia_gpus(str(tmp_path / "no-proc"), hanging) == []
    assert time.monotonic() - start < 10  # bounded by the check's own timeout, not 30 s


@pytest.mark.slow
def test_entry_points_print_the_warning_and_go_on(two_epochs, tmp_path, capsys,
                                                  monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "GPU 0: NVIDIA T4 (UUID: GPU-5678)"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "grid.png"
    assert generate.main(["--run", str(two_epochs), "--num", "4", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: this machine has an NVIDIA GPU (NVIDIA T4)") == 1
    assert out.is_file()
