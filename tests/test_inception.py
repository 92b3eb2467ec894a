"""inception.py against a stand-in graph with the real one's interface and quirks
(fake_inception.py): TTUR's features, every broken file in one line, the archive fetched once
from a local server and checked, and evaluate.py --inception-graph on a run."""
import hashlib
import io
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf

import evaluate
import fake_inception
from machinery import classifiers, inception
from helpers import LocalServer, one_error_line, snapshot

tf1 = tf.compat.v1
ONE_THREAD = tf1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)


@pytest.fixture(scope="module")
def graph_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / inception.GRAPH_FILE
    path.write_bytes(fake_inception.fake_graph_def().SerializeToString())
    return path


@pytest.fixture(scope="module")
def extractor(graph_path):
    with inception.InceptionFeatures(str(graph_path), batch_size=2,
                                     session_config=ONE_THREAD) as features:
        yield features


def images(count, size=(20, 24), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count,) + size + (3,), dtype=np.uint8)


def write(tmp_path, contents, name=inception.GRAPH_FILE):
    path = tmp_path / name
    path.write_bytes(contents)
    return str(path)


def assert_one_line_error(path, match, **kwargs):
    with pytest.raises(inception.InceptionGraphError, match=match) as caught:
        inception.InceptionFeatures(path, session_config=ONE_THREAD, **kwargs)
    assert "\n" not in str(caught.value)


def test_features_of_batches_of_any_size_as_ttur_computes_them(extractor, graph_path):
    assert extractor.pool_3.shape.as_list() == [None, 1, 1, inception.FEATURE_SIZE]
    batch = images(5)
    features = extractor.features(batch)  # batches of 2, 2 and 1
    assert features.shape == (5, inception.FEATURE_SIZE) and features.dtype == np.float64
    assert np.isfinite(features).all() and features.std() > 0
    np.testing.assert_allclose(features[3:], extractor.features(batch[3:]), rtol=1e-5)
    graph_def = tf1.GraphDef.FromString(graph_path.read_bytes())
    for image, row in zip(batch[:2], features):
        reference = fake_inception.ttur_pool_3(graph_def, image.astype(np.float32))
        np.testing.assert_allclose(row, reference, rtol=1e-5, atol=1e-6)
    assert extractor.predict(batch)[1].dtype == np.float32
    assert extractor.key == f"inception-2015-12-05-{extractor.md5[:10]}"


def test_gray_is_repeated_to_rgb(extractor):
    gray = images(3, seed=2)[..., 0]
    expected = extractor.features(np.repeat(gray[..., np.newaxis], 3, axis=-1))
    np.testing.assert_allclose(extractor.features(gray[..., np.newaxis]), expected, rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 8, 8, 4), np.uint8), "RGBA"),
    (np.full((2, 8, 8, 3), -1.0), r"\(x \+ 1\) \* 127.5"),
    (np.full((2, 8, 8, 3), 256.0), "0..255"),
])
def test_bad_images(extractor, bad, match):
    with pytest.raises(ValueError, match=match):
        extractor.features(bad)


def test_every_broken_file_is_one_line(tmp_path, graph_path):
    assert_one_line_error(str(tmp_path / "absent.pb"), "cannot read the Inception graph .* "
                          "download http.*inception-2015-12-05.tgz")
    random = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert_one_line_error(write(tmp_path, random), "not a TensorFlow GraphDef|no 'ExpandDims'")
    assert_one_line_error(write(tmp_path, b"<html>404 Not Found</html>"),
                          "not a TensorFlow GraphDef|no 'ExpandDims'")
    assert_one_line_error(write(tmp_path, b""), "no 'ExpandDims' and no 'pool_3' node")
    contents = graph_path.read_bytes()
    for fraction in (0.3, 0.97):
        assert_one_line_error(write(tmp_path, contents[:int(len(contents) * fraction)]),
                              "not a TensorFlow GraphDef|node|does not import")
    archive = tmp_path / "inception-2015-12-05.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(graph_path, arcname=inception.GRAPH_FILE)
    assert_one_line_error(str(archive), "gzip archive")
    assert_one_line_error(str(graph_path), "MD5", expected_md5="0" * 32)


def test_a_graph_of_the_wrong_shape_or_version_is_one_line(tmp_path):
    path = write(tmp_path, fake_inception.fake_graph_def(feature_size=1000).SerializeToString())
    assert_one_line_error(path, r"pool_3:0 has shape \(None, 1, 1, 1000\)")
    path = write(tmp_path, fake_inception.fake_graph_def(producer=9).SerializeToString())
    assert_one_line_error(path, "does not import.*BatchNormWithGlobalNormalization")


