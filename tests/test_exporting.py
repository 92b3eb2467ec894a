"""export.py and machinery/exporting.py: the SavedModel's pixels against generate.py's, its loading
by plain TensorFlow without this project, TensorFlow's own CLI, TF Lite, and --out written whole
or not at all, whatever fails or is killed on the way."""
import errno
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import data
import export
import generate
import train
from machinery import (averaged_generator, checkpoints, durable, exporting, run_directory,
                       sampling, sessions)
from helpers import limit_file_size, train_args

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
G_EMA = 0.9  # the runs keep an averaged generator, so one run covers both generators
CONFIG = {"dataset": "svhn", "output_dim": 3, "z_dim": 100, "batch_size": 16, "image_size": 32,
          "g_ema": G_EMA, "precision": "float32"}

# A user's process: TensorFlow and NumPy, nothing of the project. It loads each SavedModel named
# in argv, calls its signature on the z of a .npy file whole and at batches 1 and 3, and saves
# the pixels of the whole.
LOAD_AND_CALL = r"""
import json, sys
import numpy as np
import tensorflow as tf
try:
    import dcgan
    project_importable = True
except ModuleNotFoundError:
    project_importable = False
z = np.load(sys.argv[1])
found = {"project_importable": project_importable, "models": {}}
for model, out in zip(*[iter(sys.argv[2:])] * 2):
    signature = tf.saved_model.load(model).signatures["serving_default"]
    call = lambda rows: signature(z=tf.constant(rows))["images"].numpy()
    whole, one, three = call(z), call(z[:1]), call(z[:3])
    np.save(out, whole)
    assert np.array_equal(one, whole[:1]) and np.array_equal(three, whole[:3])
    found["models"][model] = {"dtype": str(whole.dtype), "shape": list(whole.shape),
                              "outputs": sorted(signature.structured_outputs)}
print(json.dumps(found))
"""

# TF Lite in a user's process: the model's signature at batch 1, against the SavedModel's.
TFLITE = r"""
import json, sys
import numpy as np
import tensorflow as tf
lite, saved = sys.argv[1], sys.argv[2]
interpreter = tf.lite.Interpreter(model_path=lite)
runner = interpreter.get_signature_runner("serving_default")
signature = tf.saved_model.load(saved).signatures["serving_default"]
z = np.random.default_rng(11).uniform(-1, 1, (8, 100)).astype(np.float32)
differences = [np.abs(runner(z=row[None])["images"].astype(int)
                      - signature(z=tf.constant(row[None]))["images"].numpy()) for row in z]
print(json.dumps({"input": [int(n) for n in interpreter.get_input_details()[0]["shape_signature"]],
                  "dtype": interpreter.get_output_details()[0]["dtype"].__name__,
                  "max_difference": int(np.max(differences))}))
"""


# --- Helpers and runs ------------------------------------------------------------------------
def snapshot(folder):
    """Every file under `folder` with its size and modification time."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            status = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), folder)] = (status.st_size,
                                                                        status.st_mtime_ns)
    return found


def one_error_line(text):
    assert text.startswith("error: ") and text.count("\n") == 1, text
    return text


def saved_model_pixels(path, z):
    """The SavedModel's signature on `z`, called in this process (graph mode)."""
    with tf1.Session(graph=tf.Graph()) as sess:
        signature = tf1.saved_model.loader.load(sess, ["serve"], str(path)).signature_def[
            "serving_default"]
        return sess.run(signature.outputs["images"].name, {signature.inputs["z"].name: z})


def expected_pixels(run, z, seed=0, raw=False):
    """What generate.py writes for `z`."""
    return data.to_uint8(sampling.sample_images(run_directory.RunDir(str(run)), 0, seed, z=z,
                                                raw=raw).images)


def write_config(folder, **settings):
    folder.mkdir(parents=True)
    (folder / run_directory.RUN_MARKER).touch()
    (folder / "checkpoints").mkdir()
    (folder / "config.json").write_text(json.dumps({**CONFIG, **settings}))


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    """A run directory whose checkpoint model-0 holds freshly initialised generators, trained and
    averaged (made without training: a second)."""
    run = tmp_path_factory.mktemp("fresh") / "run"
    write_config(run)
    with tf.Graph().as_default():
        tf1.set_random_seed(3)
        sampling.build_sampler(3)
        sampling.build_sampler(3, averaged=True)
        saver = tf1.train.Saver(averaged_generator.checkpointed_variables())
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            checkpoints.save(str(run / "checkpoints"), sess, saver, 0)
    return run


