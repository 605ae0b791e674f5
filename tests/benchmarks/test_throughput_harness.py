"""The harness end to end on a tiny config: valid JSON with every key, markdown and PNG."""

from __future__ import annotations

import json

import pytest

from benchmarks import throughput

pytestmark = pytest.mark.slow  # the benchmark harness end to end

ROW_KEYS = {"framework", "variant", "precision", "mode", "batch_size", "image_size", "images_per_second",
            "compile_seconds", "tflops", "peak_memory_mb"}


def test_harness_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "tiny.json"
    rc = throughput.main(["--quick", "--batch", "2", "--size", "32", "--repeats", "1",
                          "--config", "tiny", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    for key in ("device", "versions", "results", "pipeline", "ratios", "targets", "flops", "layer_profile", "notes"):
        assert key in result, key
    assert result["device"]["kind"] == "cpu"
    assert {"jax", "torch"} <= set(result["versions"])
    labels = {(r["framework"], r["variant"], r["precision"]) for r in result["results"]}
    assert {("jax", "jit", "fp32"), ("jax", "jit", "bf16"), ("torch", "eager", "fp32"),
            ("torch", "channels_last", "fp32"), ("torch", "eager", "bf16")} <= labels
    assert any("torch-compile-fp32" in n for n in result["notes"])  # skipped in --quick, and said so
    for r in result["results"]:
        assert ROW_KEYS <= set(r), r
        assert r["images_per_second"] > 0 and r["tflops"] > 0 and r["peak_memory_mb"] > 0
        assert (r["batch_size"], r["image_size"]) == (2, 32)
        if r["framework"] == "jax":
            assert r["compile_seconds"] > 0
    assert {r["mode"] for r in result["results"]} == {"train", "infer"}
    ratios = result["ratios"]["batch2_size32"]
    assert ratios["train"]["jax-jit-fp32 / torch-eager-fp32"]["ratio"] > 0
    assert ratios["infer"]["jax-jit-fp32 / torch-eager-fp32"]["ratio"] > 0
    assert "met" in result["targets"]["batch2_size32"]["train: jax-jit-fp32 / torch-eager-fp32"]
    pipe = result["pipeline"]["configs"]["batch2_size32"]
    assert set(pipe["sources"]) == {"synthetic", "files_npy", "files_png"}
    assert all(v["images_per_second"] > 0 for v in pipe["sources"].values())
    assert isinstance(pipe["bottleneck"], bool) and pipe["verdict"]
    rows = result["layer_profile"]["rows"]
    assert len(rows) == 9  # 8 convs + the loss
    for r in rows[:-1]:
        for fw in ("jax", "torch"):
            times = [r[f"{fw}_{p}_ms"] for p in ("fwd", "input_grad", "kernel_grad", "fwd_bwd")]
            assert all(t > 0 for t in times), r
    assert rows[-1]["layer"].startswith("loss") and rows[-1]["jax_fwd_bwd_ms"] > 0
    md = out.with_suffix(".md").read_text()
    assert "| jax | jit | fp32 | train | 2 | 32 |" in md and "## Ratios" in md and "## Per-layer profile" in md
    assert "| kernel grad |" in md
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_quick_defaults():
    args = throughput.parse_args(["--quick"])
    assert args.batch == [8] and args.size == [256] and args.repeats == 5
    args = throughput.parse_args(["--batch", "8,32", "--size", "256,512", "--repeats", "3"])
    assert args.batch == [8, 32] and args.size == [256, 512] and args.repeats == 3
