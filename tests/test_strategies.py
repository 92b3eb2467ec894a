"""machinery/strategies.py, several devices in one process: training_step.build_model under a
MirroredStrategy over the two logical CPU devices conftest.py makes, and train.py --devices 2.
Small graphs (16x16, batch 8); the bounds of the match with one device, and why:
helpers.assert_matches_one_device."""
import os

import numpy as np
import pytest
import tensorflow as tf

import generate
import train
from machinery import sessions, strategies, training_step
from helpers import (REPLICA_BATCH, REPLICA_SIZE, TEST_CPU_DEVICES, Z_DIM,
                     assert_matches_one_device, checkpoint_values, relative_difference, train_args,
                     train_steps)

tf1 = tf.compat.v1


@pytest.mark.slow
def test_every_replica_holds_the_same_copy_of_every_variable():
    _, copies, logged, _ = train_steps(TEST_CPU_DEVICES, steps=3, g_steps=2)
    assert len(copies) > 50  # every network variable, its Adam slots and moving statistics
    for name, (first, second) in copies.items():
        assert np.array_equal(first, second), name
    assert [int(step) for step, *_ in logged] == [1, 2, 3]


@pytest.mark.slow
def test_two_replicas_with_synchronized_batch_norm_match_one_device():
    one, _, one_logged, _ = train_steps(1, steps=1)
    two, _, two_logged, _ = train_steps(TEST_CPU_DEVICES, steps=1, sync_batch_norm=True)
    assert_matches_one_device(one, two)
    np.testing.assert_allclose(np.array(one_logged, float), np.array(two_logged, float),
                               rtol=1e-5)


@pytest.mark.slow
def test_a_missing_division_by_the_replicas_is_caught(monkeypatch):
    """The comparison above fails when each replica's loss is not divided by N."""
    one, _, _, _ = train_steps(1, steps=1)
    monkeypatch.setattr(training_step, "_replica_loss_scale", lambda strategy: 1.0)
    two, _, _, _ = train_steps(TEST_CPU_DEVICES, steps=1, sync_batch_norm=True)
    first_moment = "discriminator/conv1/kernel/d_adam"
    assert relative_difference(one[first_moment], two[first_moment]) == \
        pytest.approx(1.0, rel=1e-3)  # twice the gradient: m doubles
    with pytest.raises(AssertionError):
        assert_matches_one_device(one, two)


