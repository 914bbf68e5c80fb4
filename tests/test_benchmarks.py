"""The benchmark scripts still run (tiny sizes, CPU); their figures are not checked, only their output's shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_stage_overhead_reports_every_variant(tmp_path):
    import stage_overhead

    out = tmp_path / "overhead.json"
    rows = stage_overhead.main(["--images", "16", "--rounds", "1", "--batches", "1", "--json", str(out)])
    assert set(rows) == {"none", "cutmix", "cutmix-ops", "mix", "composition", "python-fn"}
    saved = json.loads(out.read_text())
    assert saved["batch"] == 64 and set(saved["variants"]) == set(rows)
    assert all({"ratio_median", "stage_ms_per_batch", "stage_share_of_pipeline"} <= set(v) for v in rows.values())


def test_gpu_check_runs_its_checks_on_the_cpu(tmp_path):
    import gpu_check

    out = tmp_path / "gpu_check.json"
    results = gpu_check.main(["--device", "cpu", "--batch", "8", "--images", "16", "--batches", "1",
                              "--repeats", "1", "--out", str(out)])
    assert results["max_pixel_error_cutmix"] == 0 and results["max_pixel_error_mix"] <= 1
    assert {"pipeline_images_per_s_cutmix", "stage_ms_cutmix", "cutmix_share_of_pipeline"} <= set(results)
    assert json.loads(out.read_text())["device"] == "cpu"


def _profile(device="cpu", *, speedup=2.4, share=0.019, full_ips=800.0, batch=64, threads=2, gpu=None):
    """The parts of a ``dali-cutmix profile`` JSON that the targets read, with made-up figures."""
    def summary(median, spread=0.1):
        return {"median": median, "q1": median * (1 - spread), "q3": median * (1 + spread)}

    return {"settings": {"device": device, "batch_size": batch, "threads": threads, "crop": 224},
            "machine": {"gpu": gpu}, "loader_vs_reference": summary(speedup), "cutmix_share": summary(share),
            "variants": {"full": {"images_per_s": summary(full_ips)}}}


def test_check_targets_judges_the_profile_of_each_device(tmp_path, capsys):
    import check_targets

    rows = check_targets.evaluate(_profile())
    assert [r["name"] for r in rows] == [t.name for t in check_targets.TARGETS if t.device == "cpu"]
    assert all(r["met"] and r["met_whole_iqr"] and r["conditions_match"] for r in rows)

    slow = check_targets.evaluate(_profile(speedup=1.5, threads=1))
    assert [r["met"] for r in slow] == [False, True] and not any(r["conditions_match"] for r in slow)

    gpu = check_targets.evaluate(_profile("gpu", share=0.005, full_ips=9000.0, batch=256, gpu="NVIDIA H100 80GB"))
    assert len(gpu) == 2 and all(r["met"] and r["conditions_match"] for r in gpu)
    on_a100 = check_targets.evaluate(_profile("gpu", share=0.005, full_ips=9000.0, batch=256, gpu="NVIDIA A100"))
    assert [r["conditions_match"] for r in on_a100] == [True, False]

    # the median meets the 3% target, the upper quartile does not: met, but not under --strict
    borderline = tmp_path / "borderline.json"
    borderline.write_text(json.dumps(_profile(share=0.028)))
    assert check_targets.main([str(borderline)]) == 0
    assert check_targets.main([str(borderline), "--strict"]) == 1
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps(_profile(speedup=1.5)))
    assert check_targets.main([str(failing)]) == 1
    out = capsys.readouterr().out
    assert "NOT met loader >= 2x" in out and "met     CutMix <= 3%" in out
    assert check_targets.main([str(tmp_path / "missing.json")]) == 2
