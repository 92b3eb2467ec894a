"""What one worker of a multi-machine run does besides training: agree with the others on the
settings and the data before it starts, keep enough threads for the collectives, and end with
one line, never a traceback or a hang, when the others stop answering.

The strategy, its server and the ops these checks run are strategies.py's; the graph is
dcgan.py's. Everything here is for `strategies.Engine`s with several workers and does nothing
for one.
"""
import contextlib
import hashlib
import json
import os
import sys
import threading
import time

import numpy as np
import tensorflow as tf

from machinery import checkpoints, errors

DATA_SAMPLE_ROWS = 64  # images whose pixels stand for the data's in the workers' comparison
MIN_INTER_OP_THREADS = 4
WATCHDOG_MARGIN = 10  # seconds past the timeout before the watchdog ends the process
# What a session call raises when another worker is gone or the cluster failed: it timed out,
# its connection closed, the collective was aborted, or gRPC reported an error of its own.
FAILURES = (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
            tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.InternalError,
            tf.errors.UnknownError)


def agreed_numbers(settings, images):
    """Two 40-bit numbers every worker must share, exact in the float64 the strategy sums them
    as (strategies.agreement_op): one of `settings` (a JSON-able dict), one of the data (its
    shape and the pixels of DATA_SAMPLE_ROWS images spread over it, so a copied folder with new
    file times is the same data; reading them costs milliseconds, even memory-mapped)."""
    def number(value):
        return int(hashlib.sha256(value).hexdigest()[:10], 16)

    rows = np.unique(np.linspace(0, len(images) - 1, DATA_SAMPLE_ROWS).astype(int))
    data_identity = json.dumps(list(images.shape)).encode() + \
        np.ascontiguousarray(images[rows]).tobytes()
    return (number(json.dumps(settings, sort_keys=True, default=str).encode()),
            number(data_identity))


def check_agreement(sess, agreement, agreed, engine, flags, run_options=None):
    """Runs the agreement op; every worker refuses to train unless all were started with the
    same settings (`flags` names them in the message) and data."""
    settings_total, data_total = sess.run(agreement, options=run_options)
    settings_number, data_number = agreed
    worker = f"worker {engine.worker_index + 1} of {engine.workers}"
    if settings_total != engine.replicas * settings_number:
        raise errors.RunError(f"{worker}: the workers were started with different settings (the "
                              f"flags {flags} must be the same on all); start every worker with "
                              f"the same command")
    if data_total != engine.replicas * data_number:
        raise errors.RunError(f"{worker}: the workers read different data (the same dataset, "
                              f"the same images in the same order, must be under every worker's "
                              f"--data-dir or --images)")


def inter_op_threads(engine, requested):
    """The session's inter-op threads: with several workers at least MIN_INTER_OP_THREADS, since
    a worker's collectives wait on the others' with threads of their own (0: TensorFlow's
    choice, one per core)."""
    if engine.workers == 1:
        return requested
    return max(requested or os.cpu_count() or 1, MIN_INTER_OP_THREADS)


class Progress:
    """Whether training has started: what a failure means depends on it."""
    started = False


def failure_line(engine, run, progress, what):
    """The one line a worker ends with when the others stopped answering: `what` happened,
    before training started (a worker not started yet, or one that refused to start) or during
    it (and then where to resume from)."""
    worker = f"worker {engine.worker_index + 1} of {engine.workers}"
    if not progress.started:
        return (f"{worker}: the other workers did not all join ({what}). Start every worker "
                f"TF_CONFIG lists, with the same command; one that refused to start says why "
                f"in its own output.")
    kept = checkpoints.newest(run.checkpoint_dir) if engine.chief else None
    resume = f"the last checkpoint is {kept}" if kept else \
        "no checkpoint yet" if engine.chief else "the chief keeps the checkpoints"
    return (f"{worker}: the other workers stopped answering ({what}); {resume}. Start every "
            f"worker again with the same command to resume.")


@contextlib.contextmanager
def failures(engine, run, timeout, progress):
    """With several workers: a worker that stopped answering (FAILURES) ends this one with
    failure_line as a RunError."""
    try:
        yield
    except FAILURES as error:
        if engine.workers == 1:
            raise
        waited = f" after --worker-timeout {timeout} s" \
            if isinstance(error, tf.errors.DeadlineExceededError) else ""
        what = f"{type(error).__name__}{waited}: {errors.cause(error)[:200]}"
        raise errors.RunError(failure_line(engine, run, progress, what)) \
            from None


class Watchdog:
    """With several workers: ends this process with failure_line's line when a session call
    that waits on the others outlives `timeout` by WATCHDOG_MARGIN. Some waits do not obey the
    call's own timeout: gRPC retries reaching a worker that never started for ever. Only calls
    that wait on other workers are watched, never a checkpoint being written."""

    def __init__(self, engine, run, timeout, progress):
        self.engine, self.run, self.timeout, self.progress = engine, run, timeout, progress
        self.deadline = None
        if engine.workers > 1:
            threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    @contextlib.contextmanager
    def watching(self):
        self.deadline = time.monotonic() + self.timeout + WATCHDOG_MARGIN
        try:
            yield
        finally:
            self.deadline = None

    def _watch(self):
        while True:
            time.sleep(1.0)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                line = failure_line(self.engine, self.run, self.progress,
                                    f"no answer for {self.timeout + WATCHDOG_MARGIN} s")
                print(f"error: {line}", file=sys.stderr, flush=True)
                os._exit(errors.EXIT_ERROR)  # the main thread is stuck inside TensorFlow