@pytest.mark.slow
def test_moving_statistics_are_the_mean_over_the_replicas():
    """Without synchronized batch norm each replica normalizes with its own half of the batch;
    the moving statistics take the mean of the replicas' updates. Checked on the generator's
    first batch norm, whose input (z times the dense kernel) numpy can compute."""
    values, _, _, initial = train_steps(TEST_CPU_DEVICES, steps=1)
    z = sessions.step_z(0, 0, REPLICA_BATCH, Z_DIM)
    kernel = initial["generator/dense1/kernel"]
    channels = kernel.shape[1] // 16
    decay = 1.0 - 0.9  # hyperparameters.BN_MOMENTUM
    means, variances = [], []
    for half in (z[:REPLICA_BATCH // 2], z[REPLICA_BATCH // 2:]):
        x = (half @ kernel).reshape(-1, 4, 4, channels).reshape(-1, channels)
        means.append(x.mean(axis=0))
        variances.append(x.var(axis=0, ddof=1))  # fused batch norm's moving variance is unbiased
    np.testing.assert_allclose(values["generator/bn1/moving_mean"],
                               decay * np.mean(means, axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(values["generator/bn1/moving_variance"],
                               (1 - decay) + decay * np.mean(variances, axis=0), rtol=1e-4)


def test_one_device_builds_no_strategy():
    engine = strategies.make_engine(1)
    assert engine.strategy is None and engine.replicas == 1
    with tf.Graph().as_default():
        tf1.set_random_seed(0)  # (another test may have made TensorFlow's ops deterministic)
        model = training_step.build_model(1, image_size=REPLICA_SIZE)
        assert model.replicas == 1
        assert not any("replica" in op.name for op in tf1.get_default_graph().get_operations())


def test_session_config_gives_the_session_its_cpu_devices():
    assert "CPU" not in sessions.session_config().device_count
    assert sessions.session_config(cpu_devices=2).device_count["CPU"] == 2


def test_synchronized_batch_norm_needs_a_strategy():
    with tf.Graph().as_default(), pytest.raises(ValueError, match="needs a strategy"):
        training_step.build_model(1, image_size=REPLICA_SIZE, sync_batch_norm=True)


@pytest.mark.slow
def test_the_averaged_generator_on_two_replicas_is_the_one_of_one_device():
    """--g-ema under a strategy: one average, the same on both replicas, updated after each G
    update as on one device."""
    one, _, _, _ = train_steps(1, steps=1, g_steps=2, g_ema_decay=0.5)
    two, copies, _, _ = train_steps(TEST_CPU_DEVICES, steps=1, g_steps=2, g_ema_decay=0.5,
                                    sync_batch_norm=True)
    averaged = [name for name in two if name.startswith("g_ema/") and "moving_" not in name]
    assert averaged and all(np.array_equal(*copies[name]) for name in averaged)
    assert_matches_one_device(one, two)
    kernel = "generator/deconv2/kernel"  # moved by the two G updates: so has its average
    assert not np.array_equal(two["g_ema/" + kernel], train_steps(1, steps=0, g_ema_decay=0.5)[0][
        "g_ema/" + kernel])


# --- train.py --devices ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_checkpoint_moves_between_device_counts(data_dir, tmp_path, capsys):
    """Saved with --devices 2, continued with --devices 1, and the other way round: the same
    variables, and training goes on from the saved step."""
    two_first, one_first = tmp_path / "two-first", tmp_path / "one-first"
    assert train.main(train_args(data_dir, two_first, "--epochs", "1", "--devices", "2")) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "MirroredStrategy over 2 logical CPU devices" in out and "8 images each" in out
    assert "warning:" not in captured.err  # the grid, GIF and plot were made (optional_work)
    for name in ("samples/epoch_0001.png", "samples/progress.gif", "losses.png"):
        assert (two_first / name).is_file(), name
    assert "device:CPU:0" in out and "device:CPU:1" in out  # the first step ran on both
    assert train.main(train_args(data_dir, one_first, "--epochs", "1")) == 0
    assert set(checkpoint_values(two_first)) == set(checkpoint_values(one_first))

    assert train.main(train_args(data_dir, two_first, "--epochs", "2", "--devices", "1")) == 0
    assert "resumed" in capsys.readouterr().out
    assert train.main(train_args(data_dir, one_first, "--epochs", "2", "--devices", "2",
                                 "--sync-batch-norm")) == 0
    assert "resumed" in capsys.readouterr().out
    for run in (two_first, one_first):
        values = checkpoint_values(run)
        assert values["global_step"] == 8  # 4 steps an epoch
        assert all(np.all(np.isfinite(value)) for value in values.values()
                   if np.asarray(value).dtype.kind == "f")


@pytest.mark.slow
def test_two_devices_at_batch_b_with_synchronized_batch_norm_train_like_one(data_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one_step = ("--max-steps", "1", "--g-steps", "1")
    assert train.main(train_args(data_dir, one, *one_step)) == 0
    assert train.main(train_args(data_dir, two, *one_step, "--devices", "2",
                                 "--sync-batch-norm")) == 0
    assert_matches_one_device(checkpoint_values(one), checkpoint_values(two))


@pytest.mark.slow
def test_an_averaged_run_on_two_devices_resumes_on_one_and_generates(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    ema = ("--g-ema", "0.9")
    assert train.main(train_args(data_dir, run, "--epochs", "1", "--devices", "2", *ema)) == 0
    assert train.main(train_args(data_dir, run, "--epochs", "2", *ema)) == 0
    assert "resumed" in capsys.readouterr().out
    values = checkpoint_values(run)
    assert not np.array_equal(values["g_ema/generator/deconv2/kernel"],
                              values["generator/deconv2/kernel"])
    out = tmp_path / "averaged.npz"
    assert generate.main(["--run", str(run), "--num", "4", "--out", str(out)]) == 0
    assert "averaged generator (decay 0.9)" in capsys.readouterr().out
    assert np.load(out)["images"].shape == (4, 32, 32, 3)


def test_more_devices_than_the_process_has_is_one_line(data_dir, tmp_path, capsys):
    assert train.main(train_args(data_dir, tmp_path / "run", "--devices", "4", "--batch-size",
                                 "16")) == 1
    err = capsys.readouterr().err
    assert "--devices 4: TensorFlow started with 2 CPU device(s)" in err
    assert "Traceback" not in err and not os.path.exists(tmp_path / "run")


def first_step_losses_on_one_and_two_devices(classes=None, **model_options):
    """d_loss, g_loss, d_real_sign of one step at B = 8 on one device, then on two replicas at
    B/2 with synchronized batch norm: each replica takes its rows of every fed number."""
    results = []
    for devices in (1, 2):
        engine = strategies.make_engine(devices)
        with tf.Graph().as_default():
            tf1.set_random_seed(0)
            model = training_step.build_model(
                1, image_size=16, g_steps=1, strategy=engine.strategy,
                sync_batch_norm=devices > 1, **model_options)
            images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8)
            with tf1.Session(config=sessions.session_config(
                    cpu_devices=engine.cpu_devices)) as sess:
                sess.run(tf1.global_variables_initializer())
                feed = sessions.step_feed(model, images, np.arange(8), 0, 0, classes=classes)
                results.append(sess.run([model.d_loss, model.g_loss, model.d_real_sign,
                                         model.train_step], feed)[:3])
    return results


@pytest.mark.slow
def test_two_replicas_with_synchronized_batch_norm_augment_as_one_device():
    """The augmentations' fed numbers split as z does: two replicas at B/2 see the very
    augmentations one device sees at B (p = 1, every policy)."""
    one, two = first_step_losses_on_one_and_two_devices(
        augment=("color", "translation", "cutout"), augment_p=1.0)
    np.testing.assert_allclose(one, two, rtol=1e-5)


@pytest.mark.slow
def test_two_replicas_with_synchronized_batch_norm_condition_as_one_device():
    """A conditional step (and its augmentation): the classes split as the images do."""
    one, two = first_step_losses_on_one_and_two_devices(
        classes=sessions.class_labels(np.arange(8) % 4, 4), augment=("translation",),
        num_classes=4)
    np.testing.assert_allclose(one, two, rtol=1e-5)
