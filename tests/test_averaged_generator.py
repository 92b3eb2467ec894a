"""machinery/averaged_generator.py (--g-ema): the average is an exact moving average of the
generator's weights, the graph holds none without the flag, and, end to end, the average resumes
bit for bit and is what the sample grids and generate.py use."""
import json

import numpy as np
import pytest
import tensorflow as tf

import generate
import train
from machinery import averaged_generator, hyperparameters, sessions, training_step
from helpers import checkpoint_values, session, train_args

tf1 = tf.compat.v1
BATCH = 8


@pytest.mark.slow
def test_the_averaged_generator_is_an_exact_moving_average(graph):
    """g_ema_decay: after every step (one G update each), w_avg = d w_avg + (1 - d) w, starting
    from the initial weights; compared with the same recursion in NumPy."""
    decay = 0.75
    model = training_step.build_model(1, g_steps=1, g_ema_decay=decay)
    trained = tf1.trainable_variables("generator/")
    copies = {v.op.name: v for v in tf1.global_variables("g_ema/")}
    averages = [copies[f"g_ema/{v.op.name}"] for v in trained]
    assert not tf1.trainable_variables("g_ema/")  # the copy is not trained
    rng = np.random.default_rng(8)
    with session(graph) as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(model.start_average)
        expected = sess.run(trained)
        np.testing.assert_array_equal(sess.run(averages)[0], expected[0])
        for _ in range(3):
            sess.run(model.train_step, {
                model.real_images: rng.integers(0, 256, (BATCH, 32, 32, 1), dtype=np.uint8),
                model.z: rng.uniform(-1, 1, (BATCH, hyperparameters.Z_DIM)).astype(np.float32)})
            weights = sess.run(trained)
            expected = [np.float32(decay) * a + np.float32(1 - decay) * w
                        for a, w in zip(expected, weights)]
        got = sess.run(averages)
        averaged_generator.prepare_sampler(sess, model.averaged)
        averaged_images = sessions.run_sampler(sess, model.averaged, np.zeros((2, 100), np.float32))
        raw_images = sessions.run_sampler(sess, model.sampler, np.zeros((2, 100), np.float32))
    for want, have, variable in zip(expected, got, trained):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-7, err_msg=variable.op.name)
        assert not np.array_equal(have, weights[trained.index(variable)])  # it lags behind
    assert not np.allclose(averaged_images, raw_images)


def test_without_g_ema_the_graph_has_no_average(graph):
    model = training_step.build_model(1, g_steps=2)
    assert model.averaged is None and model.start_average is None
    assert not [op.name for op in graph.get_operations()
                if op.name.startswith(("g_ema", "update_average", "start_average"))]
    with pytest.raises(ValueError, match="g_ema_decay"):
        training_step.build_model(1, g_ema_decay=1.0)


@pytest.mark.slow
def test_the_average_resumes_bit_for_bit_and_is_what_grids_and_generate_use(data_dir, tmp_path,
                                                                            capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    ema = ["--g-ema", "0.9", "--deterministic"]
    assert train.main(train_args(data_dir, whole, "--epochs", "2", *ema)) == 0
    assert "epoch 2 quality" not in capsys.readouterr().out
    assert train.main(train_args(data_dir, split, "--epochs", "1", *ema)) == 0
    assert train.main(train_args(data_dir, split, "--epochs", "2", *ema)) == 0
    expected, got = checkpoint_values(str(whole)), checkpoint_values(str(split))
    assert "g_ema/generator/dense1/kernel" in expected and expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert not np.array_equal(expected["g_ema/generator/deconv2/kernel"],
                              expected["generator/deconv2/kernel"])
    assert json.loads((whole / "config.json").read_text())["g_ema"] == 0.9
    assert train.main(train_args(data_dir, whole, "--epochs", "3")) == 1  # no switching it off
    assert "g_ema 0.9 -> 0.0" in capsys.readouterr().err
    capsys.readouterr()
    for flags, which in (([], "averaged generator (decay 0.9)"), (["--raw"], "trained generator")):
        out = tmp_path / f"{which[:3]}.npz"
        assert generate.main(["--run", str(whole), "--num", "6", "--out", str(out), *flags]) == 0
        assert which in capsys.readouterr().out
    averaged = np.load(tmp_path / "ave.npz")["images"]
    trained = np.load(tmp_path / "tra.npz")["images"]
    assert not np.array_equal(averaged, trained)
