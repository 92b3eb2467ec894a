"""features.py: the discriminator's pooled features against a NumPy reference, the SVM pipeline
on a separable toy set, the label draws, and the whole command on a tiny run."""
import json

import numpy as np
import pytest
import tensorflow as tf

import dcgan
import features
from machinery import feature_svm, sessions

tf1 = tf.compat.v1


@pytest.mark.parametrize("channels", [3, 1])
def test_features_are_each_layer_max_pooled_to_4x4(graph, channels):
    x = tf1.placeholder(tf.float32, [None, 32, 32, channels])
    pooled, activations = dcgan.discriminator_features(x)
    assert pooled.shape.as_list() == [None, 16 * (64 + 128 + 256)] == [None, 7168]
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(tf1.global_variables_initializer())
        images = np.random.default_rng(1).uniform(-1, 1, (3, 32, 32, channels))
        got, layers = sess.run([pooled, activations], {x: images})
    expected = []
    for layer in layers:  # [3, s, s, c] -> max over each (s/4 x s/4) window -> [3, 4 * 4 * c]
        batch, size, _, depth = layer.shape
        window = size // 4
        blocks = layer.reshape(batch, 4, window, 4, window, depth).max(axis=(2, 4))
        expected.append(blocks.reshape(batch, -1))
    assert [layer.shape[1] for layer in layers] == [16, 8, 4]
    np.testing.assert_array_equal(got, np.concatenate(expected, axis=1))


def test_the_features_are_the_discriminators_in_inference_mode(graph):
    """Moving statistics, not batch statistics: one image's features do not depend on the
    others in its batch."""
    x = tf1.placeholder(tf.float32, [None, 32, 32, 1])
    pooled, _ = dcgan.discriminator_features(x)
    images = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 1))
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(tf1.global_variables_initializer())
        alone, together = sess.run(pooled, {x: images[:1]}), sess.run(pooled, {x: images})
    np.testing.assert_allclose(alone[0], together[0], rtol=1e-5, atol=1e-6)


def separable(count, seed):
    """Ten well separated Gaussian blobs in 20 dimensions."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    centres = np.random.default_rng(0).normal(0, 10, (10, 20))
    return centres[labels] + rng.normal(0, 0.5, (count, 20)), labels


def test_the_svm_separates_a_separable_set_and_picks_c_on_validation():
    error, c = feature_svm.svm_test_error(separable(50, 1), separable(100, 2), separable(200, 3))
    assert error == 0.0 and c in feature_svm.SVM_C
    noise = np.random.default_rng(4).normal(size=(200, 20)), np.arange(200) % 10
    error, _ = feature_svm.svm_test_error(noise, noise, noise)  # no signal: chance is 0.9
    assert 0.0 <= error <= 1.0


def test_label_draws_are_balanced_seeded_and_disjoint_from_validation():
    labels = np.repeat(np.arange(10), 30)
    labeled, validation = feature_svm.draw_labeled(labels, 3, 50, np.random.default_rng(0))
    assert np.bincount(labels[labeled], minlength=10).tolist() == [3] * 10
    assert len(validation) == 50 and not set(labeled) & set(validation)
    again, _ = feature_svm.draw_labeled(labels, 3, 50, np.random.default_rng(0))
    np.testing.assert_array_equal(labeled, again)
    _, everything_else = feature_svm.draw_labeled(labels, 3, None, np.random.default_rng(0))
    assert len(everything_else) == 300 - 30


def test_the_command_writes_the_table_and_features_json(two_epochs, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    assert features.main(["--run", str(run), "--labels", "20", "--draws", "2"]) == 0
    out = capsys.readouterr().out
    assert "trained discriminator (7,168)" in out and "raw pixels" in out
    assert "transductive" in out  # the tiny run trained on train + test
    result = json.loads((run / "features.json").read_text())
    for name in ("trained", "untrained", "pixels"):
        assert 0.0 <= result[name]["test_error_mean"] <= 1.0
        assert result[name]["test_error_std"] >= 0.0 and result[name]["labels"] == 20
        assert result[name]["test_images"] == 24 and len(result[name]["test_errors"]) == 2
    assert result["checkpoint"] == "model-8" and result["transductive"] is True
    assert features.main(["--run", str(tmp_path / "none")]) == 1
    assert "not a run directory" in capsys.readouterr().err