# --- Fetched once into the data folder -------------------------------------------------------
def archive_bytes(graph_bytes):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(inception.GRAPH_FILE)
        info.size = len(graph_bytes)
        tar.addfile(info, io.BytesIO(graph_bytes))
    return buffer.getvalue()


@pytest.fixture
def served(graph_path, monkeypatch):
    """A local stand-in for the archive's host, serving an archive of the stand-in graph; the
    known sizes made theirs."""
    graph_bytes = graph_path.read_bytes()
    archive = archive_bytes(graph_bytes)
    server = LocalServer({inception.ARCHIVE: archive})
    monkeypatch.setattr(inception, "ARCHIVE_URL", server.url)
    monkeypatch.setattr(inception, "ARCHIVE_BYTES", len(archive))
    monkeypatch.setattr(inception, "GRAPH_BYTES", len(graph_bytes))
    yield server, archive, graph_bytes
    server.close()


def test_the_archive_is_fetched_once_checked_and_its_md5_recorded(tmp_path, served):
    server, archive, graph_bytes = served
    messages = []
    graph, md5 = inception.graph_in_data_dir(str(tmp_path), log=messages.append)
    assert graph == str(tmp_path / "inception" / inception.GRAPH_FILE)
    assert open(graph, "rb").read() == graph_bytes and md5 == hashlib.md5(graph_bytes).hexdigest()
    record = json.loads((tmp_path / "inception" / "md5.json").read_text())
    assert record == {"archive_md5": hashlib.md5(archive).hexdigest(), "graph_md5": md5}
    assert "no publisher gives its checksum" in messages[-1]
    assert sorted(os.listdir(tmp_path / "inception")) == sorted(
        [inception.ARCHIVE, inception.GRAPH_FILE, "md5.json"])
    server.close()  # never fetched again
    assert inception.graph_in_data_dir(str(tmp_path), download=False) == (graph, md5)
    # A graph changed since: the recorded MD5 refuses it, in one line.
    with open(graph, "ab") as handle:
        handle.write(b"\0")
    assert_one_line_error(graph, f"not the {md5} recorded when it was downloaded",
                          expected_md5=md5)


def test_offline_or_another_archive_is_one_line_naming_where_to_get_it(tmp_path, served,
                                                                       monkeypatch):
    server, archive, _ = served
    with pytest.raises(inception.InceptionGraphError, match="not found and downloading is off: "
                       "download http"):
        inception.graph_in_data_dir(str(tmp_path), download=False)
    monkeypatch.setattr(inception, "ARCHIVE_URL", "http://127.0.0.1:9/")  # nothing listens
    with pytest.raises(inception.InceptionGraphError, match="cannot fetch the Inception graph "
                       ".*inception-2015-12-05.tgz") as error:
        inception.graph_in_data_dir(str(tmp_path))
    assert "\n" not in str(error.value) and os.listdir(tmp_path / "inception") == []
    monkeypatch.setattr(inception, "ARCHIVE_URL", server.url)
    monkeypatch.setattr(inception, "ARCHIVE_BYTES", len(archive) + 1)
    with pytest.raises(inception.InceptionGraphError, match="not the published archive"):
        inception.graph_in_data_dir(str(tmp_path))
    assert not os.path.exists(tmp_path / "inception" / inception.GRAPH_FILE)


# --- evaluate.py --inception-graph -----------------------------------------------------------
@pytest.mark.slow
def test_evaluate_gives_inceptions_numbers_and_refuses_a_broken_graph(two_epochs, tmp_path,
                                                                      graph_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setitem(classifiers.CLASSIFIER_DATA, "svhn", (("train",), ("train",), 1))
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    assert evaluate.main(["--run", str(run), "--num", "8", "--inception-graph",
                          str(graph_path)]) == 0
    out = capsys.readouterr().out
    assert "Inception's FID " in out and "the papers' numbers, in the pool_3 features of " \
                                         "TTUR's classify_image_graph_def.pb (MD5 " in out
    result = json.loads((run / "evaluation.json").read_text())["8"]["inception"]
    assert result["frechet_distance"] > 0 and result["num_real"] == 8
    before = snapshot(run)
    for contents in (b"garbage", fake_inception.fake_graph_def(feature_size=100)
                     .SerializeToString()):
        bad = write(tmp_path, contents, "bad.pb")
        assert evaluate.main(["--run", str(run), "--num", "8", "--inception-graph", bad]) == 1
        assert "bad.pb" in one_error_line(capsys.readouterr().err)
    assert evaluate.main(["--run", str(run), "--num", "8", "--inception-graph",
                          str(tmp_path / "absent.pb")]) == 1
    assert "download http" in one_error_line(capsys.readouterr().err)
    assert snapshot(run) == before
