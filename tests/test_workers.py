"""Two worker processes on localhost (TF_CONFIG, free ports, MultiWorkerMirroredStrategy): they
train the same weights, the chief alone writes the run directory, a resumed run gives every
worker the chief's checkpoint, and a killed worker ends the other with one line. Every process
has a hard time limit; the sessions get 4 inter-op threads, so 2 cores cannot deadlock them."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import train
from helpers import (ROOT, assert_matches_one_device, checkpoint_values, train_args, train_steps,
                     write_svhn)

pytestmark = pytest.mark.slow


LIMIT = 240  # seconds any worker process may take (start-up is ~15 s each on 2 cores)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def worker_environments(tmp_path, workers=2):
    """Each worker's environment: TF_CONFIG with its index, and a temporary folder of its own
    (to see what it leaves there)."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    environments = []
    for index in range(workers):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir(exist_ok=True)
        environments.append(dict(os.environ, TMPDIR=str(scratch), TF_CONFIG=json.dumps(
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})))
    return environments


def start(command, environment, log):
    return subprocess.Popen([sys.executable, *command], cwd=ROOT, env=environment,
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def run_together(commands, environments, tmp_path, name, signal_after=None, waited=None):
    """Runs one command per worker at once. With `signal_after` = (checkpoint, worker, signal),
    sends the signal to that worker once the checkpoint exists. Waits for the workers listed in
    `waited` (default all) and kills the rest; returns [(exit code or None, output)]."""
    logs = [open(tmp_path / f"{name}-{index}.log", "w+") for index in range(len(commands))]
    processes = [start(command, environment, log)
                 for command, environment, log in zip(commands, environments, logs)]
    try:
        if signal_after:
            checkpoint, worker, signal_number = signal_after
            wait_for(checkpoint, processes[0])
            processes[worker].send_signal(signal_number)
        codes = [process.wait(timeout=LIMIT) if index in (waited or range(len(processes)))
                 else None for index, process in enumerate(processes)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    return list(zip(codes, outputs))


@pytest.mark.parametrize("mode", ["train", "chief-values"])
def test_two_workers_hold_the_same_weights(mode, tmp_path):
    environments = worker_environments(tmp_path)
    script = os.path.join(ROOT, "tests", "multi_worker_step.py")
    outs = [tmp_path / f"worker{index}.npz" for index in range(2)]
    results = run_together([[script, mode, str(out)] for out in outs], environments, tmp_path,
                           mode)
    for code, output in results:
        assert code == 0, output[-3000:]
    first, second = (dict(np.load(out)) for out in outs)
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), name
    if mode == "train":
        # Two workers at 4 images each, batch norm synchronized: one device at 8.
        one, _, _, _ = train_steps(1, steps=3)
        assert_matches_one_device(one, {name.replace("|", "/"): value
                                        for name, value in first.items()})
    else:
        # The chief alone added k + 1 to its k-th variable: the other worker holds that too.
        names = list(second)
        assert second["global_step"] == names.index("global_step") + 1
        gamma = "generator|bn1|gamma"  # initialised to ones
        np.testing.assert_array_equal(second[gamma], 1.0 + names.index(gamma) + 1)


def train_command(data_dir, out, *extra):
    return ["train.py", *train_args(data_dir, out, "--worker-timeout", "20", *extra)]


def test_two_workers_train_one_run_directory_and_resume_together(data_dir, tmp_path):
    environments = worker_environments(tmp_path)
    run, elsewhere = tmp_path / "run", tmp_path / "worker2-out"
    commands = [train_command(data_dir, run, "--epochs", "1", "--g-ema", "0.9"),
                train_command(data_dir, elsewhere, "--epochs", "1", "--g-ema", "0.9")]
    results = run_together(commands, environments, tmp_path, "first")
    for code, output in results:
        assert code == 0, output[-3000:]
    values = checkpoint_values(run)  # the average started from the weights, not at random
    kernel = "generator/deconv2/kernel"
    assert np.mean(np.abs(values["g_ema/" + kernel] - values[kernel])) < 1e-3
    chief_output, other_output = results[0][1], results[1][1]
    assert "MultiWorkerMirroredStrategy, worker 1 of 2 (the chief" in chief_output
    assert re.search(r"first step ran on: /job:worker/replica:0/task:0/device:CPU:0: \d+ ops",
                     chief_output), chief_output[-3000:]
    assert "worker 2 of 2 (writes nothing" in other_output
    assert "run directory kept by the chief" in other_output
    assert checkpoint_values(run)["global_step"] == 4
    assert not elsewhere.exists()  # the other worker wrote nothing where it was pointed
    assert not os.listdir(tmp_path / "tmp1")  # and removed its scratch folder

    commands = [train_command(data_dir, run, "--epochs", "2", "--g-ema", "0.9"),
                train_command(data_dir, elsewhere, "--epochs", "2", "--g-ema", "0.9")]
    results = run_together(commands, worker_environments(tmp_path), tmp_path, "second")
    for code, output in results:
        assert code == 0, output[-3000:]
    assert "resumed " in results[0][1] and "step 4, epoch 2, batch 0" in results[0][1]
    assert "took the chief's checkpoint: step 4, epoch 2, batch 0" in results[1][1]
    assert checkpoint_values(run)["global_step"] == 8
    assert not elsewhere.exists()


@pytest.mark.parametrize("differs, message", [
    ("settings", "the workers were started with different settings"),
    ("data", "the workers read different data"),
])
def test_workers_started_with_other_settings_or_data_refuse_to_train(differs, message, data_dir,
                                                                     tmp_path):
    """--g-steps changes the graph after the agreement op, which must pair up all the same."""
    other_data = data_dir
    if differs == "data":  # the same sizes, other pixels
        other_data = str(tmp_path / "other-data")
        write_svhn(os.path.join(other_data, "svhn", "train_32x32.mat"), 40, seed=11)
        write_svhn(os.path.join(other_data, "svhn", "test_32x32.mat"), 24, seed=12)
    extra = ("--g-steps", "1") if differs == "settings" else ()
    commands = [train_command(data_dir, tmp_path / "run", "--epochs", "1"),
                train_command(other_data, tmp_path / "run", "--epochs", "1", *extra)]
    for code, output in run_together(commands, worker_environments(tmp_path), tmp_path,
                                     differs):
        assert code == 1, output[-3000:]
        last = output.strip().splitlines()[-1]
        assert message in last, last
        assert "Traceback" not in output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_worker_that_cannot_start_leaves_the_others_one_line(data_dir, tmp_path):
    """The chief refuses its --out (not a run directory); the other worker waits for it no
    longer than --worker-timeout and says what to look at."""
    foreign = tmp_path / "not-a-run"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    commands = [train_command(data_dir, foreign, "--epochs", "1"),
                train_command(data_dir, tmp_path / "run", "--epochs", "1", "--worker-timeout",
                              "10")]
    (chief_code, chief_output), (code, output) = run_together(
        commands, worker_environments(tmp_path), tmp_path, "no-chief")
    assert chief_code == 1 and "Traceback" not in chief_output
    assert code == 1, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: worker 2 of 2: the other workers did not all join"), last
    assert "one that refused to start says why in its own output" in last
    assert "Traceback" not in output
    assert sorted(os.listdir(foreign)) == ["notes.txt"]


def signalled_run(data_dir, tmp_path, worker, signal_number, *extra, waited=None):
    """Two workers training for long; `signal_number` to `worker` once the first checkpoint is
    written. Returns the run directory and [(exit code or None, output)]."""
    run = tmp_path / "run"
    command = train_command(data_dir, run, "--epochs", "1000", *extra)
    results = run_together([command, command], worker_environments(tmp_path), tmp_path,
                           "signalled", (run / "checkpoints" / "model-4.index", worker,
                                         signal_number), waited)
    return run, results


def test_a_signal_to_one_worker_stops_every_worker_after_the_same_step(data_dir, tmp_path):
    # SIGTERM to the worker that keeps no checkpoints.
    run, results = signalled_run(data_dir, tmp_path, 1, signal.SIGTERM)
    assert [code for code, _ in results] == [130, 130], results
    chief_last, other_last = (output.strip().splitlines()[-1] for _, output in results)
    step = int(re.search(r"saved a checkpoint at step (\d+), and so did every worker",
                         chief_last).group(1))
    assert chief_last.startswith("another worker's signal: ")
    assert other_last.startswith(f"SIGTERM: every worker stopped at step {step}, and the chief "
                                 f"saved a checkpoint")
    assert checkpoint_values(run)["global_step"] == step  # saved mid-epoch, nothing lost
    assert train.main(train_args(data_dir, run, "--max-steps", str(step + 1))) == 0
    assert checkpoint_values(run)["global_step"] == step + 1


def test_a_stalled_worker_ends_the_other_after_the_timeout(data_dir, tmp_path):
    """SIGSTOP keeps the worker's sockets open: only --worker-timeout can end the wait."""
    _, [(code, output), _] = signalled_run(data_dir, tmp_path, 1, signal.SIGSTOP,
                                           "--worker-timeout", "10", waited=[0])
    assert code == 1, output[-3000:]
    last = output.strip().splitlines()[-1]
    # TensorFlow's own deadline, or the watchdog 10 s later if the wait does not obey it.
    assert re.match(r"error: worker 1 of 2: the other workers stopped answering "
                    r"\((DeadlineExceededError after --worker-timeout 10 s|no answer for 20 s)",
                    last), last
    assert "the last checkpoint is" in last


def wait_for(path, process, seconds=LIMIT):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert process.poll() is None, "the worker ended before its first checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.2)


@pytest.mark.parametrize("killed", [1, 0], ids=["other-worker-killed", "chief-killed"])
def test_a_killed_worker_ends_the_other_with_one_line(killed, data_dir, tmp_path):
    run, results = signalled_run(data_dir, tmp_path, killed, signal.SIGKILL,
                                 waited=[1 - killed])
    code, output = results[1 - killed]
    assert code == 1, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: worker {2 - killed} of 2: the other workers stopped "
                           f"answering"), output[-3000:]
    assert "Start every worker again with the same command to resume." in last
    assert "Traceback" not in output
    assert ("the last checkpoint is" if killed else "the chief keeps the checkpoints") in last
    # What the chief saved resumes, here on one device without TF_CONFIG.
    steps = checkpoint_values(run)["global_step"]
    assert train.main(train_args(data_dir, run, "--epochs", str(steps // 4 + 1))) == 0
    assert checkpoint_values(run)["global_step"] == (steps // 4 + 1) * 4
