"""--image-size: the one rule that builds both networks (shapes and parameter counts at 16, 32, 64
and 128 against a count written out here), 32 exactly as before, the resize of the datasets, and
a 64x64 run through every command; sizes that cannot work refused in one line."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import bench
import data
import dcgan
import evaluate
import features
import generate
import train
from machinery import (benchmark, classifiers, convolutions, hyperparameters, image_rows, pictures,
                       sessions, training_step)
from helpers import (D_WIDTHS, G_WIDTHS, ROOT, discriminator_parameters, generator_parameters,
                     train_args, trainable_count)

tf1 = tf.compat.v1
HALF_AN_ADAM_STEP = hyperparameters.LEARNING_RATE / 2


def test_the_rule_gives_the_blog_post_and_the_paper():
    for size in G_WIDTHS:
        assert hyperparameters.generator_filters(size) == G_WIDTHS[size]
        assert hyperparameters.discriminator_filters(size) == D_WIDTHS[size]
    # The hand counts themselves, for the two networks the literature gives (3 channels).
    assert generator_parameters(G_WIDTHS[32], 3) == 4_926_595
    assert discriminator_parameters(D_WIDTHS[32], 3) == 1_033_729
    assert generator_parameters(G_WIDTHS[64], 3) == 18_855_043
    assert discriminator_parameters(D_WIDTHS[64], 3) == 4_315_649


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_networks_at_each_size_have_the_shapes_and_parameters_counted_by_hand(graph, size):
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    images = dcgan.generator(z, 3, image_size=size)
    probability, logits = dcgan.discriminator(images)
    pooled, layers = dcgan.discriminator_features(images)
    assert images.shape.as_list() == [None, size, size, 3]
    assert logits.shape.as_list() == [None, 1]
    assert [layer.shape.as_list()[1:] for layer in layers] == [
        [size >> (index + 1), size >> (index + 1), width]
        for index, width in enumerate(D_WIDTHS[size])]
    assert layers[-1].shape[1] == 4
    assert pooled.shape.as_list() == [None, 16 * sum(D_WIDTHS[size])]
    assert trainable_count("generator") == generator_parameters(G_WIDTHS[size], 3)
    assert trainable_count("discriminator") == discriminator_parameters(D_WIDTHS[size], 3)
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(tf1.global_variables_initializer())
        out, prob = sess.run([images, probability],
                             {z: np.random.default_rng(0).uniform(-1, 1, (1, 100))})
    assert out.shape == (1, size, size, 3) and -1 <= out.min() and out.max() <= 1
    assert prob.shape == (1, 1)


def test_64_gives_the_papers_feature_count(graph):
    pooled, _ = dcgan.discriminator_features(tf1.placeholder(tf.float32, [None, 64, 64, 1]))
    assert pooled.shape.as_list() == [None, 15_360]


def test_at_32_the_same_seed_trains_the_same_numbers():
    """Three steps from seed 0 against the numbers main's code gave before the rule existed."""
    with open(os.path.join(ROOT, "tests", "fixtures", "training_numbers_v1.json")) as handle:
        expected = json.load(handle)
    tf.config.experimental.enable_op_determinism()  # process-wide, as train.py --deterministic
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        model = training_step.build_model(3)
        init = tf1.global_variables_initializer()
    images = np.random.default_rng(7).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    losses = []
    with tf1.Session(graph=graph, config=sessions.session_config()) as sess:
        sess.run(init)
        for step in range(3):
            feed = sessions.step_feed(model, images, np.arange(8), 0, step)
            losses.append(sess.run([model.train_step, model.d_loss, model.g_loss],
                                   feed)[1:])
        with graph.as_default():
            variables = tf1.trainable_variables()
            sums = dict(zip([v.op.name for v in variables],
                            [float(np.abs(value).sum()) for value in sess.run(variables)]))
    assert model.image_size == 32
    assert set(sums) == set(expected["abs_sums"])
    # Bit-identical on the machine that wrote them (an AMD EPYC). Other CPUs' kernels round
    # differently, and Adam turns a near-zero gradient's round-off into a step of up to the
    # learning rate, so a sum may also differ by half of one weight's Adam step: on an Intel Xeon
    # (Emerald Rapids, AMX) the discriminator's sums are bit-identical and the generator's differ
    # by at most 3.1e-5 (deconv4/kernel; bn3/beta by 1.4e-5, 1.6e-4 of its sum). Another seed or
    # another order of building the graph moves the sums of the kernels by whole percents.
    np.testing.assert_allclose(losses, expected["losses"], rtol=1e-4)
    for name, value in expected["abs_sums"].items():
        np.testing.assert_allclose(sums[name], value, rtol=1e-4, atol=HALF_AN_ADAM_STEP,
                                   err_msg=name)


