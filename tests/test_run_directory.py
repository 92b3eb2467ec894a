"""machinery/run_directory.py: a run's settings (config.json damaged in every way is one line for
every command, wrong types, a folder run naming its folder, paths relative to where the run
started, its folder loaded again as the run decoded it), the marker (a run of an earlier version
without it still resumes), and one run under two spellings."""
import json
import os
import shutil

import numpy as np
import pytest

import data
import evaluate
import generate
import train
from machinery import durable, errors, run_directory
from helpers import (FIRST_CONFIG, checkpoint_steps, one_error_line, quiet, snapshot, train_args,
                     write_folder)


def folder_run_settings(tmp_path, images, **more):
    """The settings train.py records of a 16x16 run on the folder `images`."""
    dataset = data.load_folder(images, str(tmp_path / "data"), image_size=16, log=quiet)
    return dict({"dataset": "folder", "images": images, "data_dir": str(tmp_path / "data"),
                 "image_size": 16, "channels": None, "fit": "crop",
                 "data_fingerprint": dataset.fingerprint, "num_images": len(dataset.images),
                 "output_dim": 1, "z_dim": 100}, **more), dataset


def test_evaluate_and_features_load_the_folder_again_as_the_run_decoded_it(tmp_path):
    root = str(tmp_path / "pictures")
    write_folder(root, per_class=4)
    config, dataset = folder_run_settings(tmp_path, root)
    messages = []
    again, path = run_directory.load_trained_folder(config, messages.append)
    assert path == root and again.fingerprint == dataset.fingerprint
    assert any("from the cache" in message for message in messages)  # not decoded again
    np.testing.assert_array_equal(again.images, dataset.images)
    with pytest.raises(data.DatasetError, match=r"has changed since the run trained on it \(12 "
                                                r"images then, 12 now\)"):
        run_directory.load_trained_folder(dict(config, data_fingerprint="0" * 16), quiet)


def test_a_relative_path_of_a_runs_settings_is_relative_to_where_it_started(tmp_path,
                                                                            monkeypatch):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    (start / "pictures").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.chdir(start)
    run = run_directory.RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    run.write_config({"images": "pictures"})
    config = json.loads(open(run.config_path).read())
    assert config == {"images": "pictures", "working_dir": str(start)}
    run.write_config({"images": "pictures", "working_dir": "/named"})  # as the settings say
    assert run.saved_config()["working_dir"] == "/named"
    monkeypatch.chdir(elsewhere)
    assert run_directory.setting_path(config, "images") == str(start / "pictures")
    assert run_directory.setting_path(config, "data_dir", "data") == str(start / "data")
    assert run_directory.setting_path(dict(config, images=str(tmp_path)), "images") == str(tmp_path)
    # an older run:
    assert run_directory.setting_path({"images": "pictures"}, "images") == "pictures"
    (elsewhere / "moved").mkdir()  # only here: the tree was moved, the run with it
    assert run_directory.setting_path(dict(config, images="moved"), "images") == "moved"
    assert run_directory.setting_path(config, "channels") is None


def test_a_folder_runs_settings_must_name_its_folder(tmp_path):
    run = run_directory.RunDir(str(tmp_path))
    settings = {"dataset": "folder", "output_dim": 1, "z_dim": 100}
    durable.write_json(run.config_path, settings)
    with pytest.raises(errors.RunError, match="run settings lack images, fit, data_fingerprint, "
                                              "num_images$"):
        run.read_config()
    durable.write_json(run.config_path, dict(settings, images=7, fit="crop", data_fingerprint="f",
                                             num_images=3))
    with pytest.raises(errors.RunError, match="images 7 is not a str; the file is damaged$"):
        run.read_config()


@pytest.mark.slow
def test_a_run_of_an_earlier_version_without_the_marker_resumes(data_dir, run, capsys):
    os.remove(run / run_directory.RUN_MARKER)
    shutil.copyfile(FIRST_CONFIG, run / "config.json")  # the first version's settings
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    assert checkpoint_steps(run) == [12, 8, 4] and (run / run_directory.RUN_MARKER).is_file()


# --- Damaged run files -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"{\"dataset\": \"sv", b"[1, 2]", b"\xff\xfe\x00garbage"])
def test_damaged_config_is_one_line_for_every_command(data_dir, run, capsys, content):
    (run / "config.json").write_bytes(content)
    before = snapshot(run)
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    assert "config.json: damaged run settings" in one_error_line(capsys.readouterr().err)
    assert generate.main(["--run", str(run), "--out", str(run.parent / "g.png")]) == 1
    assert "config.json: damaged" in one_error_line(capsys.readouterr().err)
    assert evaluate.main(["--run", str(run), "--num", "8"]) == 1
    assert "config.json: damaged" in one_error_line(capsys.readouterr().err)
    assert snapshot(run) == before


@pytest.mark.slow
def test_config_with_wrong_types_is_one_line(run, capsys):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, z_dim="a hundred")))
    assert generate.main(["--run", str(run), "--out", str(run.parent / "g.png")]) == 1
    assert "z_dim must be a positive integer" in one_error_line(capsys.readouterr().err)


# --- One run, two spellings -----------------------------------------------------------------
@pytest.mark.slow
def test_a_trailing_slash_names_the_same_run(data_dir, run, capsys):
    assert train.main(train_args(data_dir, str(run) + "/", "--epochs", "3")) == 0
    assert checkpoint_steps(run) == [12, 8, 4]
    assert train.main(train_args(data_dir, str(run) + "/", "--epochs", "1", "--fresh")) == 0
    assert [name for name in os.listdir(run.parent) if name.startswith("run.old-")]
    assert checkpoint_steps(run) == [4]
