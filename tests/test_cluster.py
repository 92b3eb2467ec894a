"""machinery/cluster.py: TF_CONFIG read and checked as the flags are parsed: a malformed one is one
line, the global batch must divide over the replicas of every worker, and the workers are numbered
as TensorFlow numbers them."""
import json

import pytest

import train
from machinery import cluster
from helpers import train_args


@pytest.mark.parametrize("text, message", [
    ("{", "TF_CONFIG is not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'needs a "cluster" object'),
    ('{"cluster": {"ps": ["a:1"], "worker": ["a:2"]}, "task": {"type": "worker", "index": 0}}',
     "lists ps"),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}',
     '"host:port" addresses'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     'needs "task"'),
])
def test_a_malformed_tf_config_is_one_line_at_parse_time(text, message, data_dir, tmp_path,
                                                         monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(train_args(data_dir, tmp_path / "run"))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_global_batch_must_divide_over_every_worker(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2", "c:3"]},
                                                "task": {"type": "worker", "index": 1}}))
    with pytest.raises(SystemExit):
        train.parse_args(train_args(data_dir, tmp_path / "run"))
    assert "16 does not divide evenly over 3 replicas (1 devices x 3 workers); try 15" in \
        capsys.readouterr().err


def test_cluster_numbers_the_workers_as_tensorflow_does():
    spec = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    for task, index in ((("chief", 0), 0), (("worker", 0), 1), (("worker", 1), 2)):
        found = cluster.from_environment({"TF_CONFIG": json.dumps(
            {"cluster": spec, "task": {"type": task[0], "index": task[1]}})})
        assert (found.workers, found.worker_index) == (3, index)
    assert cluster.from_environment({}) is None
    assert cluster.from_environment({"TF_CONFIG": json.dumps(
        {"cluster": {"worker": ["w:1"]}, "task": {"type": "worker", "index": 0}})}) is None
