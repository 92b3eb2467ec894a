"""machinery/metrics.py: metrics.csv read in every layout an earlier version wrote, with its types
and every digit; a damaged line (quotes, NULs, huge lines, a zero-filled tail) costs that line
only, set aside and never lost; a full disk while logging is one line."""
import csv
import os
import shutil

import pytest

import train
from machinery import metrics
from helpers import (FIRST_METRICS, HEALTH_METRICS, QUALITY_METRICS, assert_intact, metric_steps,
                     one_error_line, snapshot, train_args)


# --- metrics.csv ---------------------------------------------------------------------------------
def test_metrics_of_every_earlier_layout_are_read_with_their_types(tmp_path):
    first = (tmp_path / "first")
    first.mkdir()
    shutil.copyfile(FIRST_METRICS, first / "metrics.csv")
    rows = metrics.read_metrics(str(first / "metrics.csv"))
    assert [row["step"] for row in rows] == list(range(1, 9))  # written as 1.0 .. 4.0, then 5 ..
    assert all(type(row["step"]) is int and type(row["epoch"]) is int for row in rows)
    text = open(FIRST_METRICS).read().splitlines()
    assert repr(rows[4]["d_loss"]) == text[5].split(",")[2]  # every digit kept
    later = tmp_path / "later"
    later.mkdir()
    shutil.copyfile(QUALITY_METRICS, later / "metrics.csv")
    rows = metrics.read_metrics(str(later / "metrics.csv"))
    assert [(row["step"], "d_loss" in row, "classifier_score" in row) for row in rows] == [
        (2, True, False), (4, True, False), (4, False, True), (6, True, False), (8, True, False),
        (8, False, True)]
    health = tmp_path / "health"
    health.mkdir()
    shutil.copyfile(HEALTH_METRICS, health / "metrics.csv")
    rows = metrics.read_metrics(str(health / "metrics.csv"))
    assert [row["step"] for row in rows] == list(range(10, 130, 10))
    assert all(row["augment_p"] == 1.0 and -1 <= row["d_real_sign"] <= 1 for row in rows)
    assert repr(rows[0]["d_real_sign"]) == open(HEALTH_METRICS).read().splitlines()[1].split(
        ",")[-2]
    assert len({len(layout) for layout in (metrics.FIRST_METRIC_FIELDS,
                                           metrics.SECOND_METRIC_FIELDS,
                                           metrics.THIRD_METRIC_FIELDS,
                                           metrics.METRIC_FIELDS)}) == 4  # told apart by length


@pytest.mark.slow
def test_a_row_of_each_layout_is_read_by_its_number_of_fields():
    old = b"4,1,,,,,,7.5,22.1,2.2,0.06,1796168800.4\n"  # cb75821 to 268e59b: no KID, no health
    new = b"4,1,,,,,,7.5,22.1,2.2,0.06,0.012,0.001,1796168800.4,,\n"
    flat = b"4,1,,,,,,,22.1,,,0.012,0.001,1796168800.4,,\n"  # a flat folder: no classes
    step = b"5,1,1.3,2.1,0.6,0.4,150.0,,,,,,,1796168801.2,0.25,0.1\n"  # the losses, r_t and p
    assert metrics.parse_metric_line(old) == {"step": 4, "epoch": 1, "classifier_score": 7.5,
                                              "frechet_distance": 22.1, "class_entropy": 2.2,
                                              "min_class_share": 0.06, "time": 1796168800.4}
    assert metrics.parse_metric_line(new)["kid"] == 0.012
    assert metrics.parse_metric_line(new)["kid_std"] == 0.001
    assert set(metrics.parse_metric_line(flat)) == {"step", "epoch", "frechet_distance", "kid",
                                                    "kid_std", "time"}
    parsed = metrics.parse_metric_line(step)
    assert (parsed["d_real_sign"], parsed["augment_p"], parsed["d_loss"]) == (0.25, 0.1, 1.3)
    assert metrics.parse_metric_line(",".join(metrics.METRIC_FIELDS).encode() + b"\n") is None
    assert metrics.parse_metric_line(",".join(metrics.SECOND_METRIC_FIELDS).encode()
                                     + b"\n") is None


