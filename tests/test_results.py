"""machinery/results.py: evaluation.json keeps every result and sets a damaged file aside instead
of dropping it; a result that cannot be saved is still printed, in one line, nothing touched."""
import json
import os

import pytest

import evaluate
from machinery import classifiers, durable
from helpers import one_error_line, snapshot

pytestmark = pytest.mark.slow


def test_damaged_evaluation_json_is_kept_aside_never_dropped(run, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    (run / "evaluation.json").write_bytes(b'{"4": {"classifier_score": 2.0}, "8": {"cl')
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 0
    out = capsys.readouterr().out
    assert "evaluation.json was damaged" in out
    aside = [name for name in os.listdir(run) if name.startswith("evaluation.json.damaged-")]
    assert len(aside) == 1
    assert (run / aside[0]).read_bytes() == b'{"4": {"classifier_score": 2.0}, "8": {"cl'
    assert list(json.loads((run / "evaluation.json").read_text())) == ["8"]
    # A later evaluation adds to the file, keeping the earlier result.
    assert evaluate.main(["--run", str(run), "--num", "8",
                          "--checkpoint", str(run / "checkpoints" / "model-4")]) == 0
    assert sorted(json.loads((run / "evaluation.json").read_text())) == ["4", "8"]


def test_evaluate_prints_its_result_even_when_it_cannot_save_it(run, capsys, monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    config = json.loads((run / "config.json").read_text())
    evaluate.main(["--run", str(run), "--num", "8"])  # trains and caches the classifier
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(durable, "write_json", refuse)
    before = snapshot(run)
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 1
    captured = capsys.readouterr()
    assert "classifier score" in captured.out  # the result, printed
    line = one_error_line(captured.err)
    assert "cannot write" in line and "evaluation.json" in line and "Permission denied" in line
    assert snapshot(run) == before
    assert config["data_dir"]  # the classifier cache lived in the data folder, not the run
