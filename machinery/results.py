"""What the measuring commands leave in a run directory: evaluation.json (evaluate.py's results,
by step, every one kept) and features.json (features.py's newest table)."""
import fcntl
import json
import os
import time

from machinery import durable
from machinery.errors import cause, write_or_fail


def write_features(run, results):
    """features.py's results for a run_directory.RunDir, replaced whole (one result per run: the
    newest).

    Raises:
      RunError: it cannot be written.
    """
    write_or_fail(run.features_path, durable.write_json, results,
                  unsaved="the table above was not saved")


def add_evaluation(run, key, result):
    """Adds `result` under `key` to a run_directory.RunDir's evaluation.json, keeping every
    earlier result.

    A damaged evaluation.json is never dropped: it is moved aside to
    evaluation.json.damaged-<time>, with a note, and a new file is started. Two processes
    adding at once take turns (a lock file), so neither loses the other's result.

    Raises:
      RunError: the file cannot be written (the message names it and the cause).
    """
    def add(path):
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            history = _read_evaluations(path)
            history[key] = result
            durable.write_json(path, history)

    write_or_fail(run.evaluation_path, add, unsaved="the result above was not saved")


def _read_evaluations(path):
    try:
        with open(path, encoding="utf-8") as handle:
            history = json.load(handle)
        if isinstance(history, dict):
            return history
        problem = f"a JSON {type(history).__name__}, not an object"
    except FileNotFoundError:
        return {}
    except ValueError as error:
        problem = cause(error)
    aside = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(path, aside)
    print(f"{path} was damaged ({problem}); kept it as {aside} and started a new one")
    return {}