def test_the_rewrites_follow_the_measurements_at_each_size(graph):
    """The 4x4 layer runs as a GEMM only where it measured faster (512+ input channels): N=16's
    256-channel one stays TensorFlow's; the image-side layers run on 2x2 blocks at every size."""
    z = tf1.placeholder(tf.float32, [None, hyperparameters.Z_DIM])
    for size, scope in ((16, "small"), (64, "large")):
        with tf1.variable_scope(scope):
            images = dcgan.generator(z, 3, image_size=size,
                                     implementation=convolutions.REWRITTEN)
            dcgan.discriminator(images, implementation=convolutions.REWRITTEN)
    types = {}
    for op in graph.get_operations():
        parts = op.name.split("/")
        if len(parts) > 3:
            types.setdefault((parts[0], parts[2]), set()).add(op.type)
    assert "Conv2DBackpropInput" in types["small", "deconv2"]
    assert "MatMul" in types["large", "deconv2"]
    assert "Conv2DBackpropInput" not in types["large", "deconv2"]
    for scope, last in (("small", "deconv3"), ("large", "deconv5")):
        assert "DepthToSpace" in types[scope, last]
        assert "SpaceToDepth" in types[scope, "conv1"]


def test_bench_counts_flops_from_the_rule():
    """The 32x32 count the docs give (1.0814 GFLOP), and 64 and 16 from the hand widths."""
    assert benchmark.flop_count(3, 1) == pytest.approx(1.0814e9, rel=1e-4)

    def by_hand(size, channels):
        g = [100 * 16 * G_WIDTHS[size][0]]
        widths, side = (*G_WIDTHS[size], channels), 4
        for c_in, c_out in zip(widths, widths[1:]):
            g.append(side * side * 25 * c_in * c_out)
            side *= 2
        d, side, widths = [], size, (channels, *D_WIDTHS[size])
        for c_in, c_out in zip(widths, widths[1:]):
            side //= 2
            d.append(side * side * 25 * c_in * c_out)
        d.append(16 * widths[-1])
        g_fwd, d_fwd = sum(g), sum(d)
        # D update: G fwd, D fwd x2, weight grads x2, input grads x2 above the first conv;
        # G update: D fwd, D input grads, G weight grads, G input grads above the dense layer.
        return 2 * (g_fwd + 4 * d_fwd + 2 * (d_fwd - d[0]) + 2 * d_fwd + 2 * g_fwd - g[0])

    for size in (16, 64):
        assert benchmark.flop_count(3, 1, image_size=size) == by_hand(size, 3)


def test_the_datasets_are_resized_once_at_load(data_dir):
    small = data.load_dataset("svhn", data_dir, verify=False, download=False)
    large = data.load_dataset("svhn", data_dir, verify=False, download=False, image_size=64)
    assert large.images.shape == (64, 64, 64, 3) and large.images.dtype == np.uint8
    np.testing.assert_array_equal(large.labels, small.labels)
    np.testing.assert_array_equal(large.images, image_rows.resize(small.images, 64))
    assert image_rows.resize(small.images, 32) is small.images
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], (32, 1, 1))[None]
    back = image_rows.resize(image_rows.resize(ramp, 64), 32).astype(int)
    assert np.abs(back - ramp).max() <= 1  # a smooth picture survives up and down
    flat = np.full((2, 32, 32, 1), 200, np.uint8)  # an antialiasing filter keeps a flat field
    assert np.all(image_rows.resize(flat, 16) == 200) and np.all(image_rows.resize(flat, 128) == 200)


def test_sample_tiles_are_at_least_64_pixels_and_64_is_drawn_one_to_one():
    assert [pictures.tile_scale(size) for size in (16, 32, 64, 128)] == [4, 2, 1, 1]


def test_the_evaluation_resizes_generated_and_real_alike():
    seen = []

    class Recorder:
        def predict(self, images):
            seen.append(images.shape)
            rng = np.random.default_rng(len(seen))
            return rng.dirichlet(np.ones(10), len(images)), rng.normal(size=(len(images), 4))

    from machinery import quality
    images = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 1), dtype=np.uint8)
    result = quality.quality(Recorder(), images, images)
    assert seen == [(8, 32, 32, 1), (8, 32, 32, 1)]
    assert result["image_size"] == 64 and result["scored_size"] == 32
    assert "both resized" in quality.format_quality(result)
    with pytest.raises(ValueError, match="differ"):
        quality.quality(Recorder(), images, images[:, :32, :32])


