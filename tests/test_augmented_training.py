"""train.py --augment, --augment-p, --augment-target and --flip: the flags and their refusals,
the health line, and (slow) runs: metrics and TensorBoard, an exact resume of the adaptive p, a
resume with other settings refused, and two replicas matching one device."""
import csv
import math
import os

import numpy as np
import pytest
import tensorflow as tf

import train
from machinery import sessions, strategies, training_health, training_step

tf1 = tf.compat.v1
BATCH = 16
AUGMENT = ["--augment", "translation,cutout,color"]


def args(data_dir, out, *extra):
    return ["--dataset", "svhn", "--data-dir", data_dir, "--skip-checksum", "--no-download",
            "--batch-size", str(BATCH), "--out", str(out), "--log-every", "1", *extra]


def checkpoint_values(run_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
        os.path.join(run_dir, "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


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


# --- The health line -------------------------------------------------------------------------
def test_a_discriminator_sure_of_every_real_image_is_said_once_without_augmentation():
    health = training_health.TrainingHealth(0.1, augmenting=False)
    lines = [health.observe(1.0, 2.0, 0.0) for _ in range(training_health.WINDOW)]
    assert lines == [None] * training_health.WINDOW  # D unsure of the reals: nothing to say
    lines = [health.observe(0.8, 2.5, 0.95) for _ in range(training_health.WINDOW)]
    said = [line for line in lines if line]
    assert len(said) == 1 and "learning them by heart" in said[0]
    assert "--augment translation,cutout,color" in said[0]
    # Said when the window's mean passes the bound: after 190 steps at 0.95 (190 x 0.95 / 200).
    assert lines.index(said[0]) == math.ceil(training_health.MEMORISING_SIGN *
                                             training_health.WINDOW / 0.95) - 1
    augmented = training_health.TrainingHealth(0.1, augmenting=True)
    assert not any(augmented.observe(0.8, 2.5, 0.95) for _ in range(3 * training_health.WINDOW))


def test_a_discriminator_at_its_floor_while_the_generator_rises_has_won():
    floor = training_health.loss_floor(0.1)
    assert floor == pytest.approx(0.3251, abs=1e-4)  # the binary entropy of 0.9
    assert training_health.loss_floor(0.0) == 0.0
    health = training_health.TrainingHealth(0.1, augmenting=True)
    window = training_health.WINDOW
    lines = [health.observe(floor + 0.02, 3.0 + step / window, 0.5) for step in range(2 * window)]
    said = [line for line in lines if line]
    assert len(said) == 1 and "has won" in said[0] and "0.325" in said[0]
    steady = training_health.TrainingHealth(0.1, augmenting=True)  # G's loss does not rise
    assert not any(steady.observe(floor + 0.02, 3.0, 0.5) for _ in range(3 * window))
    fighting = training_health.TrainingHealth(0.1, augmenting=True)  # D is not at its floor
    assert not any(fighting.observe(1.1, 2.0 + step / window, 0.3) for step in range(3 * window))


# --- Runs ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_augmented_run_logs_p_and_r_t_and_resumes_exactly(data_dir, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    flags = [*AUGMENT, "--augment-p", "adaptive", "--flip", "--deterministic"]
    assert train.main(args(data_dir, whole, "--epochs", "3", *flags)) == 0
    assert train.main(args(data_dir, split, "--epochs", "1", *flags)) == 0
    assert train.main(args(data_dir, split, "--epochs", "3", "--max-steps", "10", *flags)) == 0
    assert train.main(args(data_dir, split, "--epochs", "3", *flags)) == 0
    expected, got = checkpoint_values(str(whole)), checkpoint_values(str(split))
    assert {"augment/p", "augment/sign_sum", "augment/sign_steps"} <= set(expected)
    for name in expected:  # p and its interval's signs too
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    with open(whole / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(1, 13))
    for row in rows:
        assert -1.0 <= float(row["d_real_sign"]) <= 1.0 and 0.0 <= float(row["augment_p"]) <= 1
    tags = set()
    for name in os.listdir(whole):
        if name.startswith("events.out.tfevents"):
            for event in tf1.train.summary_iterator(str(whole / name)):
                tags.update(value.tag for value in event.summary.value)
    assert {"discriminator/d_real_sign", "augmentation/augment_p"} <= tags


@pytest.mark.slow
def test_a_run_without_augmentation_logs_r_t_and_no_p(data_dir, tmp_path):
    run = tmp_path / "run"
    assert train.main(args(data_dir, run, "--epochs", "1")) == 0
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["d_real_sign"] and not row["augment_p"] for row in rows)


@pytest.mark.slow
@pytest.mark.parametrize("first,second,changed", [
    ([], AUGMENT, "augment None -> ['color', 'translation', 'cutout']"),
    (AUGMENT, [], "augment ['color', 'translation', 'cutout'] -> None"),
    ([*AUGMENT, "--augment-p", "1"], [*AUGMENT, "--augment-p", "0.5"], "augment_p 1.0 -> 0.5"),
    ([*AUGMENT], [*AUGMENT, "--augment-target", "0.7"], "augment_target 0.6 -> 0.7"),
    ([], ["--flip"], "flip False -> True"),
])
def test_resuming_with_other_augmentation_settings_is_refused_in_one_line(
        data_dir, tmp_path, capsys, first, second, changed):
    run = tmp_path / "run"
    assert train.main(args(data_dir, run, "--epochs", "1", *first)) == 0
    capsys.readouterr()
    assert train.main(args(data_dir, run, "--epochs", "2", *second)) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and changed in error[0] and "--fresh" in error[0]


@pytest.mark.slow
def test_two_replicas_with_synchronized_batch_norm_augment_as_one_device():
    """Each replica takes its rows of the step's fed numbers, as of z: two replicas at B/2 see the
    very augmentations one device sees at B (p = 1, every policy)."""
    results = []
    for devices in (1, 2):
        engine = strategies.make_engine(devices)
        with tf.Graph().as_default():
            tf1.set_random_seed(0)
            model = training_step.build_model(
                1, image_size=16, g_steps=1, strategy=engine.strategy,
                sync_batch_norm=devices > 1, augment=("color", "translation", "cutout"),
                augment_p=1.0)
            images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8)
            with tf1.Session(config=sessions.session_config(
                    cpu_devices=engine.cpu_devices)) as sess:
                sess.run(tf1.global_variables_initializer())
                feed = sessions.step_feed(model, images, np.arange(8), 0, 0)
                results.append(sess.run([model.d_loss, model.g_loss, model.d_real_sign,
                                         model.train_step], feed)[:3])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)
