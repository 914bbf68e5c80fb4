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


GPU_CHECK_SECTIONS = ("smoke_roi_decode", "invariants", "pipeline_throughput", "stage_alone")


def test_gpu_check_runs_every_section_on_the_cpu(tmp_path, capsys):
    import gpu_check

    from dali_cutmix.pipelines.profile_data import make_profile_dataset

    data = make_profile_dataset(tmp_path / "data", images=16, classes=4, size=(64, 80))
    out = tmp_path / "gpu_check.json"
    code = gpu_check.main(["--device", "cpu", "--data", str(data), "--batch", "8", "--crop", "64", "--threads", "2",
                           "--check-batch", "4", "--check-batches", "1", "--rounds", "1", "--batches", "1",
                           "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["status"] == "passed" and report["schema"] == gpu_check.SCHEMA
    assert {"created", "command", "settings", "machine"} <= set(report)
    assert report["settings"]["device"] == "cpu" and report["settings"]["batch"] == 8
    assert list(report["sections"]) == list(GPU_CHECK_SECTIONS) == list(gpu_check.SECTIONS)
    assert all(s["status"] == "passed" and s["seconds"] >= 0 for s in report["sections"].values())
    smoke, invariants, throughput, alone = (report["sections"][n]["result"] for n in GPU_CHECK_SECTIONS)
    assert smoke["returncode"] == 0 and smoke["signal"] is None and smoke["later_sections_decode"] == "roi"
    assert smoke["batch"]["shape"] == [8, 64, 64, 3] and smoke["dataset"]["images"] == 16
    assert set(invariants["cases"]) == set(gpu_check.INVARIANT_CASES)
    assert invariants["cases"]["pair_odd_batch"]["batch"] == 5
    assert invariants["max_pixel_error_exact"] == 0 and invariants["max_pixel_error_mixup"] <= 1
    assert invariants["max_label_error"] <= 1e-6
    assert all(not c["violations"] for c in invariants["cases"].values())
    assert throughput["decode"] == "roi" and throughput["fp16"] and throughput["prefetch_queue_depth"] == 2
    assert set(throughput["images_per_s"]) == set(throughput["ms_per_batch"]) == {"mixing", "no_mixing"}
    assert {"median", "q1", "q3", "samples"} <= set(throughput["mixing_to_no_mixing"])
    assert alone["timer"] == "perf_counter" and set(alone["ms_per_batch"]) == {"with_stage", "without_stage", "stage"}
    assert alone["pipeline_ms_per_batch"] == throughput["ms_per_batch"]["mixing"]["median"]
    assert set(alone["share_of_pipeline"]) == {"median", "q1", "q3"}
    printed = capsys.readouterr().out
    assert all(f"passed {n} (" in printed for n in GPU_CHECK_SECTIONS)  # one line per finished section
    assert "gpu_check: passed" in printed  # the table, last


def test_gpu_check_keeps_every_result_when_a_section_fails(tmp_path):
    import gpu_check

    out = tmp_path / "report.json"
    lines = []

    def first(report):
        return {"summary": "fine", "value": 1}

    def broken(report):
        raise RuntimeError("the decoder fell over\nsecond line")

    def checked(report):
        raise gpu_check.CheckFailed("pixels differ", {"max_pixel_error": 7})

    def last(report):
        on_disk = json.loads(out.read_text())  # written after every section, before the next one runs
        assert on_disk["sections"]["first"]["result"]["value"] == 1
        assert on_disk["sections"]["broken"]["status"] == "failed"
        assert on_disk["sections"]["last"]["status"] == "running" and on_disk["status"] == "running"
        return {"seen": sorted(report["sections"])}

    report = gpu_check.run_sections([first, broken, checked, last], out, {"schema": "x"}, echo=lines.append)
    assert report == json.loads(out.read_text()) and report["schema"] == "x"
    sections = report["sections"]
    assert [sections[n]["status"] for n in ("first", "broken", "checked", "last")] == [
        "passed", "failed", "failed", "passed"]
    assert sections["broken"]["error"] == "RuntimeError: the decoder fell over"
    assert "raise RuntimeError" in sections["broken"]["traceback"] and "result" not in sections["broken"]
    assert sections["checked"]["result"] == {"max_pixel_error": 7}, "a failed check keeps what it measured"
    assert sections["last"]["result"]["seen"] == ["broken", "checked", "first", "last"]
    assert report["status"] == "failed" and gpu_check.exit_code(report) == 1
    assert len(lines) == 4 and lines[0].startswith("passed first") and "the decoder fell over" in lines[1]
    assert gpu_check.exit_code(gpu_check.run_sections([first], tmp_path / "ok.json")) == 0


def test_gpu_check_falls_back_to_full_decode_when_the_smoke_test_crashes(tmp_path, monkeypatch):
    import gpu_check

    from dali_cutmix.pipelines.profile_data import make_profile_dataset

    data = make_profile_dataset(tmp_path / "data", images=4, classes=2, size=(40, 56))
    monkeypatch.setattr(gpu_check, "SMOKE_CHILD_CODE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    check = gpu_check.GpuCheck(gpu_check.parse_args(["--device", "cpu", "--data", str(data), "--batch", "2"]))
    report = gpu_check.run_sections([check.smoke_roi_decode], tmp_path / "r.json", echo=lambda line: None)
    smoke = report["sections"]["smoke_roi_decode"]
    assert smoke["status"] == "failed" and "SIGSEGV" in smoke["error"]
    assert smoke["result"]["signal"] == "SIGSEGV" and smoke["result"]["later_sections_decode"] == "full"
    assert check.decode == "full"


def test_gpu_check_invariants_catch_wrong_pixels_and_labels():
    import gpu_check
    import numpy as np
    import reference as ref

    from dali_cutmix import MixOptions

    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    labels, perm = np.array([0, 1, 2, 3]), np.array([1, 0, 3, 2])
    box = np.array([[1, 2, 4, 6], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    method = np.array([1, 2, 0, 2])
    lam = np.array([1 - 12 / 48, 0.3, 1.0, 0.6], np.float32)
    mixed = ref.mix_pixels(source, perm, box, method, lam)
    targets = ref.soft_labels(labels, perm, lam, 4).astype(np.float32)
    options = MixOptions(mixup_alpha=0.8, mode="elem")

    def violations(mixed=mixed, targets=targets):
        return gpu_check.compare_batch(source, mixed, targets, labels, perm, box, lam, method, num_classes=4,
                                       options=options, pair=False)["violations"]

    assert violations() == []
    off_by_one = mixed.copy()
    off_by_one[1] = np.where(off_by_one[1] < 255, off_by_one[1] + 1, 254)  # MixUp sample: within rounding
    assert violations(off_by_one) == []
    for sample, what in ((0, "CutMix/unmixed pixels"), (2, "CutMix/unmixed pixels"), (3, "MixUp pixels")):
        wrong = mixed.copy()
        wrong[sample, 0, 0, 0] ^= 0x40
        assert any(v.startswith(what) for v in violations(wrong)), sample
    assert any("soft labels differ" in v for v in violations(targets=targets[::-1]))


def _profile(device="cpu", *, speedup=2.4, share=0.019, full_ips=800.0, batch=64, threads=2, gpu=None):
    """The parts of a ``dali-cutmix profile`` JSON that the targets read, with made-up figures."""
    def summary(median, spread=0.1):
        return {"median": median, "q1": median * (1 - spread), "q3": median * (1 + spread)}

    return {"settings": {"device": device, "batch_size": batch, "threads": threads, "crop": 224},
            "machine": {"gpu": gpu}, "loader_vs_reference": summary(speedup), "cutmix_share": summary(share),
            "variants": {"full": {"images_per_s": summary(full_ips / 2), "images_per_s_async": summary(full_ips)}}}


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
    trained = _profile("gpu", share=0.005, full_ips=9000.0, batch=256, gpu="NVIDIA H100 80GB")
    trained["training"] = {"model": "resnet50", "data_wait_share": 0.035}
    waits = check_targets.evaluate(trained)
    assert len(waits) == 3 and waits[2]["measured"] == 0.035 and not waits[2]["met"], "data wait over 2%"

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
