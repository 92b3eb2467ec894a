"""machinery/benchmark.py (bench.py's work): FLOPs counted from the size rule against a count by
hand, and the command timing both precisions, two replicas against one device, and each
rewritable layer at the size."""
import json
import re

import pytest

import bench
from machinery import benchmark
from helpers import D_WIDTHS, G_WIDTHS


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


@pytest.mark.slow
def test_bench_compares_both_precisions_in_one_command(tmp_path, capsys):
    report = tmp_path / "bench.json"
    assert bench.main(["--g-steps", "1", "--channels", "1", "--precision", "both",
                       "--batch-size", "8", "--warmup", "1", "--steps", "5",
                       "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "bfloat16 / float32 = " in out and ("faster here" in out or "slower here" in out)
    results = json.loads(report.read_text())["results"]
    assert [result["precision"] for result in results] == ["float32", "bfloat16"]
    assert all(result["images_per_sec"] > 0 for result in results)


@pytest.mark.slow
def test_bench_times_two_replicas_against_one_device(tmp_path, capsys):
    report = tmp_path / "bench.json"
    assert bench.main(["--g-steps", "1", "--channels", "1", "--precision", "float32",
                       "--image-size", "16", "--batch-size", "8", "--warmup", "1", "--steps",
                       "4", "--devices", "2", "--sync-batch-norm", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "MirroredStrategy over 2 logical CPU devices" in out
    assert re.search(r"--devices 2: [\d.]+ images/s against [\d.]+ on one device \(float32, "
                     r"global batch 8\): speedup [\d.]+x, scaling efficiency \d+%", out), out
    one, two = json.loads(report.read_text())["results"]
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["scaling_efficiency"] == pytest.approx(
        two["images_per_sec"] / one["images_per_sec"] / 2)


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
