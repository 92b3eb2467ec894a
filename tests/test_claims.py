"""machinery/claims.py: train.py never writes into nor moves a folder that is not a run, --fresh
never moves a live run, a failed start leaves nothing behind, a second trainer is refused while a
killed one's lock does not block, and temporary files of live readers survive a writer's start.
Each test injects the fault and checks exit status, the one-line message and that every file there
before is intact."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import train
from machinery import errors, run_directory, training
from helpers import (assert_intact, checkpoint_steps, one_error_line, snapshot, start_training,
                     train_args)


@pytest.fixture
def users_folder(tmp_path):
    """A folder of the user's own, holding names a run would write."""
    folder = tmp_path / "mine"
    (folder / "samples").mkdir(parents=True)
    (folder / "metrics.csv").write_text("my,own,table\n")
    (folder / "losses.png").write_bytes(b"my picture")
    (folder / "samples" / "epoch_0001.png").write_bytes(b"my other picture")
    (folder / ".tmp-notes").write_text("mine too")
    return folder


def hold_lock(folder):
    """A live process holding `folder`/.lock the way a training run does; returns it."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'process %d on test' % os.getpid())\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def fails_with_one_line(capsys, command):
    assert train.main(command) == 1
    return one_error_line(capsys.readouterr().err)


# --- A folder that is not a run --------------------------------------------------------------
def test_a_foreign_folder_is_refused_and_left_untouched(data_dir, users_folder, capsys):
    before = snapshot(users_folder)
    line = fails_with_one_line(capsys, train_args(data_dir, users_folder, "--epochs", "1"))
    assert str(users_folder) in line and "not a run directory" in line
    assert snapshot(users_folder) == before
    assert sorted(os.listdir(users_folder)) == [".tmp-notes", "losses.png", "metrics.csv",
                                                "samples"]  # no lock, no marker


def test_the_working_directory_as_out_is_refused_when_it_is_not_a_run(data_dir, users_folder,
                                                                      capsys, monkeypatch):
    monkeypatch.chdir(users_folder)
    before = snapshot(users_folder)
    line = fails_with_one_line(capsys, train_args(data_dir, ".", "--epochs", "1"))
    assert f"{users_folder} is not empty and is not a run directory" in line
    line = fails_with_one_line(capsys, train_args(data_dir, ".", "--epochs", "1", "--fresh"))
    assert "--fresh" in line and "working directory" in line
    assert snapshot(users_folder) == before


@pytest.mark.slow
def test_an_empty_folder_is_taken_and_a_file_is_refused(data_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train.main(train_args(data_dir, empty, "--epochs", "1")) == 0
    assert (empty / run_directory.RUN_MARKER).is_file() and checkpoint_steps(empty) == [4]
    afile = tmp_path / "afile"
    afile.write_bytes(b"keep me")
    for extra in ((), ("--fresh",)):
        line = fails_with_one_line(capsys, train_args(data_dir, afile, "--epochs", "1", *extra))
        assert str(afile) in line and "file" in line
    assert afile.read_bytes() == b"keep me"


# --- --fresh -----------------------------------------------------------------------------------
def test_fresh_never_moves_a_folder_that_is_not_a_run(data_dir, users_folder, capsys):
    before = snapshot(users_folder)
    line = fails_with_one_line(capsys, train_args(data_dir, users_folder, "--epochs", "1",
                                                  "--fresh"))
    assert "--fresh" in line and "not a run directory" in line and "Nothing was moved" in line
    assert snapshot(users_folder) == before
    assert not [name for name in os.listdir(users_folder.parent) if ".old-" in name]


@pytest.mark.slow
def test_fresh_never_moves_a_live_run_below(data_dir, run, tmp_path, capsys):
    # `--out runs --fresh` while runs/svhn trains: runs is no run, and holds a live one.
    runs_folder = tmp_path / "runs"
    runs_folder.mkdir()
    live = runs_folder / "svhn"
    shutil.copytree(run, live)
    # ... and a run directory that holds a live run further down.
    nested = run / "experiments" / "small"
    shutil.copytree(live, nested, ignore=shutil.ignore_patterns("checkpoints"))
    holders = [hold_lock(live), hold_lock(nested)]
    try:
        before = snapshot(tmp_path)
        line = fails_with_one_line(capsys, train_args(data_dir, runs_folder, "--epochs", "1",
                                                      "--fresh"))
        assert "not a run directory" in line
        line = fails_with_one_line(capsys, train_args(data_dir, run, "--epochs", "1", "--fresh"))
        assert "--fresh refused, nothing was moved" in line and str(nested) in line
        assert f"process {holders[1].pid}" in line
        assert snapshot(tmp_path) == before
        assert not [name for name in os.listdir(tmp_path) if ".old-" in name]
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--fresh")) == 0  # none live now
    moved = [name for name in os.listdir(tmp_path) if name.startswith("run.old-")]
    assert len(moved) == 1 and (tmp_path / moved[0] / "experiments" / "small").is_dir()


@pytest.mark.slow
def test_fresh_never_moves_a_parent_of_the_working_directory_home_or_root(
        data_dir, run, capsys, monkeypatch):
    before = snapshot(run)
    monkeypatch.chdir(run / "samples")
    for out, what in ((run, "working directory or a folder holding it"),
                      (run / "samples" / "..", "working directory or a folder holding it"),
                      (os.sep, "the root directory")):
        line = fails_with_one_line(capsys, train_args(data_dir, out, "--epochs", "1", "--fresh"))
        assert what in line
    monkeypatch.chdir(run.parent)
    monkeypatch.setenv("HOME", str(run))
    assert "the home directory" in fails_with_one_line(
        capsys, train_args(data_dir, run, "--epochs", "1", "--fresh"))
    assert snapshot(run) == before


@pytest.mark.slow
def test_every_fresh_failure_is_one_line(data_dir, run, tmp_path, capsys, monkeypatch):
    before = snapshot(run)
    real_rename = os.rename

    def read_only(source, target):
        if str(source) == str(run):
            raise OSError(30, "Read-only file system", str(source))
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", read_only)
    line = fails_with_one_line(capsys, train_args(data_dir, run, "--epochs", "1", "--fresh"))
    assert "cannot move" in line and "Read-only file system" in line and "nothing was moved" in line
    monkeypatch.undo()
    os.remove(run / ".lock")
    (run / ".lock").mkdir()  # an odd lock: a folder in its place
    for extra in ((), ("--fresh",)):
        line = fails_with_one_line(capsys, train_args(data_dir, run, "--epochs", "3", *extra))
        assert "lock" in line and str(run / ".lock") in line
    os.rmdir(run / ".lock")
    (run / ".lock").write_bytes(b"\x00\xff garbage, not a holder")  # odd text: still a lock
    link = tmp_path / "link"
    link.symlink_to(run)
    assert "symbolic link" in fails_with_one_line(capsys, train_args(data_dir, link, "--fresh"))
    assert_intact(before, run)
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0


# --- A failed start ------------------------------------------------------------------------------
def test_a_failed_start_leaves_nothing_it_created(data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "new" / "deeper" / "run"
    line = fails_with_one_line(capsys, train_args("/nonexistent", out, "--epochs", "1"))
    assert "file not found" in line
    assert os.listdir(tmp_path) == []  # not the run directory, nor the folders above it
    empty = tmp_path / "empty"
    empty.mkdir()

    def interrupted(args):
        raise KeyboardInterrupt  # Ctrl-C while the data loads

    monkeypatch.setattr(training, "load_data", interrupted)
    assert train.main(train_args(data_dir, empty, "--epochs", "1")) == errors.EXIT_INTERRUPTED
    assert os.listdir(empty) == []  # the folder was there before: it stays, empty


@pytest.mark.slow
def test_a_failed_fresh_start_puts_the_previous_run_back(run, capsys):
    before = snapshot(run)
    assert train.main(train_args("/nonexistent", run, "--epochs", "1", "--fresh")) == 1
    captured = capsys.readouterr()
    assert "file not found" in one_error_line(captured.err)
    assert f"moved the previous run back to {run}" in captured.out
    assert snapshot(run) == before
    assert [name for name in os.listdir(run.parent)] == ["run"]


# --- Writers and readers -------------------------------------------------------------------------
@pytest.mark.slow
def test_a_writers_start_keeps_a_live_readers_temporary_files(data_dir, run, tmp_path):
    host = socket.gethostname()
    reader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    finished = subprocess.run(["true"])
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    live = [f".tmp-{host}-{reader.pid}-abcdefgh", f"samples/.tmp-{host}-{reader.pid}-x1y2z3w4",
            f".tmp-otherhost-{dead_pid.pid}-abcdefgh",  # another machine's: cannot be told
            ".tmp-recent99", ".tmp-notes-of-the-user"]
    dead = [f".tmp-{host}-{dead_pid.pid}-abcdefgh", f"samples/.tmp-{host}-{dead_pid.pid}-a1b2c3d4",
            ".tmp-old12345", f"checkpoints/.saving-{host}-{dead_pid.pid}-abcdefgh/model-9.index",
            "checkpoints/.saving-abcd1234/model-9.index"]
    for name in live + dead:
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_bytes(b"half written")
    two_hours_ago = time.time() - 7200
    os.utime(run / ".tmp-old12345", (two_hours_ago, two_hours_ago))  # an earlier version's
    try:
        assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    finally:
        reader.kill()
        reader.wait()
    assert finished.returncode == 0
    for name in live:
        assert (run / name).read_bytes() == b"half written", name
    for name in dead:
        assert not (run / name).exists(), name
    assert not [name for name in os.listdir(run / "checkpoints") if name.startswith(".saving-")]


# --- A second process -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_trainer_is_refused_and_a_killed_ones_lock_does_not_block(data_dir, run,
                                                                           capsys):
    first = start_training(data_dir, run, "--epochs", "1000")
    deadline = time.time() + 120
    while not checkpoint_steps(run) or checkpoint_steps(run)[0] <= 8:  # it is training
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.1)
    assert train.main(train_args(data_dir, run, "--epochs", "1000")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"process {first.pid}" in line and "is in use" in line
    assert train.main(train_args(data_dir, run, "--epochs", "3", "--fresh")) == 1  # nor moved aside
    assert f"process {first.pid}" in one_error_line(capsys.readouterr().err)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    steps = checkpoint_steps(run)
    assert train.main(train_args(data_dir, run, "--epochs", str(steps[0] // 4 + 1))) == 0
    assert checkpoint_steps(run)[0] == steps[0] + 4