@pytest.mark.slow
def test_resuming_a_first_version_run_keeps_its_metrics_history(data_dir, run, capsys):
    shutil.copyfile(FIRST_METRICS, run / "metrics.csv")
    old = {row["step"]: row for row in metrics.read_metrics(str(run / "metrics.csv"))}
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    assert "damaged" not in capsys.readouterr().out
    rows = metrics.read_metrics(str(run / "metrics.csv"))
    assert [row["step"] for row in rows] == list(range(1, 13))
    assert {row["step"]: row for row in rows[:8]} == old  # values, every digit, and types
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0] == ",".join(metrics.METRIC_FIELDS)
    assert lines[1].startswith("1,1,") and lines[5].startswith("5,2,")  # integers stay integers


@pytest.mark.slow
def test_quotes_nuls_and_huge_lines_cost_only_themselves(data_dir, run, capsys):
    lines = (run / "metrics.csv").read_bytes().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    damaged = [b'3,1,"0.5,unclosed quote\n',         # a CSV reader would open a field here
               b"\x00" * 40 + b"\n",                 # NULs
               b"4," + b"9" * 300_000 + b"\n",       # a line past 128 KB
               b"5,1,,,,,,,,,,,\n",                  # too many fields
               b"6.5,1,1,1,1,1,1,,,,,1\n"]           # half a step
    content = header + b"".join(rows[:2]) + b"".join(damaged) + b"".join(rows[2:]) \
        + b"\x00" * 200_000  # a zero-filled tail after a power cut, no newline
    (run / "metrics.csv").write_bytes(content)
    good = metrics.read_metrics(str(run / "metrics.csv"))
    assert [row["step"] for row in good] == list(range(1, 9))
    capsys.readouterr()
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    out = capsys.readouterr().out
    assert "skipped 6 damaged line(s) (line 4, 5, 6, 7, 8 and 1 more)" in out
    assert metric_steps(run) == list(range(1, 13))
    assert metrics.read_metrics(str(run / "metrics.csv"))[:8] == good
    aside = [name for name in os.listdir(run) if name.startswith("metrics.csv.damaged-")]
    assert len(aside) == 1 and (run / aside[0]).read_bytes() == content  # not one byte lost


@pytest.mark.slow
def test_a_damaged_metrics_line_costs_that_line_only(data_dir, run, capsys):
    lines = (run / "metrics.csv").read_bytes().splitlines(keepends=True)
    lines[0] = b"st\xffep,garbage header\n"  # the header
    lines[3] = b"3,1,0.5,\xff\xfe\n"           # step 3, cut short and not UTF-8
    (run / "metrics.csv").write_bytes(b"".join(lines))
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 0
    assert "skipped 2 damaged line(s)" in capsys.readouterr().out
    assert metric_steps(run) == [1, 2] + list(range(4, 13))


@pytest.mark.slow
def test_a_full_disk_while_logging_is_one_line(data_dir, run, capsys, monkeypatch):
    original = metrics.MetricsLog.__init__

    def open_then_fill(self, *args, **kwargs):
        original(self, *args, **kwargs)

        class FullDisk:
            def write(self, text):
                raise OSError(28, "No space left on device")

            def flush(self):
                pass

            def close(self):
                pass
        self.file = FullDisk()
        self.csv = csv.DictWriter(self.file, metrics.METRIC_FIELDS, extrasaction="ignore")

    monkeypatch.setattr(metrics.MetricsLog, "__init__", open_then_fill)
    before = snapshot(run, skip={"metrics.csv", "config.json"})
    assert train.main(train_args(data_dir, run, "--epochs", "3")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "metrics.csv" in line and "No space left on device" in line
    assert_intact(before, run)
    assert metric_steps(run) == list(range(1, 9))
