"""``benchmarks/gpu_run.sh``, the one GPU script, in its parts that need no GPU: usage, the check of both plans'
arguments, the check that python imports this tree's ``dali_cutmix``, the budget, a step that dies or times out
leaving the others, the summary and the archive within the GPU machine's return limits, and the ROI smoke test's
verdict reaching every step. (CI runs the whole ``--dry-run``; most of these run in seconds.)"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"
CHECKER = ROOT / "benchmarks" / "gpu_run_args.py"
PLAN = ("args", "env", "roi-smoke", "doctor", "tests", "demo", "train", "profile-cutmix", "profile-mixup",
        "profile-switch", "tests-cli")
HEAVY = "args env tests sanitizer profile-cutmix profile-mixup profile-switch train tests-cli"
USAGE = ("usage: bash benchmarks/gpu_run.sh [--dry-run] [--sanitizer] OUT | bash benchmarks/gpu_run.sh "
         "--check-args\n")


def gpu_run(*args, python=sys.executable, timeout=300, **env):
    """``bash benchmarks/gpu_run.sh ARGS`` with ``$PYTHON`` and extra environment ``env``: the finished process."""
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": str(python), **env}, cwd="/")


def within_return_limits(out: Path) -> list[str]:
    """OUT's files, checked against what the GPU machine returns: at most 8 files, none over 16 MiB, none deeper
    than two folders."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files
    assert all(p.stat().st_size <= 16 << 20 for p in files)
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    return sorted(p.relative_to(out).as_posix() for p in files)