@pytest.fixture(scope="module")
def fresh_export(fresh_run, tmp_path_factory):
    """fresh_run exported with the defaults (its averaged generator)."""
    return exporting.export_run(str(fresh_run), str(tmp_path_factory.mktemp("fresh") / "model"))


@pytest.fixture
def z():
    return sessions.draw_z(np.random.default_rng(7), 40, 100)


# --- Pixels ----------------------------------------------------------------------------------
def _pixel_boundaries():
    """float32 images at and around every level boundary of to_uint8 (where (x + 1) * 127.5
    is k + 0.5), six ulps either side, the ends, and values past them."""
    centres = np.float32((np.arange(-1, 257) + 0.5) / data.PIXEL_HALF_RANGE - 1.0)
    values, above, below = [centres], centres, centres
    for _ in range(6):
        above, below = np.nextafter(above, np.float32(2)), np.nextafter(below, np.float32(-2))
        values += [above, below]
    ends = np.float32([-1.5, -1.0, -0.0, 0.0, 1.0, 1.5])
    return np.concatenate([*values, ends]).astype(np.float32)


def test_graph_pixels_equal_to_uint8_at_every_level_boundary(graph):
    images = _pixel_boundaries()
    scaled = (images + np.float32(1.0)) * np.float32(data.PIXEL_HALF_RANGE)
    assert np.count_nonzero(scaled == np.floor(scaled) + 0.5) > 100  # where rounding shows
    halves = np.arange(-3, 257, dtype=np.float32) + np.float32(0.5)
    placeholder = tf1.placeholder(tf.float32, [None])
    with tf1.Session() as sess:
        pixels = sess.run(exporting.pixels_uint8(placeholder), {placeholder: images})
        rounded = sess.run(tf.round(placeholder), {placeholder: halves})
    np.testing.assert_array_equal(rounded, np.rint(halves))  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2
    np.testing.assert_array_equal(pixels, data.to_uint8(images))


@pytest.mark.parametrize("raw, seed", [(False, 0), pytest.param(False, 3, marks=pytest.mark.slow),
                                       pytest.param(True, 0, marks=pytest.mark.slow)])
def test_the_saved_model_gives_generate_pixels_at_any_batch(fresh_run, tmp_path, z, raw, seed):
    made = exporting.export_run(str(fresh_run), str(tmp_path / "model"), seed=seed, raw=raw)
    expected = expected_pixels(fresh_run, z, seed, raw)
    assert expected.std() > 0  # not a constant picture any model would match
    for rows in (z, z[:1], z[:3]):
        np.testing.assert_array_equal(saved_model_pixels(made.path, rows), expected[:len(rows)])
    marker = json.loads((tmp_path / "model" / exporting.SAVED_MODEL_MARKER).read_text())
    assert marker == json.loads(json.dumps(made.metadata))
    assert marker["generator"] == ("trained generator" if raw else
                                   f"averaged generator (decay {G_EMA})")
    assert marker["checkpoint"].endswith("model-0") and marker["seed"] == seed
    assert marker["inputs"] == {"z": {"dtype": "float32", "shape": [None, 100]}}


def test_the_seed_sets_the_averaged_generators_statistics(fresh_run, fresh_export, tmp_path, z):
    other = exporting.export_run(str(fresh_run), str(tmp_path / "model"), seed=3)
    assert not np.array_equal(saved_model_pixels(other.path, z),
                              saved_model_pixels(fresh_export.path, z))


# --- Bad input: one line, nothing written ----------------------------------------------------
def test_the_flags():
    args = export.parse_args(["--run", "r", "--out", "o"])
    assert (args.format, args.seed, args.checkpoint, args.raw, args.force) == \
        ("saved_model", 0, None, False, False)
    assert export.FORMATS == exporting.FORMATS
    assert "the best one a run trained with --eval-every kept" in " ".join(
        export.build_parser().format_help().split())


@pytest.mark.parametrize("argv, flag", [(["--out", "o", "--format", "onnx"], "--format"),
                                        (["--out", "o", "--seed", "-1"], "--seed"),
                                        ([], "--out")])
