"""machinery/options.py: every numeric flag of every command is bounded when parsed, with the
reason: an out-of-range value ends with argparse's usage and one error line naming the flag, exit
status 2, before anything reaches NumPy, scikit-learn or TensorFlow's C++ (which answer a negative
seed with a traceback and a negative thread count with an abort); image sizes that cannot work and
batches too large for the size, refused the same way."""
import argparse
import importlib
import os
import subprocess
import sys

import pytest

import train
from machinery import options
from helpers import ENTRY_POINTS, REQUIRED, ROOT, refusal

NEEDS_RUN = ("generate", "evaluate", "features", "export")


# (entry point, flag, values out of range); every numeric flag has a row (checked below).
OUT_OF_RANGE = [
    ("train", "--epochs", ["0", "-1", "1000001"]),
    ("train", "--max-steps", ["0", str(2 ** 62 + 1)]),
    ("train", "--batch-size", ["0", "32769"]),
    ("train", "--image-size", ["8", "0", "256"]),
    ("train", "--z-dim", ["0", "4097"]),
    ("train", "--lr", ["0", "-0.1", "1e39", "nan", "inf"]),
    ("train", "--beta1", ["-0.1", "1", "nan"]),
    ("train", "--alpha", ["-0.2", "1.1", "nan"]),
    ("train", "--smooth", ["-0.1", "1", "inf"]),
    ("train", "--g-steps", ["0", "17"]),
    ("train", "--g-ema", ["-0.5", "1", "nan"]),
    ("train", "--seed", ["-1", str(2 ** 32)]),
    ("train", "--log-every", ["0", "-10"]),
    ("train", "--sample-grid", ["0", "33", "1000"]),
    ("train", "--eval-every", ["-1", "1000001"]),
    ("train", "--eval-num", ["3", "200001"]),
    ("train", "--intra-op-threads", ["-1", "1025", "2147483648"]),
    ("train", "--inter-op-threads", ["-1", "1025"]),
    ("train", "--devices", ["0", "65"]),
    ("bench", "--devices", ["0", "65"]),
    ("train", "--worker-timeout", ["9", "86401"]),
    ("train", "--augment-p", ["-0.1", "1.5", "nan"]),
    ("train", "--augment-target", ["0", "1", "-0.5", "inf"]),
    ("generate", "--num", ["0", "-5", "200001"]),
    ("generate", "--seed", ["-1", str(2 ** 32)]),
    ("generate", "--interpolate", ["-1", "4097"]),
    ("generate", "--walk-steps", ["1", "4097"]),
    ("generate", "--walk-points", ["1", "4097"]),
    ("evaluate", "--num", ["3", "1000000000"]),
    ("evaluate", "--seed", ["-1", str(2 ** 32)]),
    ("features", "--labels", ["1", "0", "100000"]),
    ("features", "--draws", ["0", "101"]),
    ("features", "--seed", ["-1", str(2 ** 32)]),
    ("bench", "--batch-size", ["0", "2049"]),
    ("bench", "--augment-p", ["-0.1", "1.5"]),
    ("bench", "--g-ema", ["-0.1", "1"]),
    ("bench", "--image-size", ["-16", "512"]),
    ("bench", "--warmup", ["-1", "10001"]),
    ("bench", "--steps", ["0", "10001"]),
    ("bench", "--intra-op-threads", ["-1", "2147483648"]),
    ("bench", "--inter-op-threads", ["-1", "1025"]),
    ("export", "--seed", ["-1", str(2 ** 32)]),
]


def command(entry_point, *flags):
    """The flags, with what they need beside them: a run, or --augment for its settings."""
    needs = (["--run", "r"] if entry_point in NEEDS_RUN else []) + REQUIRED.get(entry_point, [])
    if any(flag.startswith("--augment-") for flag in flags):
        needs += ["--augment", "cutout"]
    return needs + list(flags)