def archived(out: Path) -> dict[str, bytes]:
    """The archive's files (names below ``gpu_run/``) and their bytes."""
    with tarfile.open(out / "gpu_run.tar.gz") as tar:
        return {m.name[len("gpu_run/"):]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def steps_of(out: Path) -> dict[str, dict]:
    """The archived step records, by name, in the order the summary lists them."""
    return json.loads((out / "summary.json").read_text())["steps"]


def test_bad_usage_exits_2():
    for args in ((), ("--dry-run",), ("a", "b"), ("--fast", "out"), ("--check-args", "out"),
                 ("--dry-run", "--check-args"), ("--sanitizer",)):
        result = gpu_run(*args)
        assert result.returncode == 2 and result.stderr == USAGE, args


def test_check_args_checks_both_plans_through_the_commands_checkers():
    result = gpu_run("--check-args")
    assert result.returncode == 0, result.stderr
    checked = [line.split()[:3] for line in result.stdout.splitlines()]
    for plan in ("gpu", "dry-run"):
        assert [c[2] for c in checked if c[1] == plan] == ["demo", "train", "profile", "profile", "profile"]
    lines = result.stdout.splitlines()
    assert lines[0] == "ok  gpu      demo     6 classes, 768 train / 96 val images"
    assert lines[1] == "ok  gpu      train    resnet50, batch 128 over 1 rank(s), crop 224, decode roi"
    assert lines[2].startswith("ok  gpu      profile  gpu, batch 256, 4 batches x 3, model resnet50, ")


@pytest.fixture(scope="module")
def checker():
    """``benchmarks/gpu_run_args.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("gpu_run_args", CHECKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("group, message", [
    (["demo", "8", "128", "16", "256"], "gpu mode's demo arguments are invalid: num_classes must be in [1, 6], got 8"),
    (["demo", "6", "128", "16", "0"], "gpu mode's demo arguments are invalid: size must be an integer >= 1, got 0"),
    (["demo", "2", "4", "2", "64", "--", "train", "--gpus", "1", "--batch-size", "128", "--arch", "resnet18"],
     "gpu mode's train arguments are invalid: --batch-size 128 is too large: a step takes 128 images but there are "
     "only 8 training images"),
    (["demo", "6", "128", "16", "256", "--", "train", "--gpus", "1", "--arch", "inception_v3", "--crop", "64",
      "--batch-size", "8"],
     "gpu mode's train arguments are invalid: --arch inception_v3 cannot train at --crop 64: it needs 299 pixels"),
    (["demo", "6", "128", "16", "256", "--", "train", "--gpus", "1", "--min-area", "2"],
     "gpu mode's train arguments are invalid: --min-area must be in (0, 1], got 2.0"),
    (["demo", "6", "128", "16", "256", "--", "train", "--gpus", "3", "--batch-size", "128"],
     "gpu mode's train arguments are invalid: --batch-size 128 does not split over 3 ranks"),
    (["demo", "6", "128", "16", "256", "--", "train", "--workers", "many"],
     "gpu mode's train arguments are invalid: Invalid value for '--workers': 'many' is not a valid integer."),
    (["profile", "--device", "gpu", "--model", "resnet5O"],
     "gpu mode's profile arguments are invalid: --model 'resnet5O' is not a torchvision classification model"),
    (["profile", "--device", "gpu", "--batch-size", "256", "--images", "100"],
     "gpu mode's profile arguments are invalid: --images 100 is fewer than one batch of 256"),
    (["profile", "--device", "gpu", "--mixup-alpha", "-1"],
     "gpu mode's profile arguments are invalid: --mixup-alpha must be"),
])
def test_a_bad_size_or_flag_of_a_plan_fails_the_check_naming_it(group, message, checker, capsys):
    """What the args step (and --check-args, and so CI's dry run) says when GPU mode's sizes are wrong, e.g. the 8
    classes the demo set does not have."""
    assert checker.main(["plan", "gpu", "--", *group]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("gpu_run_args: " + message) and len(stderr.splitlines()) == 1, stderr


def test_a_stale_dali_cutmix_stops_the_run_before_any_step(tmp_path):
    stale = tmp_path / "stale" / "dali_cutmix"
    stale.mkdir(parents=True)
    (stale / "__init__.py").write_text("")
    python = tmp_path / "python"  # a python that finds another dali_cutmix before the tree's
    python.write_text(f'#!/bin/sh\nPYTHONPATH={stale.parent} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    out = tmp_path / "out"
    result = gpu_run("--dry-run", out, python=python, GPU_RUN_WORK=tmp_path / "work")
    assert result.returncode == 1
    assert "python imports dali_cutmix from somewhere else than this tree" in result.stderr
    assert within_return_limits(out) == ["gpu_run.tar.gz", "summary.json", "summary.txt"]
    files = archived(out)
    source = json.loads(files["source.json"])
    assert source["dali_cutmix"] == str(stale / "__init__.py") and source["from_tree"] is False
    assert steps_of(out) == {} and not any(name.startswith("steps/") for name in files), "no step ran"
    assert (out / "summary.txt").read_text().startswith("gpu_run (dry-run): NOT passed")


def test_a_step_past_its_limit_leaves_the_later_steps_the_summary_and_the_archive(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    result = gpu_run("--dry-run", out, GPU_RUN_SKIP=HEAVY, GPU_RUN_TIMEOUT_DOCTOR="1", GPU_RUN_WORK=work,
                     GPU_RUN_ROI_SMOKE="echo ROI decoding works", DALI_CUTMIX_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 1, result.stderr
    assert within_return_limits(out) == ["gpu_run.tar.gz", "summary.json", "summary.txt"]
    steps = steps_of(out)
    assert list(steps) == ["roi-smoke", "doctor", "demo"]
    assert steps["doctor"]["status"] == "timed-out" and steps["doctor"]["rc"] in (124, 137)  # SIGINT, or SIGKILL
    assert steps["doctor"]["timeout"] == 1 and steps["doctor"]["command"][0] == "bash"
    assert steps["demo"]["status"] == "passed" and (work / "demo" / "train").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "dry-run" and summary["passed"] is False and summary["budget_s"] == 420
    assert summary["source"]["from_tree"] is True
    assert summary["source"]["dali_cutmix"] == str(ROOT / "dali_cutmix" / "__init__.py")
    text = (out / "summary.txt").read_text().splitlines()
    assert text[0].startswith("gpu_run (dry-run): NOT passed (")
    assert [line.split()[:2] for line in text[1:4]] == [["roi-smoke", "passed"], ["doctor", "timed-out"],
                                                        ["demo", "passed"]]
    assert (out / "summary.txt").read_text() in result.stdout, "the table is printed at the end"
    for name in HEAVY.split():
        if name != "sanitizer":
            assert f"gpu_run: {name} skipped (GPU_RUN_SKIP)" in result.stdout
    assert "sanitizer" not in result.stdout, "only when asked for"
    files = archived(out)
    assert files["roi-smoke.log"] == b"ROI decoding works\n"
    assert {"summary.json", "summary.txt", "source.json", "roi-smoke.log", "doctor.log", "demo.log",
            "steps/roi-smoke.json", "steps/doctor.json", "steps/demo.json"} <= set(files)
    assert not [n for n in files if n.startswith(("demo/", "cache/")) or n.endswith((".jpg", ".pt", ".so"))]
    assert json.loads(files["steps/doctor.json"])["status"] == "timed-out"
    assert files["summary.json"] == (out / "summary.json").read_bytes()


def test_the_budget_cuts_each_step_to_what_is_left_and_skips_what_cannot_fit(tmp_path):
    """A ROI smoke test that hangs is cut at what is left of a 40 s budget less the time kept for packing (status
    "cut": stopped by the budget, not at its own limit); then nothing fits, every later step says so (decoding
    whole images: the smoke test gave no verdict), and the run ends inside its budget with its summary and
    archive."""
    out = tmp_path / "out"
    result = gpu_run("--dry-run", "--sanitizer", out, GPU_RUN_SKIP="args env", GPU_RUN_BUDGET="40",
                     GPU_RUN_ROI_SMOKE="sleep 300", GPU_RUN_WORK=tmp_path / "work", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["elapsed_s"] <= 40 and summary["budget_s"] == 40
    steps = summary["steps"]
    assert steps["roi-smoke"]["status"] == "cut" and 10 <= steps["roi-smoke"]["timeout"] <= 15
    assert steps["roi-smoke"]["rc"] == 124 and summary["cut"] == ["roi-smoke"]
    later = ["doctor", "tests", "sanitizer", "demo", "train", "profile-cutmix", "profile-mixup", "profile-switch",
             "tests-cli"]
    assert list(steps) == ["roi-smoke", *later] and summary["skipped"] == later
    for name in later:
        assert steps[name]["reason"].startswith("budget: ") and steps[name]["decode"] == "full"
    assert within_return_limits(out) == ["gpu_run.tar.gz", "summary.json", "summary.txt"]
    assert "steps/tests-cli.json" in archived(out)


def test_a_signal_stops_the_running_step_and_still_packs_the_results(tmp_path):
    """The command's own limit (SIGTERM from outside): the running step goes too, and OUT gets the summary and the
    archive before the script exits 143."""
    out, work = tmp_path / "out", tmp_path / "work"
    process = subprocess.Popen(["bash", str(SCRIPT), "--dry-run", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/",
                               env={**os.environ, "PYTHON": sys.executable, "GPU_RUN_SKIP": "args env",
                                    "GPU_RUN_ROI_SMOKE": f"echo $$ > {tmp_path / 'pid'}; exec sleep 300",
                                    "GPU_RUN_WORK": str(work)})
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text().strip():
            assert time.monotonic() < deadline and process.poll() is None, "the smoke step never started"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143 and "gpu_run: stopped by a signal" in stderr
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert within_return_limits(out) == ["gpu_run.tar.gz", "summary.json", "summary.txt"]
    assert "steps/roi-smoke.json" not in archived(out), "the step did not end: it has no record"
    assert (out / "summary.txt").read_text() in stdout


def test_the_work_folder_and_out_stay_apart(tmp_path):
    for out, work in ((tmp_path / "w" / "out", tmp_path / "w"), (tmp_path / "o", tmp_path / "o" / "work")):
        result = gpu_run("--dry-run", out, GPU_RUN_WORK=work)
        assert result.returncode == 2 and "must not be inside" in result.stderr


def recording_python(tmp_path: Path) -> Path:
    """A python that, for pytest, ``dali-cutmix train``, ``profile`` and ``doctor``, appends ``$DALI_CUTMIX_DECODE``
    and its arguments to ``tmp_path/calls.txt`` and succeeds; anything else runs for real."""
    python = tmp_path / "python"
    python.write_text(f"""#!/bin/sh
case "$1 $2 $3" in
  "-m pytest "*|"-m dali_cutmix.cli train"|"-m dali_cutmix.cli profile"|"-m dali_cutmix.cli doctor")
    echo "${{DALI_CUTMIX_DECODE:-unset}} $*" >> {tmp_path / 'calls.txt'}; exit 0 ;;
esac
exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    return python


@pytest.mark.parametrize("smoke, verdict", [("exit 1", "full"), ("sleep 300", "full"), ("kill -SEGV $$", "full"),
                                            (None, "full"), ("true", "roi")])
def test_the_roi_smoke_tests_verdict_reaches_every_later_step(tmp_path, smoke, verdict):
    """A smoke test that fails, hangs, crashes or gives no verdict (left out): the tests, training and profile steps
    decode whole images (DALI_CUTMIX_DECODE=full in their environment, --decode full on the trainer and the
    profiler); one that passes leaves the ROI decoding on."""
    out = tmp_path / "out"
    env = {"GPU_RUN_ROI_SMOKE": smoke} if smoke else {"GPU_RUN_SKIP": "roi-smoke"}
    skip = "args env" + (" roi-smoke" if smoke is None else "")
    result = gpu_run("--dry-run", out, python=recording_python(tmp_path), GPU_RUN_WORK=tmp_path / "work",
                     GPU_RUN_TIMEOUT_ROI_SMOKE="3", **{**env, "GPU_RUN_SKIP": skip})
    assert result.returncode == (1 if smoke and verdict == "full" else 0), result.stdout + result.stderr
    said = "the ROI smoke test failed, hung or gave no verdict: every later step decodes whole images"
    assert (said in result.stdout) == (verdict == "full")
    steps = steps_of(out)
    later = ["doctor", "tests", "demo", "train", "profile-cutmix", "profile-mixup", "profile-switch", "tests-cli"]
    assert list(steps) == ([] if smoke is None else ["roi-smoke"]) + later
    assert all(steps[name]["decode"] == verdict for name in later)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    environment = "full" if verdict == "full" else "unset"
    assert [c.split()[:4] for c in calls] == [
        [environment, "-m", "dali_cutmix.cli", "doctor"], [environment, "-m", "pytest", "-m"],
        [environment, "-m", "dali_cutmix.cli", "train"], *[[environment, "-m", "dali_cutmix.cli", "profile"]] * 3,
        [environment, "-m", "pytest", "-m"]]
    for call in calls[2:6]:
        words = call.split()
        assert words[words.index("--decode") + 1] == verdict, call


def test_a_failed_roi_decode_makes_the_profile_and_training_decode_whole_images(tmp_path):
    """The real steps after a failed smoke test (nvImageCodec issue #55): the profile and the trainer record that
    they decoded whole images."""
    out, work = tmp_path / "out", tmp_path / "work"
    result = gpu_run("--dry-run", out, GPU_RUN_ROI_SMOKE="exit 1", GPU_RUN_WORK=work,
                     GPU_RUN_SKIP="args env doctor tests profile-mixup profile-switch tests-cli",
                     DALI_CUTMIX_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 1, result.stdout + result.stderr
    steps = steps_of(out)
    assert {n: s["status"] for n, s in steps.items()} == {"roi-smoke": "failed", "demo": "passed",
                                                          "train": "passed", "profile-cutmix": "passed"}
    for name in ("profile-cutmix", "train"):
        command = steps[name]["command"]
        assert steps[name]["decode"] == "full" and command[command.index("--decode") + 1] == "full", command
    files = archived(out)
    assert json.loads(files["profile-cutmix.json"])["settings"]["decode"] == "full"
    assert json.loads(files["train/run.json"])["config"]["decode"] == "full"
    assert "profile-cutmix.png" in files and not any(n.endswith(".pt") for n in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"]["cutmix"]["decode"] == "full" and summary["train"]["run_json"]["decode"] == "full"
