"""The commands (train.py, generate.py, evaluate.py, features.py, bench.py) as a newcomer meets
them: --help at once and grouped, a mistyped flag reported before TensorFlow is imported, what
each command's own parse_args refuses (flags that do not go together, a batch that does not split,
counts that depend on each other), and every command the README and docs/ give still parsing with
its command's flags."""
import importlib
import os
import re
import shlex

import pytest

import bench
import train
from helpers import ENTRY_POINTS, REQUIRED, ROOT, refusal, run_python, train_args


def imported_modules(stderr):
    """The top-level modules named by `python -X importtime`'s lines."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)", stderr, re.MULTILINE)
    return {name.split(".")[0] for name in names}


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_help_is_grouped_and_answers_before_tensorflow_is_imported(entry_point):
    result = run_python(["-X", "importtime", f"{entry_point}.py", "--help"])
    assert result.returncode == 0
    assert "tensorflow" not in imported_modules(result.stderr)
    titles = re.findall(r"^(\S[^:\n]*):$", result.stdout, re.MULTILINE)
    assert len(titles) >= 3, titles  # "options" and at least two groups of flags
    assert "(default: None)" not in result.stdout and "(default: False)" not in result.stdout
    for entry in re.split(r"\n  (?=-)", result.stdout):  # one flag's help text each
        assert entry.count("(default:") <= 1, entry


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_mistyped_flag_is_reported_before_tensorflow_is_imported(entry_point):
    result = run_python(["-X", "importtime", f"{entry_point}.py", "--run", "x",
                         *REQUIRED.get(entry_point, []), "--epohcs", "3"])
    assert result.returncode == 2
    assert "tensorflow" not in imported_modules(result.stderr)
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"{entry_point}.py: error: unrecognized arguments") and \
        error.endswith("--epohcs 3")


@pytest.mark.slow
def test_the_train_help_shows_the_run_directory_default_once():
    out = run_python(["train.py", "--help"]).stdout
    entry = out[out.index("  --out"):out.index("  --fresh")]
    assert "(default: runs/<dataset>)" in entry and entry.count("default") == 1


# --- What each command's parse_args refuses -------------------------------------------------------


def test_bad_flags_exit_with_usage(tmp_path):
    for bad in (["--dataset", "cifar"], ["--smooth", "1"], ["--epochs", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            train.parse_args(bad)
        assert exit_info.value.code == 2


def test_the_run_directory_defaults_to_the_folder_name(tmp_path):
    args = train.parse_args(["--dataset", "folder", "--images", str(tmp_path / "holiday") + "/"])
    assert args.out == os.path.join("runs", "holiday") and args.splits == ("all",)


@pytest.mark.parametrize("flags, words", [
    (["--dataset", "folder"], "--dataset folder needs --images FOLDER"),
    (["--dataset", "svhn", "--images", "x"], "--images goes with --dataset folder"),
    (["--dataset", "svhn", "--channels", "1"], "--channels and --fit go with --dataset folder"),
    (["--dataset", "folder", "--images", "x", "--splits", "train"], "--splits does not apply"),
])
def test_folder_flags_that_do_not_fit_are_refused_when_parsed(flags, words, capsys):
    with pytest.raises(SystemExit) as exit_status:
        train.parse_args(flags)
    assert exit_status.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--devices", "3"], "does not divide evenly over 3 replicas (--devices 3); try 15"),
    (["--sync-batch-norm"], "--sync-batch-norm needs several replicas"),
    (["--devices", "0"], "must be in 1..64"),
])
def test_flags_that_cannot_split_the_batch_are_refused(extra, message, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(train_args(data_dir, tmp_path / "run", *extra))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")


def test_bench_refuses_a_batch_the_devices_cannot_split(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--devices", "3", "--batch-size", "8"])
    assert "8 does not divide evenly over --devices 3" in capsys.readouterr().err


def test_counts_that_depend_on_each_other_are_one_line(capsys):
    for argv, message in (
            (["--num", "5000", "--out", "x.png"], "--num must be in 1..4096 for a .png"),
            (["--interpolate", "500", "--walk-steps", "10"], "--interpolate x --walk-steps must "
                                                             "be in 1..4096"),
            (["--interpolate", "2", "--walk-points", "5", "--walk-steps", "4"],
             "--walk-steps must be at least --walk-points")):
        assert message in refusal("generate", ["--run", "r", *argv], capsys)


# --- The README and docs/ commands ------------------------------------------------------------
def documented_commands():
    """(file, line, entry point, argv) of every `python <entry point>.py ...` line in a shell
    block of README.md or docs/*.md (comments cut, continuation lines joined)."""
    files = ["README.md"] + sorted(os.path.join("docs", name)
                                   for name in os.listdir(os.path.join(ROOT, "docs"))
                                   if name.endswith(".md"))
    commands = []
    for name in files:
        with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
            text = handle.read()
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                for start, word in enumerate(words):
                    module = word[:-3] if word.endswith(".py") else None
                    if module in ENTRY_POINTS and start and words[start - 1].endswith("python"):
                        end = next((i for i in range(start + 1, len(words))
                                    if words[i] in ("&&", "||", ";", "|")), len(words))
                        commands.append((name, line.strip(), module, words[start + 1:end]))
    return commands


COMMANDS = documented_commands()


def test_the_documents_give_commands_for_every_entry_point():
    assert {module for _, _, module, _ in COMMANDS} == set(ENTRY_POINTS)


@pytest.mark.parametrize("name, line, module, argv", COMMANDS,
                         ids=[f"{name}: {line}" for name, line, _, _ in COMMANDS])
def test_every_documented_command_parses(name, line, module, argv):
    entry_point = importlib.import_module(module)
    try:
        entry_point.parse_args(argv)
    except SystemExit as exit_status:
        pytest.fail(f"{name}: `{line}` is refused by {module}.py's flags ({exit_status})")


# --- train.py's augmentation flags -----------------------------------------------------------
# --- Flags -----------------------------------------------------------------------------------
def test_the_augmentation_flags_and_their_defaults():
    plain = train.parse_args([])
    assert (plain.augment, plain.augment_p, plain.augment_target, plain.flip) == \
        (None, None, None, False)
    parsed = train.parse_args(["--augment", "cutout,translation", "--flip"])
    assert parsed.augment == ["translation", "cutout"] and parsed.flip
    assert parsed.augment_p == train.DEFAULT_AUGMENT_P
    adaptive = train.parse_args(["--augment", "color", "--augment-p", "adaptive"])
    assert (adaptive.augment_p, adaptive.augment_target) == ("adaptive", 0.6)
    fixed = train.parse_args(["--augment", "color", "--augment-p", "0.5"])
    assert (fixed.augment_p, fixed.augment_target) == (0.5, None)


@pytest.mark.parametrize("flags,message", [
    (["--augment", "colour"], "distinct policies among color, translation, cutout"),
    (["--augment", "cutout,cutout"], "distinct policies"),
    (["--augment", "cutout", "--augment-p", "1.5"], "must be in [0, 1]"),
    (["--augment", "cutout", "--augment-p", "-0.1"], "must be in [0, 1]"),
    (["--augment", "cutout", "--augment-p", "sometimes"], "neither a number nor 'adaptive'"),
    (["--augment", "cutout", "--augment-target", "1"], "must be in (0, 1)"),
    (["--augment", "cutout", "--augment-target", "0"], "must be in (0, 1)"),
    (["--augment-p", "0.5"], "go with --augment POLICIES"),
    (["--augment-target", "0.5"], "go with --augment POLICIES"),
    (["--augment", "cutout", "--augment-p", "0.5", "--augment-target", "0.5"],
     "--augment-target goes with --augment-p adaptive"),
])
def test_bad_augmentation_flags_are_one_line_before_anything_is_written(flags, message, capsys,
                                                                        tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args([*flags, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "run").exists()
