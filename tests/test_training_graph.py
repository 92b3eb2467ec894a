"""machinery/training_graph.py: the training graph holds exactly the variables a checkpoint held
before the module redesign, and a checkpoint is tied to its settings: a changed one is refused
(--fresh starts over), 32 -> 64 is refused naming both, and a run saved before --image-size
existed resumes at 32."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

import train
from machinery import strategies, training_graph
from helpers import ROOT, checkpoint_values, train_args


def test_a_checkpoint_from_before_the_redesign_fits_the_training_graph():
    """The names and shapes a checkpoint of train.py held before the module redesign (listed from
    one written then): the training graph must still hold exactly these variables."""
    with open(os.path.join(ROOT, "tests", "fixtures", "checkpoint_variables_v1.json")) as handle:
        expected = json.load(handle)
    args = train.parse_args(["--dataset", "svhn", "--sample-grid", "6"])
    run_graph = training_graph.build_graph(args, output_dim=3, engine=strategies.single_device())
    with run_graph.graph.as_default():
        variables = {variable.op.name: variable.shape.as_list()
                     for variable in tf.compat.v1.global_variables()}
    assert variables == expected


@pytest.mark.slow
def test_changed_settings_refuse_to_resume_and_fresh_starts_over(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1")) == 0
    assert train.main(train_args(data_dir, run, "--epochs", "2", "--z-dim", "64")) == 1
    error = capsys.readouterr().err
    assert "z_dim 100 -> 64" in error and "--fresh" in error
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--z-dim", "64", "--fresh")) == 0
    assert checkpoint_values(str(run))["run_state/fixed_z"].shape == (36, 64)
    moved = [name for name in os.listdir(tmp_path) if name.startswith("run.old-")]
    assert len(moved) == 1  # the old run is kept, not deleted
    assert (tmp_path / moved[0] / "samples" / "epoch_0001.png").is_file()


@pytest.mark.slow
def test_resuming_a_32_run_at_64_is_refused_naming_both(two_epochs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    config = json.loads((run / "config.json").read_text())
    before = sorted(os.listdir(run / "checkpoints"))
    result = subprocess.run(
        [sys.executable, "train.py", *train_args(config["data_dir"], run, "--image-size", "64",
                                                 "--epochs", "3")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "image_size 32 -> 64" in error
    assert sorted(os.listdir(run / "checkpoints")) == before


@pytest.mark.slow
def test_a_run_saved_before_the_setting_resumes_at_32(two_epochs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    config = json.loads((run / "config.json").read_text())
    del config["image_size"]
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(train_args(config["data_dir"], run, "--epochs", "3")) == 0
    assert "resumed" in capsys.readouterr().out
