"""The benchmark scripts still run (tiny sizes, CPU); their figures are not checked, only their output's shape.
They run as their users run them, as scripts in a subprocess: no test imports from ``benchmarks/``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def script(name, *args, timeout=300):
    """``python benchmarks/<name> ARGS`` from the repository root: the finished process (text output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def _profile(device="cpu", *, speedup=2.4, share=0.019, full_ips=800.0, batch=64, threads=2, gpu=None, copies=1.2):
    """The parts of a ``dali-cutmix profile`` JSON that the targets read, with made-up figures."""
    def summary(median, spread=0.1):
        return {"median": median, "q1": median * (1 - spread), "q3": median * (1 + spread)}

    return {"settings": {"device": device, "batch_size": batch, "threads": threads, "crop": 224},
            "machine": {"gpu": gpu}, "loader_vs_reference": summary(speedup), "cutmix_share": summary(share),
            "variants": {"full": {"images_per_s": summary(full_ips / 2), "images_per_s_async": summary(full_ips)}},
            "stage": {"methods": {"cutmix": {"copies": summary(copies)}}}}


def judge(tmp_path, profile, *flags):
    """``check_targets.py`` on ``profile`` (written to a file): (exit code, printed lines)."""
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    result = script("check_targets.py", path, *flags)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


def test_check_targets_judges_the_profile_of_each_device(tmp_path):
    code, lines = judge(tmp_path, _profile())
    assert code == 0 and len(lines) == 3
    assert lines[0].startswith("met     loader >= 2x torchvision reference (CPU, same cores): 2.40 (IQR 2.16 to "
                               "2.64, whole IQR met)")
    assert lines[1].startswith("met     CutMix <= 3% of the full pipeline (CPU): 1.9% (IQR 1.7% to 2.1%, whole IQR "
                               "met)")
    assert lines[2].startswith("met     CutMix stage alone <= 1.5 copies of its batch (CPU): 1.20")
    assert not any("not under the target's conditions" in line for line in lines)
    code, lines = judge(tmp_path, _profile(copies=3.3))
    assert code == 1 and lines[2].startswith("NOT met CutMix stage alone <= 1.5 copies")

    code, lines = judge(tmp_path, _profile(speedup=1.5, threads=1))
    assert code == 1 and [line.split()[0] for line in lines] == ["NOT", "met", "met"]
    assert all("run not under the target's conditions" in line for line in lines)

    code, lines = judge(tmp_path, _profile("gpu", share=0.005, full_ips=9000.0, batch=256, gpu="NVIDIA H100 80GB"))
    assert code == 0 and len(lines) == 2 and not any("not under" in line for line in lines)
    code, lines = judge(tmp_path, _profile("gpu", share=0.005, full_ips=9000.0, batch=256, gpu="NVIDIA A100"))
    assert code == 0 and ["not under" in line for line in lines] == [False, True]
    trained = _profile("gpu", share=0.005, full_ips=9000.0, batch=256, gpu="NVIDIA H100 80GB")
    trained["training"] = {"model": "resnet50", "data_wait_share": 0.035}
    code, lines = judge(tmp_path, trained)
    assert code == 1 and len(lines) == 3 and lines[2].startswith("NOT met ResNet-50 waits for data < 2%")
    assert ": 3.5% (IQR 3.5% to 3.5%" in lines[2], "data wait over 2%"

    # the median meets the 3% target, the upper quartile does not: met, but not under --strict
    assert judge(tmp_path, _profile(share=0.028))[0] == 0
    assert judge(tmp_path, _profile(share=0.028), "--strict")[0] == 1
    code, lines = judge(tmp_path, _profile(speedup=1.5))
    assert code == 1
    assert any(line.startswith("NOT met loader >= 2x") for line in lines)
    assert any(line.startswith("met     CutMix <= 3%") for line in lines)
    missing = script("check_targets.py", tmp_path / "missing.json")
    assert missing.returncode == 2 and "missing.json" in missing.stderr


def test_the_loader_is_judged_against_its_own_crop_stage_where_the_profile_has_it(tmp_path):
    profile = _profile()
    profile["loader_vs_crop"] = {"median": 0.92, "q1": 0.9, "q3": 0.95}
    code, lines = judge(tmp_path, profile)
    assert code == 0 and len(lines) == 4
    assert lines[3].startswith("met     CutMixLoader >= 90% of its pipeline's decode + crop + resize rate (CPU): "
                               "92.0% (IQR 90.0% to 95.0%, whole IQR met)")
    profile["loader_vs_crop"] = {"median": 0.86, "q1": 0.84, "q3": 0.87}
    code, lines = judge(tmp_path, profile)
    assert code == 1 and lines[3].startswith("NOT met CutMixLoader >= 90%")
    profile["loader_vs_crop"] = None  # a variant it is taken from was not measured: no verdict
    assert judge(tmp_path, profile)[1] == judge(tmp_path, _profile())[1]