def test_bad_flags_exit_with_usage(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.parse_args(["--run", "r", *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert ": error: " in error and flag in error


def bad_input_cases(fresh_run, tmp_path):
    """(argv, what the line says) for every refusal that needs no training."""
    empty_run = tmp_path / "untrained"
    write_config(empty_run)
    not_ours = tmp_path / "notes"
    not_ours.mkdir()
    (not_ours / "notes.txt").write_text("mine")
    ours = tmp_path / "old-export"
    (ours / "assets.extra").mkdir(parents=True)
    (ours / exporting.SAVED_MODEL_MARKER).write_text("{}")
    run, out = str(fresh_run), str(tmp_path / "model")
    return [
        (["--run", str(tmp_path / "nothing"), "--out", out], "is not a run directory"),
        (["--run", str(empty_run), "--out", out], "holds no checkpoint yet"),
        (["--run", run, "--checkpoint", str(fresh_run / "checkpoints" / "model-9"), "--out", out],
         "model-9: cannot be restored"),
        (["--run", run, "--out", str(ours)], "already exists; use --force"),
        (["--run", run, "--out", str(not_ours), "--force"], "is not an export of export.py"),
        (["--run", run, "--out", str(fresh_run / "checkpoints" / "model"), "--force"],
         "inside the run's checkpoints folder"),
        (["--run", run, "--out", str(fresh_run / "checkpoints")], "inside the run's checkpoints"),
        (["--run", run, "--out", run, "--force"], "is the run directory or holds it"),
        (["--run", run, "--out", str(fresh_run.parent), "--force"], "the run directory or holds"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(fresh_run, tmp_path, capsys):
    cases = bad_input_cases(fresh_run, tmp_path)
    before, run_before = snapshot(tmp_path), snapshot(fresh_run)
    for argv, expected in cases:
        assert export.main(argv) == 1, argv
        assert expected in one_error_line(capsys.readouterr().err), argv
        assert snapshot(tmp_path) == before and snapshot(fresh_run) == run_before
        assert sorted(os.listdir(tmp_path)) == ["notes", "old-export", "untrained"]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write into: mode 0555, and for root (whom modes do not stop) the
    immutable attribute as well. Skips where neither holds."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and subprocess.run(
        ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            yield folder
        else:
            pytest.skip("cannot make a read-only folder here")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("below", ["model", "new/model"])
def test_a_read_only_destination_is_one_line(fresh_run, read_only_folder, capsys, below):
    assert export.main(["--run", str(fresh_run), "--out", str(read_only_folder / below)]) == 1
    error = one_error_line(capsys.readouterr().err)
    assert "Permission denied" in error or "Operation not permitted" in error
    assert "nothing was written" in error and os.listdir(read_only_folder) == []


# --- Writing ---------------------------------------------------------------------------------
def fail_after_the_variables(monkeypatch, parent):
    """Builder.save fails as a full disk would, once the variables are written into the
    temporary folder; returns the list it fills, then, with those variable files."""
    written = []

    def save(builder, as_text=False):
        for name in os.listdir(parent):
            if name.startswith(exporting.STAGING_PREFIX):
                written.extend(os.listdir(os.path.join(parent, name, "saved_model", "variables")))
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tf1.saved_model.Builder, "save", save)
    return written


def test_a_failed_write_leaves_no_out_no_temporary_and_no_created_folder(fresh_run, tmp_path,
                                                                         monkeypatch, capsys):
    written = fail_after_the_variables(monkeypatch, tmp_path / "new")
    assert export.main(["--run", str(fresh_run), "--out", str(tmp_path / "new" / "model")]) == 1
    error = one_error_line(capsys.readouterr().err)
    assert "No space left on device" in error and "nothing was written" in error
    assert "variables.index" in written  # it failed mid-write
    assert os.listdir(tmp_path) == []  # new/ was created for it, and removed again


def test_force_keeps_the_old_export_when_the_new_one_fails(fresh_run, fresh_export, tmp_path,
                                                           monkeypatch):
    out = tmp_path / "model"
    shutil.copytree(fresh_export.path, out)
    before = snapshot(out)
    written = fail_after_the_variables(monkeypatch, tmp_path)
    with pytest.raises(exporting.RunError, match="No space left on device.*is as it was"):
        exporting.export_run(str(fresh_run), str(out), force=True)
    assert "variables.index" in written
    assert snapshot(out) == before and os.listdir(tmp_path) == ["model"]


def test_a_failed_rename_puts_the_old_export_back(fresh_run, fresh_export, tmp_path,
                                                  monkeypatch):
    out = tmp_path / "model"
    shutil.copytree(fresh_export.path, out)
    before = snapshot(out)
    rename = os.rename

    def failing_rename(source, target):
        if str(source).endswith("saved_model") and str(target) == str(out):
            raise OSError(errno.EIO, "Input/output error")
        rename(source, target)
    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(exporting.RunError, match="Input/output error.*is as it was"):
        exporting.export_run(str(fresh_run), str(out), force=True)
    assert snapshot(out) == before and os.listdir(tmp_path) == ["model"]


def test_force_replaces_an_export_and_an_empty_folder_is_taken(fresh_run, fresh_export,
                                                               tmp_path, z):
    out = tmp_path / "model"
    shutil.copytree(fresh_export.path, out)
    made = exporting.export_run(str(fresh_run), str(out), raw=True, force=True)
    marker = json.loads((out / exporting.SAVED_MODEL_MARKER).read_text())
    assert marker["generator"] == made.generator == "trained generator"
    np.testing.assert_array_equal(saved_model_pixels(out, z), expected_pixels(fresh_run, z,
                                                                              raw=True))
    empty = tmp_path / "empty"
    empty.mkdir()
    exporting.export_run(str(fresh_run), str(empty))
    assert exporting.is_export(str(empty)) and sorted(os.listdir(tmp_path)) == ["empty", "model"]


def test_leftovers_of_killed_exporters_go_and_live_ones_stay(fresh_run, tmp_path):
    ended = subprocess.Popen(["true"])
    ended.wait()  # its process id no longer runs
    host = socket.gethostname()
    dead = tmp_path / f"{exporting.STAGING_PREFIX}{host}-{ended.pid}-ab1"
    live = tmp_path / f"{exporting.STAGING_PREFIX}{host}-1-cd2"  # init's: alive
    dead.mkdir()
    live.mkdir()
    exporting.export_run(str(fresh_run), str(tmp_path / "model"))
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "model"])


def test_tflite_conversion_refused_is_one_line_and_writes_nothing(fresh_run, tmp_path,
                                                                  monkeypatch):
    class Refusing:
        def convert(self):
            raise RuntimeError("op not supported")
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model",
                        staticmethod(lambda path: Refusing()))
    with pytest.raises(exporting.RunError, match="refused the SavedModel .RuntimeError: op not "
                                                 "supported.; nothing was written"):
        exporting.export_run(str(fresh_run), str(tmp_path / "lite"), exporting.TFLITE)
    assert os.listdir(tmp_path) == []


# --- TF Lite (converting takes seconds) ------------------------------------------------------
@pytest.mark.slow
def test_tflite_is_checked_against_the_saved_model_before_it_is_published(fresh_run, tmp_path,
                                                                          monkeypatch):
    made = exporting.export_run(str(fresh_run), str(tmp_path / "lite"), exporting.TFLITE)
    assert sorted(os.listdir(made.path)) == [exporting.MARKER_NAME, exporting.TFLITE_FILE]
    check = made.metadata["tflite_check"]
    assert check["max_levels"] <= 1 and check["pixels"] == 4 * 32 * 32 * 3
    assert "checked at batch 1 on 4 z against the SavedModel" in exporting.describe(made)
    original = exporting._saved_model_pixels
    monkeypatch.setattr(exporting, "_saved_model_pixels",
                        lambda *args: original(*args).astype(int) + 2)
    with pytest.raises(exporting.RunError, match="differs from the SavedModel by up to 2 levels"):
        exporting.export_run(str(fresh_run), str(tmp_path / "wrong"), exporting.TFLITE)
    assert os.listdir(tmp_path) == ["lite"]


# --- A trained run, and processes of their own -----------------------------------------------
def clean_environment(home):
    """PATH to the venv and the system, a HOME of the test's own: nothing of the project (no
    PYTHONPATH), so the process sees TensorFlow and NumPy alone."""
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # set where old OpenBLAS errs
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def run_clean(argv, cwd, timeout=300):
    """argv in a clean environment, in `cwd` (outside the project)."""
    result = subprocess.run([str(word) for word in argv], cwd=str(cwd), capture_output=True,
                            text=True, env=clean_environment(cwd), timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_clean_python(code, args, cwd):
    """`python -c code args...` in a clean process; the JSON of its last line."""
    result = run_clean([sys.executable, "-c", code, *args], cwd)
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_export(*argv, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "export.py"), *map(str, argv)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """One epoch of 4 batches of 16 with --g-ema: checkpoint model-4."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--g-ema", str(G_EMA))) == 0
    return run


@pytest.mark.slow
def test_plain_tensorflow_makes_generate_pixels_and_its_cli_lists_the_signature(trained_run,
                                                                                tmp_path):
    models, client = tmp_path / "models", tmp_path / "client"
    client.mkdir()
    args = []
    for name, raw in (("averaged", []), ("raw", ["--raw"])):
        assert generate.main(["--run", str(trained_run), "--num", "40", "--seed", "5",
                              "--out", str(tmp_path / f"{name}.npz"), *raw]) == 0
        assert export.main(["--run", str(trained_run), "--out", str(models / name), "--seed",
                            "5", *raw]) == 0
        args += [models / name, client / f"{name}.npy"]
    z = np.load(tmp_path / "averaged.npz")["z"]
    np.testing.assert_array_equal(np.load(tmp_path / "raw.npz")["z"], z)
    np.save(client / "z.npy", z)
    report = run_clean_python(LOAD_AND_CALL, [client / "z.npy", *args], client)
    assert report["project_importable"] is False
    for name in ("averaged", "raw"):
        assert report["models"][str(models / name)] == {
            "dtype": "uint8", "shape": [40, 32, 32, 3], "outputs": ["images"]}
        np.testing.assert_array_equal(np.load(client / f"{name}.npy"),
                                      np.load(tmp_path / f"{name}.npz")["images"], err_msg=name)
    shown = run_clean([os.path.join(VENV_BIN, "saved_model_cli"), "show", "--dir",
                       models / "averaged", "--all"], client).stdout
    assert "signature_def['serving_default']" in shown
    assert "inputs['z'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 100)" in shown
    assert "outputs['images'] tensor_info:\n        dtype: DT_UINT8\n        " \
           "shape: (-1, 32, 32, 3)" in shown


@pytest.mark.slow
def test_the_tflite_command_and_tf_lite_in_a_plain_process(trained_run, tmp_path):
    process = start_export("--run", trained_run, "--out", tmp_path / "lite", "--format", "tflite")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0 and err == "", err
    assert out.startswith(f"wrote the TF Lite model {tmp_path / 'lite' / 'model.tflite'} from ")
    assert "checked at batch 1 on 4 z against the SavedModel" in out
    assert export.main(["--run", str(trained_run), "--out", str(tmp_path / "saved")]) == 0
    found = run_clean_python(TFLITE, [tmp_path / "lite" / "model.tflite", tmp_path / "saved"],
                             tmp_path)
    assert found == {"input": [-1, 100], "dtype": "uint8", "max_difference": found[
        "max_difference"]} and found["max_difference"] <= 1


@pytest.mark.slow
def test_a_disk_that_fills_and_a_kill_mid_write_leave_nothing(trained_run, tmp_path):
    out = tmp_path / "exports" / "model"
    # 1 MB: the 20 MB variables file does not fit.
    process = start_export("--run", trained_run, "--out", out,
                           preexec_fn=limit_file_size(1 << 20))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "File too large" in one_error_line(err) and "nothing was written" in err
    assert os.listdir(tmp_path) == []
    (tmp_path / "exports").mkdir()
    before = snapshot(trained_run)
    process = start_export("--run", trained_run, "--out", out)
    deadline = time.time() + 120
    while not glob.glob(str(tmp_path / "exports" / ".export-*" / "*")):  # it is writing
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = os.listdir(tmp_path / "exports")
    assert len(left) == 1 and left[0].startswith(exporting.STAGING_PREFIX)
    assert durable.left_by_dead(left[0], exporting.STAGING_PREFIX)
    assert export.main(["--run", str(trained_run), "--out", str(out)]) == 0
    assert os.listdir(tmp_path / "exports") == ["model"]  # the leftover went
    assert snapshot(trained_run) == before


@pytest.mark.slow
def test_a_conditional_run_exports_a_label_input_that_gives_generate_pixels(data_dir,
                                                                            tmp_path):
    run, out = tmp_path / "run", tmp_path / "export"
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--conditional")) == 0
    assert generate.main(["--run", str(run), "--num", "6", "--class", "4", "--out",
                          str(tmp_path / "four.npz")]) == 0
    assert export.main(["--run", str(run), "--out", str(out)]) == 0
    four = np.load(tmp_path / "four.npz")
    with tf1.Session(graph=tf.Graph()) as sess:
        signature = tf1.saved_model.loader.load(sess, ["serve"], str(out)).signature_def[
            "serving_default"]
        assert set(signature.inputs) == {"z", "label"}
        pixels = sess.run(signature.outputs["images"].name,
                          {signature.inputs["z"].name: four["z"],
                           signature.inputs["label"].name: four["labels"]})
    np.testing.assert_array_equal(pixels, four["images"])