def numeric_flags(entry_point):
    parser = importlib.import_module(entry_point).build_parser()
    return {action.option_strings[-1]: action for action in parser._actions
            if action.option_strings and action.type not in (None, str, options.augment_policies)}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_numeric_flag_has_bounds_and_a_row_here(entry_point):
    found = numeric_flags(entry_point)
    for flag, action in found.items():
        assert isinstance(action.type, options.Bounded) or action.choices, flag
    tested = {flag for name, flag, _ in OUT_OF_RANGE if name == entry_point}
    assert tested == {flag for flag, action in found.items() if not action.choices}


@pytest.mark.parametrize("entry_point, flag, values", OUT_OF_RANGE,
                         ids=[f"{name} {flag}" for name, flag, _ in OUT_OF_RANGE])
def test_out_of_range_values_are_one_line_with_the_reason(entry_point, flag, values, capsys):
    bounded = numeric_flags(entry_point)[flag].type
    for value in values:
        line = refusal(entry_point, command(entry_point, f"{flag}={value}"), capsys)
        assert line.endswith(f": error: argument {flag}: must be in {bounded.range()}, not "
                             f"{value} ({bounded.why})")  # the program name: pytest's here


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_the_bounds_themselves_are_accepted(entry_point):
    module = importlib.import_module(entry_point)
    for flag, action in numeric_flags(entry_point).items():
        if action.choices:
            continue
        for value in (action.type.low, action.type.high):
            if (value == action.type.low and action.type.low_open) or \
                    (value == action.type.high and action.type.high_open):
                continue
            npz = ["--out", "x.npz"] if entry_point == "generate" else []  # no grid's limit
            args = module.parse_args(command(entry_point, f"{flag}={value}", *npz))
            assert getattr(args, action.dest) == value, flag


def test_not_a_number_is_one_line(capsys):
    assert refusal("train", ["--seed", "zero"], capsys).endswith(
        ": error: argument --seed: 'zero' is not an integer")
    assert refusal("train", ["--lr", "fast"], capsys).endswith(
        ": error: argument --lr: 'fast' is not a number")


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["train.py", "--seed", "-1"],
    ["train.py", "--intra-op-threads", "-1"],           # was SIGABRT in TensorFlow's C++
    ["train.py", "--intra-op-threads", "2147483648"],
    ["generate.py", "--run", "r", "--seed", "-1"],
    ["evaluate.py", "--run", "r", "--num", "1000000000"],  # was a MemoryError
    ["features.py", "--run", "r", "--labels", "100000"],
    ["bench.py", "--inter-op-threads", "-1"],
])
def test_the_commands_of_the_issue_exit_2_with_one_line(argv, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, argv[0]), *argv[1:]],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{argv[0]}: error: argument {argv[-2]}: "
                                                     f"must be in ")
    assert os.listdir(tmp_path) == []  # nothing written


def test_a_bounded_type_reads_like_argparse_types():
    seed = options.SEED
    assert seed("7") == 7 and seed.__name__ == "int"
    with pytest.raises(argparse.ArgumentTypeError, match="must be in 0..4,294,967,295, not -1"):
        seed("-1")
    assert options.DECAY.range() == "[0, 1)"


@pytest.mark.slow
@pytest.mark.parametrize("size, reason", [("48", "must be a power of two"),
                                          ("96", "must be a power of two"),
                                          ("8", "must be in 16..128, not 8 (a power of two"),
                                          ("256", "must be in 16..128, not 256")])
def test_sizes_that_cannot_work_are_refused_when_the_flags_are_parsed(size, reason):
    for entry_point in ("train.py", "bench.py"):
        result = subprocess.run([sys.executable, entry_point, "--image-size", size], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr
        assert lines[-1].startswith(f"{entry_point}: error: argument --image-size: ")
        assert reason in lines[-1]


@pytest.mark.slow
def test_a_batch_too_large_for_the_size_is_refused_when_the_flags_are_parsed():
    assert train.parse_args(["--image-size", "32", "--batch-size", "32768"]).batch_size == 32768
    result = subprocess.run([sys.executable, "train.py", "--image-size", "128", "--batch-size",
                             "4096"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "argument --batch-size: at --image-size 128 it must be at most 2,048: the networks' "
        "largest layer holds 524,288 values an image, and past 2^30 in one tensor TensorFlow's "
        "CPU kernels risk int32 index overflow")