def test_a_64_run_trains_checkpoints_resumes_samples_evaluates_and_extracts_features(
        data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("test",), 1))
    run = tmp_path / "run"
    base = train_args(data_dir, run, "--image-size", "64", "--sample-grid", "2", "--g-steps", "1")
    assert train.main(base + ["--max-steps", "2"]) == 0
    assert "64x64x3, resized from 32x32" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 64
    grid = pictures._pyplot().imread(str(run / "samples" / "epoch_0001.png"))
    assert grid.shape[1] == 2 * 64 + 2  # 64-pixel samples drawn 1:1
    assert train.main(base + ["--max-steps", "5"]) == 0  # resumes at step 2, one epoch is 4
    out = capsys.readouterr().out
    assert "resumed" in out and "step 2" in out and "done: 5 steps" in out
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "model-5"))
    assert reader.get_variable_to_shape_map()["generator/deconv5/kernel"] == [5, 5, 3, 128]

    npz = tmp_path / "images.npz"
    assert generate.main(["--run", str(run), "--num", "5", "--out", str(npz)]) == 0
    assert np.load(npz)["images"].shape == (5, 64, 64, 3)
    assert "images of 64x64" in capsys.readouterr().out

    assert evaluate.main(["--run", str(run), "--num", "10"]) == 0
    out = capsys.readouterr().out
    assert "scored at 32x32" in out and "64x64 images both resized" in out
    report = json.loads((run / "evaluation.json").read_text())
    assert report["5"]["image_size"] == 64 and 1.0 <= report["5"]["classifier_score"] <= 10.0

    assert features.main(["--run", str(run), "--labels", "20", "--draws", "1"]) == 0
    assert "trained discriminator (15,360)" in capsys.readouterr().out
    result = json.loads((run / "features.json").read_text())
    assert result["trained"]["features"] == 15_360 and result["image_size"] == 64
    assert result["pixels"]["features"] == 64 * 64 * 3


@pytest.mark.parametrize("size, reason", [("48", "must be a power of two"),
                                          ("96", "must be a power of two"),
                                          ("8", "must be in 16..128, not 8 (a power of two"),
                                          ("256", "must be in 16..128, not 256")])
def test_sizes_that_cannot_work_are_refused_when_the_flags_are_parsed(size, reason):
    for entry_point in ("train.py", "bench.py"):
        result = subprocess.run([sys.executable, entry_point, "--image-size", size], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr
        assert lines[-1].startswith(f"{entry_point}: error: argument --image-size: ")
        assert reason in lines[-1]


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


def test_a_run_saved_before_the_setting_resumes_at_32(two_epochs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    config = json.loads((run / "config.json").read_text())
    del config["image_size"]
    (run / "config.json").write_text(json.dumps(config))
    assert train.main(train_args(config["data_dir"], run, "--epochs", "3")) == 0
    assert "resumed" in capsys.readouterr().out


def test_bench_times_each_rewritable_layer_at_the_size(tmp_path, capsys):
    report = tmp_path / "layers.json"
    assert bench.main(["--layers", "--image-size", "16", "--batch-size", "2", "--steps", "1",
                       "--warmup", "0", "--channels", "1", "--precision", "float32",
                       "--json", str(report)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "rewrite" in line]
    assert [line.split(" float32 ")[1].split(":")[0] for line in lines] == [
        "G deconv2 4x4x256 -> 128", "G image layer 8x8x128 -> 1", "D conv1 16x16x1 -> 64"]
    results = json.loads(report.read_text())["results"]
    assert len(results) == 3 and all(r["native_s"] > 0 and r["rewritten_s"] > 0 for r in results)


def test_a_batch_too_large_for_the_size_is_refused_when_the_flags_are_parsed():
    assert train.parse_args(["--image-size", "32", "--batch-size", "32768"]).batch_size == 32768
    result = subprocess.run([sys.executable, "train.py", "--image-size", "128", "--batch-size",
                             "4096"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "argument --batch-size: at --image-size 128 it must be at most 2,048: the networks' "
        "largest layer holds 524,288 values an image, and past 2^30 in one tensor TensorFlow's "
        "CPU kernels risk int32 index overflow")
