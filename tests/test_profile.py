"""``dali-cutmix profile``: the report's structure (table, JSON, PNG) and clear refusals; no timing assertions."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json

import numpy as np
import pytest

from dali_cutmix import MixOptions
from dali_cutmix.augment_options import PRESETS
from dali_cutmix.cli import main
from dali_cutmix.errors import UserError
from dali_cutmix.pipelines.profile_data import dataset_summary, make_profile_dataset
from dali_cutmix.profiler.graphs import build_stage_pipeline
from dali_cutmix.profiler.mixers import timm_mixer, torchvision_mixer
from dali_cutmix.profiler.run import SCHEMA, measure_variants
from dali_cutmix.profiler.runners import AfterLoaderRunner, runner_keys
from dali_cutmix.profiler.settings import ProfileSettings
from dali_cutmix.profiler.stats import cutmix_shares, figures, isolated_shares, speedups, summarize
from dali_cutmix.profiler.timing import Timing, VariantUnavailable
from dali_cutmix.profiler.variants import ASYNC_TWINS, ISOLATED, STAGES, VARIANT_KEYS, VARIANTS, async_key

from conftest import device_id, host, to_numpy

TINY_RUN = ["--batch-size", "4", "--threads", "1", "--batches", "2", "--repeats", "2", "--crop", "32"]
HAS_TIMM = importlib.util.find_spec("timm") is not None
#: The variants a run measures on this machine (timm's only where timm is installed).
TIMM_VARIANTS = {"after_loader_timm", "timm_loader", "timm_loader_elem"}
HAS_TORCHDATA = importlib.util.find_spec("torchdata") is not None
MEASURED = (set(VARIANT_KEYS) - (set() if HAS_TIMM else TIMM_VARIANTS)
            - (set() if HAS_TORCHDATA else {"dynamic"}))


def run_cli(argv):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """16 small JPEGs in 2 classes."""
    return make_profile_dataset(tmp_path_factory.mktemp("profile") / "data", images=16, classes=2, size=(40, 56))


@pytest.fixture(scope="module")
def profile_run(tiny_data, tmp_path_factory):
    """One tiny profile run with ``--model resnet50`` and ``--async-stages``: (exit code, stdout, stderr, JSON
    dict, PNG path)."""
    out = tmp_path_factory.mktemp("profile_out")
    json_path, png_path = out / "p.json", out / "p.png"
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, "--device", "cpu",
                                    "--model", "resnet50",
                                    "--steps", "1", "--torch-threads", "1", "--async-stages",
                                    "--json", str(json_path), "--plot", str(png_path)])
    assert code == 0, stderr
    return code, stdout, stderr, json.loads(json_path.read_text()), png_path


def test_json_holds_every_variant_with_its_figures(profile_run):
    result = profile_run[3]
    assert result["schema"] == SCHEMA
    assert set(VARIANT_KEYS) == {"decode", "crop", "cutmix", "full", "loader", "dynamic", "after_loader",
                                 "after_loader_timm", "reference", "reference_tensor", "timm_loader",
                                 "timm_loader_elem", "loader_paper", "reference_paper"}
    assert set(result["variants"]) == MEASURED and result["complete"] is True
    for key in MEASURED:
        variant = result["variants"][key]
        assert set(variant["images_per_s"]) >= {"median", "q1", "q3", "min", "max", "n", "iqr_pct"}
        assert variant["images_per_s"]["median"] > 0
        assert len(variant["samples"]) == variant["images_per_s"]["n"] == 2
        assert variant["ms_per_batch"] > 0 and variant["label"] and variant["description"]
    share = result["cutmix_share"]
    assert {"median", "q1", "q3", "samples", "stage_ms_per_batch", "by_stage_difference"} <= set(share)
    assert len(share["by_stage_difference"]["samples"]) == 2
    for paired in ("loader_vs_reference", "loader_vs_reference_tensor", "loader_vs_after_loader",
                   "loader_paper_vs_reference_paper", "loader_vs_crop", "loader_vs_full", "dynamic_vs_loader"):
        assert {"median", "q1", "q3", "samples"} <= set(result[paired]) and len(result[paired]["samples"]) == 2
        assert result[paired]["median"] > 0
    assert result["pairs"]["loader_paper_vs_reference_paper"] == dict(ours="loader_paper", theirs="reference_paper")
    assert result["pairs"]["loader_vs_crop"] == dict(ours="loader", theirs="crop")


def test_every_peer_runs_the_augmentation_of_ours_it_is_paired_with(profile_run):
    """The JSON names each variant's augmentation; each pair's two sides apply the same transforms (the loader's
    rate over its own crop stage aside: that pair measures what the rest of the pipeline costs)."""
    result = profile_run[3]
    variants = result["variants"]
    crop, flip, normalize = ("RandomResizedCrop(scale (0.08, 1), ratio (3/4, 4/3))", "RandomHorizontalFlip(0.5)",
                             "Normalize(ImageNet mean, std)")
    jitter = "ColorJitter(brightness 0.4, contrast 0.4, saturation 0.4) (official CutMix utils)"
    lighting = "Lighting(alphastd 0.1, ImageNet PCA) (official CutMix utils)"
    assert variants["loader"]["augmentation"] == [crop, flip, normalize]
    assert variants["loader"]["augment"] == PRESETS["none"].as_dict()
    assert variants["loader_paper"]["augmentation"] == [crop, flip, jitter, lighting, normalize]
    assert variants["loader_paper"]["augment"] == variants["reference_paper"]["augment"] == PRESETS["paper"].as_dict()
    assert variants["decode"]["augmentation"] == [] and variants["crop"]["augmentation"] == [crop]
    for name, pair in result["pairs"].items():
        if name in ("loader_vs_crop", "loader_vs_full") or pair["theirs"] not in variants:
            continue
        ours, theirs = variants[pair["ours"]], variants[pair["theirs"]]
        assert (ours["augment"], ours["augmentation"]) == (theirs["augment"], theirs["augmentation"]), name
    assert "color_jitter=None" in result["method"]["timm_loader"]


def test_timm_variant_is_skipped_with_its_reason_without_timm(profile_run):
    result = profile_run[3]
    skipped = dict(result["skipped"])
    if not HAS_TORCHDATA:  # the dynamic variant's reason says what to install
        assert "pip install 'dali-cutmix[dynamic]'" in skipped.pop("dynamic")
    if HAS_TIMM:
        assert skipped == {} and result["loader_vs_after_loader_timm"]["median"] > 0
        assert result["machine"]["timm"]
        return
    assert not TIMM_VARIANTS & set(result["variants"])
    assert set(skipped) == TIMM_VARIANTS
    for key in TIMM_VARIANTS:
        assert "timm is not installed" in skipped[key] and "dali-cutmix[bench]" in skipped[key]
        assert f"skipping variant {key}" in profile_run[2]
    assert result["loader_vs_after_loader_timm"] is None and result["machine"]["timm"] is None
    assert result["loader_vs_timm_loader"] is None and result["loader_vs_timm_loader_elem"] is None
    assert profile_run[1].count("skipped: timm is not installed") == 3  # the table says so


def test_stages_are_also_timed_asynchronously_when_asked(profile_run, tmp_path, monkeypatch):
    result = profile_run[3]
    assert result["settings"]["async_stages"] is True and "--async-stages" in result["command"]
    for key in ASYNC_TWINS:  # the stages, and the loader as training runs it
        variant = result["variants"][key]
        assert variant["images_per_s_async"]["median"] > 0 and variant["ms_per_batch_async"] > 0
        assert len(variant["samples_async"]) == variant["images_per_s_async"]["n"] == 2
    for key in MEASURED - set(ASYNC_TWINS):
        assert "images_per_s_async" not in result["variants"][key]
    assert profile_run[1].count("same, prefetching (async)") == len(ASYNC_TWINS) == len(STAGES) + 1
    assert "dali_async" in result["method"]
    assert len(result["loader_async_vs_crop_async"]["samples"]) == 2
    # the default: asynchronous figures on the GPU only
    cpu, gpu = ProfileSettings(data="d"), ProfileSettings(data="d", device="gpu")
    assert not cpu.times_async_stages and gpu.times_async_stages
    assert ProfileSettings(data="d", async_stages=True).times_async_stages
    extra = (ISOLATED, "stage_cutmix", "stage_mixup", "stage_switch")
    assert runner_keys(cpu) == VARIANT_KEYS + extra
    keys = runner_keys(gpu)
    assert keys.index(async_key("full")) == keys.index("full") + 1
    assert keys.index(async_key("loader")) == keys.index("loader") + 1
    assert keys == tuple(k for key in VARIANT_KEYS for k in (key, async_key(key))[:2 if key in ASYNC_TWINS else 1]
                         ) + extra


def test_json_names_the_machine_settings_and_data(profile_run):
    result = profile_run[3]
    machine = result["machine"]
    assert {"cpu", "cpu_cores", "cpu_cores_usable", "gpu", "torch", "torchvision", "dali", "python"} <= set(machine)
    assert machine["cpu"] and machine["cpu_cores"] >= 1
    settings = result["settings"]
    assert (settings["device"], settings["batch_size"], settings["threads"], settings["batches"],
            settings["repeats"], settings["crop"]) == ("cpu", 4, 1, 2, 2, 32)
    assert result["dataset"]["images"] == 16 and result["dataset"]["classes"] == 2
    assert result["command"].startswith("dali-cutmix profile ") and "--batch-size 4" in result["command"]
    assert result["method"]["dali"].startswith("one batch at a time")
    load = result["machine_load"]
    assert {"other_cpu_share", "own_cpu_s", "wall_s", "loadavg_1min_start", "loadavg_1min_end"} <= set(load)
    assert load["wall_s"] > 0


def test_json_holds_the_training_step_and_no_targets(profile_run):
    result = profile_run[3]
    training = result["training"]
    assert training["model"] == "resnet50" and training["steps"] == 1 and training["torch_threads"] == 1
    assert training["images_per_s"] > 0 and 0 <= training["data_wait_share"] <= 1
    assert {"step_ms", "data_wait_ms", "compute_ms", "compute_only_images_per_s"} <= set(training)
    assert training["step"] == "dali_cutmix.train.loop.make_train_step"
    assert training["step_settings"]["amp"] == "off" and training["step_settings"]["optimizer"] == "sgd"
    assert "targets" not in result  # the targets live in benchmarks/check_targets.py


def test_table_is_printed_and_progress_goes_to_stderr(profile_run):
    _, stdout, stderr, result, _ = profile_run
    for variant in VARIANTS:  # the skipped one too, with its reason
        assert variant.label in stdout
    assert "images/s" in stdout and "CutMix share of the full pipeline" in stdout
    assert "loader vs torchvision reference (PIL):" in stdout and "training resnet50" in stdout
    assert "loader vs torchvision reference (tensor):" in stdout
    assert "loader vs v2.CutMix after the loader:" in stdout
    assert "target" not in stdout and "wrote " in stdout
    assert "round 1/2" in stderr and "round 2/2" in stderr and "resnet50 step 1/1" in stderr


def test_png_chart_is_a_valid_image(profile_run):
    from PIL import Image

    png_path = profile_run[4]
    with Image.open(png_path) as image:
        image.verify()
    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 300
        assert len(np.unique(np.asarray(image.convert("L")))) > 2  # bars and text were drawn


def test_profile_runs_on_a_generated_data_set(tmp_path, monkeypatch, device):
    monkeypatch.setenv("DALI_CUTMIX_CACHE", str(tmp_path / "cache"))
    code, stdout, stderr = run_cli(["profile", "--images", "6", "--device", device, "--batch-size", "2",
                                    "--threads", "1",
                                    "--batches", "4", "--repeats", "1", "--crop", "16",
                                    "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png")])
    assert code == 0, stderr
    assert stderr.startswith("generating JPEGs: 0/6\n"), "a cold first use says what it does"
    # 6 images, 8 read per round, 1 round: one warning line each, before the measuring, in the table and the JSON
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and "holds 6 images" in warnings[0] and "--images" in warnings[0]
    assert warnings[1] == ("warning: 1 round: the interquartile ranges (IQR) mean nothing with fewer than 4 "
                           "rounds; use --repeats 5 or more for figures to quote")
    assert stderr.index(warnings[1]) < stderr.index("round 1/1")
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["warnings"] == [w.removeprefix("warning: ") for w in warnings] and warnings[0] in stdout
    assert set(result["variants"]) == MEASURED
    # the default: the stages also timed with prefetching on the GPU only
    assert any("images_per_s_async" in v for v in result["variants"].values()) == (device == "gpu")
    assert result["settings"]["async_stages"] is None and "async" not in result["command"]
    assert result["dataset"]["images"] == 6 and result["dataset"]["mean_width"] == 500
    assert "--images 6" in result["command"]
    assert (tmp_path / "p.png").stat().st_size > 0


def test_small_data_sets_are_warned_about_in_one_line(tiny_data):
    from dali_cutmix.profiler.run import data_warnings

    settings = ProfileSettings(data=str(tiny_data), batch_size=64, batches=8)
    assert data_warnings(512, settings) == [] and data_warnings(100_000, settings) == []
    (fewer,) = data_warnings(100, settings)
    assert "100 images" in fewer and "512" in fewer and "\n" not in fewer
    (tiny,) = data_warnings(8, settings)
    assert "fewer than one batch of 64" in tiny and "\n" not in tiny


def _result_with(profile_run, **share):
    """The tiny run's result with made-up CutMix shares (median, q1, q3)."""
    import copy

    result = copy.deepcopy(profile_run[3])
    result["cutmix_share"].update(share)
    return result


def test_a_negative_cutmix_share_is_called_noise_not_a_small_cost(profile_run):
    from dali_cutmix.profiler.report import format_table, render_chart, share_note

    assert share_note(dict(median=0.02, q1=0.01, q3=0.03)) is None
    assert share_note(dict(median=0.02, q1=-0.01, q3=0.03)).startswith("noisy")
    assert share_note(dict(median=-0.004, q1=-0.01, q3=0.01)).startswith("noise")
    table = format_table(_result_with(profile_run, median=-0.004, q1=-0.01, q3=0.01))
    (line,) = [line for line in table.splitlines() if line.startswith("CutMix share")]
    assert "-0.4%" in line and "noise: the run cannot tell the stage's cost from zero" in line
    render_chart(_result_with(profile_run, median=-0.004, q1=-0.01, q3=0.01))  # draws


def check_targets(path):
    """``python benchmarks/check_targets.py path`` as a user runs it (a script, never imported by a test):
    (exit code, {target name: its line})."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "check_targets.py"
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120)
    rows = {line.split(": ")[0][8:]: line for line in done.stdout.splitlines()}
    return done.returncode, rows


def test_check_targets_calls_a_negative_share_noise(tmp_path):
    def profile(median, q1, q3, copies=1.2):
        return {"settings": {"device": "cpu", "batch_size": 64, "threads": 2, "crop": 224}, "machine": {},
                "loader_vs_reference": {"median": 2.4, "q1": 2.3, "q3": 2.5},
                "cutmix_share": {"median": median, "q1": q1, "q3": q3},
                "stage": {"methods": {"cutmix": {"copies": {"median": copies, "q1": copies - 0.1,
                                                            "q3": copies + 0.1}}}}}

    share, copies = "CutMix <= 3% of the full pipeline (CPU)", "CutMix stage alone <= 1.5 copies of its batch (CPU)"
    path = tmp_path / "noise.json"
    path.write_text(json.dumps(profile(-0.004, -0.01, 0.01)))
    code, rows = check_targets(path)
    assert code == 1 and set(rows) == {"loader >= 2x torchvision reference (CPU, same cores)", share, copies}
    assert rows[share].startswith("NOISE   ") and "not a small cost" in rows[share]
    assert rows[copies].startswith("met     ") and "1.20 (IQR 1.10 to 1.30, whole IQR met)" in rows[copies]
    path.write_text(json.dumps(profile(0.01, -0.002, 0.02, copies=1.7)))
    code, rows = check_targets(path)
    assert code == 1 and rows[share].startswith("met     ") and "below 0" in rows[share]
    assert rows[copies].startswith("NOT met ") and "1.70" in rows[copies]
    path.write_text(json.dumps(profile(0.01, 0.005, 0.02)))
    assert check_targets(path)[0] == 0


def test_chart_has_an_axis_with_round_ticks_and_the_values_beside_the_plot(profile_run):
    from dali_cutmix.profiler.report import _ticks, render_chart

    assert _ticks(1673) == [0, 500, 1000, 1500, 2000]
    assert _ticks(10_797)[-1] >= 10_797 and len(_ticks(10_797)) <= 7
    assert _ticks(0.4)[-1] >= 0.4 and _ticks(0.4)[0] == 0
    image = np.asarray(render_chart(profile_run[3]).convert("L"))
    assert image.shape[1] == 1000
    # a dark horizontal axis line spans the plot area below the bars
    dark_rows = [y for y in range(image.shape[0]) if (image[y, 250:834] < 128).mean() > 0.95]
    assert dark_rows, "no x axis drawn"


def test_generated_jpegs_are_imagenet_like(tmp_path):
    root = make_profile_dataset(tmp_path / "d", images=4, classes=2)
    files = sorted(root.rglob("*.jpg"))
    assert len(files) == 4 and len({f.parent.name for f in files}) == 2
    mean_kb = np.mean([f.stat().st_size for f in files]) / 1000
    assert 70 <= mean_kb <= 140, mean_kb  # "~100 KB JPEGs", like ImageNet's ~110 KB
    assert dataset_summary(root)["mean_width"] == 500
    assert make_profile_dataset(root, images=99) == root and len(list(root.rglob("*.jpg"))) == 4  # reused


@pytest.mark.parametrize("decode", ["roi", "full"])
def test_full_variant_is_the_builders_pipeline(tiny_data, device, decode):
    """The profiler's full variant (synchronous) yields exactly the builder's batches (asynchronous, prefetching),
    with the settings' decode."""
    from dali_cutmix import build_cutmix_pipeline

    settings = ProfileSettings(data=str(tiny_data), device=device, batch_size=4, threads=1, crop=32, seed=3,
                               decode=decode)
    ours = build_stage_pipeline("full", settings, num_classes=2)
    builder = build_cutmix_pipeline(tiny_data, batch_size=4, crop=32, device=device, device_id=device_id(device),
                                    num_threads=1, seed=3, decode=decode)
    builder.build()
    for _ in range(2):
        for a, b in zip(ours.run(), builder.run()):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.gpu
def test_a_gpu_profile_times_every_variant_on_the_gpu(tiny_data, gpu_only, tmp_path):
    """The GPU run's profile, small: every variant measured on the GPU (the stages also with prefetching, the GPU
    default), the stage alone against a copy of its batch on the GPU, and the training step."""
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, "--device", "gpu",
                                    "--model", "resnet18", "--steps", "1", "--json", str(tmp_path / "p.json"),
                                    "--plot", str(tmp_path / "p.png")])
    assert code == 0, stderr
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["settings"]["device"] == "gpu" and result["machine"]["gpu"]
    assert set(result["variants"]) == MEASURED
    for key in ASYNC_TWINS:
        assert result["variants"][key]["images_per_s_async"]["median"] > 0
    stage = result["stage"]
    assert stage["batch"]["device"] == "gpu" and stage["copy_ms_per_batch"]["median"] > 0
    assert all(len(entry["copies"]["samples"]) == 2 for entry in stage["methods"].values())
    assert result["training"]["images_per_s"] > 0


def test_the_profile_decodes_as_asked_and_says_so(tiny_data, tmp_path, device):
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, "--device", device,
                                    "--repeats", "1",
                                    "--decode", "full", "--json", str(tmp_path / "p.json"),
                                    "--plot", str(tmp_path / "p.png")])
    assert code == 0, stderr
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["settings"]["decode"] == "full" and "--decode full" in result["command"]
    code, _, stderr = run_cli(["profile", "--data", str(tiny_data), "--decode", "crop"])
    assert code == 2 and "--decode" in stderr and "'crop'" in stderr
    with pytest.raises(UserError, match="decode must be one of roi, full, got 'crop'"):
        ProfileSettings(data=str(tiny_data), decode="crop").check()


def test_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"], s["n"]) == (3.0, 2.0, 4.0, 1.0, 100.0, 5)
    samples = dict(crop=[100.0], cutmix=[80.0], full=[50.0], loader=[60.0], reference=[20.0],
                   cutmix_stage=[2.0])
    # crop 10 ms/image, cutmix 12.5 ms/image: the stage adds 2.5 ms of the full pipeline's 20 ms
    assert cutmix_shares(samples) == [pytest.approx(0.125)]
    assert speedups(samples) == [3.0] and speedups(samples, "full") == [pytest.approx(1.2)]
    # 2 ms per batch of 10 over the full pipeline's 200 ms per batch
    assert isolated_shares(samples, batch_size=10) == [pytest.approx(0.01)]


def test_every_runner_gives_a_timing_and_figures_follow_from_it():
    # variants: images / seconds; the isolated stage: the seconds it adds, as ms per batch of 10
    timings = dict(full=[Timing(seconds=0.5, images=40)], loader=[Timing(2.0, 40)],
                   **{ISOLATED: [Timing(0.006, 30)]})
    assert figures(timings, batch_size=10) == dict(full=[80.0], loader=[20.0],
                                                   **{ISOLATED: [pytest.approx(2.0)]})


def test_measure_variants_times_every_runner_alike(tiny_data, monkeypatch):
    """measure_variants treats every runner the same: one measure() per round each, in ABBA order."""
    from dali_cutmix.profiler import run

    calls = []

    class FakeRunner:
        def __init__(self, key):
            self.key = key

        def measure(self, batches):
            calls.append((self.key, batches))
            return Timing(1.0, 4 * batches)

        def close(self):
            calls.append((self.key, "closed"))

    settings = ProfileSettings(data=str(tiny_data), batch_size=4, batches=3, repeats=2, async_stages=True)
    keys = runner_keys(settings)
    skipped = {"after_loader_timm": "not here"}
    monkeypatch.setattr(run, "make_runners", lambda settings, n, progress: (
        {k: FakeRunner(k) for k in keys if k not in skipped}, dict(skipped)))
    samples = measure_variants(settings)
    keys = tuple(k for k in keys if k not in skipped)
    assert async_key("full") in keys and "after_loader" in keys and "reference_tensor" in keys
    assert [c for c in calls if c[1] != "closed"] == [(k, 3) for k in keys + keys[::-1]]
    assert sorted(c[0] for c in calls if c[1] == "closed") == sorted(keys)
    assert samples["full"] == [12.0, 12.0] and samples[ISOLATED] == [pytest.approx(1000 / 3)] * 2
    assert samples[async_key("full")] == [12.0, 12.0] and "after_loader_timm" not in samples
    assert "machine_load" in samples and samples["skipped"] == skipped


@pytest.mark.parametrize("args, names", [
    (["--batch-size", "0"], "--batch-size"),
    (["--threads", "0"], "--threads"),
    (["--batches", "-1"], "--batches"),
    (["--repeats", "0"], "--repeats"),
    (["--crop", "2"], "--crop"),
    (["--steps", "0"], "--steps"),
    (["--device", "tpu"], "--device"),
    (["--model", "resnet_nope"], "--model"),
    (["--bogus"], "--bogus"),
])
def test_bad_options_are_refused_with_exit_code_2(args, names, tmp_path):
    code, stdout, stderr = run_cli(["profile", *args, "--json", str(tmp_path / "p.json")])
    assert code == 2
    assert names in stderr and "Traceback" not in stderr
    assert not (tmp_path / "p.json").exists()


def test_bad_data_paths_are_refused(tiny_data, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for data, words in ((tmp_path / "missing", "does not exist"), (tmp_path / "empty", "holds no images"),
                        (tmp_path / "file.txt", "class-per-folder directory")):
        code, _, stderr = run_cli(["profile", "--data", str(data), "--device", "cpu"])
        assert code == 2, stderr
        assert stderr.startswith("error: --data") and words in stderr and stderr.count("\n") == 1
    code, _, stderr = run_cli(["profile", "--data", str(tiny_data), "--images", "5", "--device", "cpu"])
    assert code == 2 and "--images" in stderr and "--data" in stderr


def test_bad_output_paths_are_refused(tiny_data, tmp_path):
    code, _, stderr = run_cli(["profile", "--data", str(tiny_data), "--json", str(tmp_path)])
    assert code == 2 and stderr.startswith("error: --json") and "directory" in stderr
    code, _, stderr = run_cli(["profile", "--data", str(tiny_data), "--plot", str(tmp_path)])
    assert code == 2 and stderr.startswith("error: --plot")
    same = str(tmp_path / "out")
    code, _, stderr = run_cli(["profile", "--data", str(tiny_data), "--json", same, "--plot", same])
    assert code == 2 and "--json and --plot" in stderr


def test_gpu_is_refused_without_cuda(tiny_data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, stderr = run_cli(["profile", "--data", str(tiny_data), "--device", "gpu"])
    assert code == 2 and stderr.startswith("error: --device gpu") and "CUDA" in stderr


@pytest.mark.one_device("the profiler's builder refuses a stage it cannot time before any pipeline exists")
def test_library_checks_its_settings(tiny_data):
    with pytest.raises(UserError, match="batch_size"):
        ProfileSettings(data=str(tiny_data), batch_size=0).check()
    with pytest.raises(UserError, match="device"):
        ProfileSettings(data=str(tiny_data), device="tpu").check()
    with pytest.raises(UserError, match="mix"):
        ProfileSettings(data=str(tiny_data), mix=dict(cutmix_alpha=2.0)).check()
    with pytest.raises(UserError, match="stage"):
        build_stage_pipeline("resize", ProfileSettings(data=str(tiny_data)), num_classes=2)
    with pytest.raises(UserError, match="decode"):
        build_stage_pipeline("decode", ProfileSettings(data=str(tiny_data)), num_classes=2, mixing=False)
    with pytest.raises(UserError, match="async_stages"):
        ProfileSettings(data=str(tiny_data), async_stages=1).check()
    with pytest.raises(UserError, match="images"):
        make_profile_dataset(tiny_data.parent / "never", images=0)


def test_mixing_options_reach_the_stage_and_the_json(tiny_data, tmp_path, device):
    json_path = tmp_path / "mix.json"
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, "--device", device,
                                    "--repeats", "1", "--mixup-alpha", "0.8",
                                    "--cutmix-alpha", "1.0", "--switch-prob", "0.3", "--mode", "elem",
                                    "--label-smoothing", "0.1", "--no-correct-lam", "--cutmix-minmax", "0.2,0.8",
                                    "--json", str(json_path), "--plot", str(tmp_path / "mix.png")])
    assert code == 0, stderr
    result = json.loads(json_path.read_text())
    assert result["settings"]["mix"] == dict(cutmix_alpha=1.0, mixup_alpha=0.8, cutmix_minmax=[0.2, 0.8], prob=1.0,
                                             switch_prob=0.3, mode="elem", correct_lam=False,
                                             label_smoothing=0.1, self_pairs=True)
    for flag in ("--mixup-alpha 0.8", "--switch-prob 0.3", "--mode elem", "--label-smoothing 0.1",
                 "--no-correct-lam", "--cutmix-minmax 0.2,0.8"):
        assert flag in result["command"]
    assert "--cutmix-alpha" not in result["command"] and "--prob" not in result["command"]  # the defaults
    pipe = build_stage_pipeline("cutmix", ProfileSettings(
        data=str(tiny_data), device=device, batch_size=8, threads=1, crop=32,
        mix=MixOptions(mixup_alpha=0.8, switch_prob=0.0, mode="elem")), num_classes=2)
    targets = to_numpy(pipe.run()[1])
    assert ((targets > 0) & (targets < 1)).any(), "MixUp (switch_prob 0) mixes labels"


@pytest.mark.parametrize("args, message", [
    (["--switch-prob", "1.5"], "--switch-prob must be in [0, 1]"),
    (["--cutmix-alpha", "0"], "nothing to mix: --cutmix-alpha is 0"),
    (["--mixup-alpha", "-1"], "--mixup-alpha must be >= 0"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--cutmix-minmax", "0.9,0.1"], "--cutmix-minmax must satisfy"),
    (["--mode", "pixel"], "--mode"),
    (["--mix-mode", "elem"], "--mix-mode"),  # the old name is gone
])
def test_bad_mixing_options_exit_2_naming_the_flag(tiny_data, tmp_path, args, message):
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, *args,
                                    "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png")])
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "p.json").exists()
    if not args[0].endswith("mode"):  # out of range (ours), not refused by click
        assert stderr.startswith("error: ") and stderr.count("\n") == 1


def test_model_takes_any_torchvision_classifier_and_refuses_others_early(tiny_data, tmp_path):
    for args, words in ((["--model", "resnet_nope"], "--model 'resnet_nope' is not a torchvision"),
                        (["--model", "vit_b_16", "--crop", "40"], "--model vit_b_16 takes images")):
        code, _, stderr = run_cli(["profile", "--data", str(tiny_data), *args, "--json", str(tmp_path / "p.json")])
        assert code == 2 and stderr.startswith("error: ") and words in stderr and stderr.count("\n") == 1
    with pytest.raises(UserError, match="not a torchvision classification model"):
        from dali_cutmix.profiler.run import run_profile

        run_profile(ProfileSettings(data=str(tiny_data)), model="resnet_nope")


def _check_soft_batch(images, targets, batch_size, crop, num_classes):
    """A training batch: float32 images [N, 3, crop, crop]; float soft targets [N, num_classes] in [0, 1],
    each row summing to 1."""
    import torch

    assert tuple(images.shape) == (batch_size, 3, crop, crop) and images.dtype == torch.float32
    assert tuple(targets.shape) == (batch_size, num_classes) and targets.dtype.is_floating_point
    assert bool(((targets >= 0) & (targets <= 1)).all())
    np.testing.assert_allclose(host(targets.sum(1)), 1.0, atol=1e-5)


def test_after_loader_mixes_the_unmixed_loaders_batches_with_v2_cutmix(tiny_data, device):
    import torch
    from torchvision.transforms import v2

    settings = ProfileSettings(data=str(tiny_data), device=device, batch_size=4, threads=1, crop=32, seed=1)
    runner = AfterLoaderRunner(settings, 2, torchvision_mixer(settings.mix, 2))
    try:
        images, one_hot, class_ids = runner.next_batch()  # the pipeline without the stage, class ids last
        assert images.device.type == ("cuda" if device == "gpu" else "cpu")
        assert set(np.unique(host(one_hot))) <= {0.0, 1.0}, "no stage: one-hot labels"
        np.testing.assert_array_equal(host(one_hot.argmax(1)), host(class_ids.reshape(-1)))
        mixed = 0
        for _ in range(4):
            images, targets = runner.batch()
            _check_soft_batch(images, targets, 4, 32, 2)
            mixed += int(((targets > 0) & (targets < 1)).any())
        assert mixed, "v2.CutMix mixes labels"
        timing = runner.measure(2)
        assert timing.images == 8 and timing.seconds > 0
    finally:
        runner.close()
    with_mixup = torchvision_mixer(MixOptions(mixup_alpha=0.8, switch_prob=0.3), 5)
    assert isinstance(with_mixup, v2.RandomChoice) and with_mixup.p == pytest.approx([0.3, 0.7])
    assert isinstance(torchvision_mixer(MixOptions(cutmix_alpha=0.0, mixup_alpha=0.2), 5), v2.MixUp)
    images, targets = with_mixup(torch.rand(6, 3, 8, 8), torch.arange(6) % 5)
    _check_soft_batch(images, targets, 6, 8, 5)
    with pytest.raises(VariantUnavailable, match="--cutmix-minmax"):
        torchvision_mixer(MixOptions(cutmix_alpha=0.0, cutmix_minmax=(0.2, 0.8)), 5)


class FakeMixup:
    """A stand-in for ``timm.data.Mixup``: records its options and calls; CutMix-like on the whole batch."""

    made = []

    def __init__(self, **options):
        self.options, self.calls = options, []
        FakeMixup.made.append(self)

    def __call__(self, x, target):
        import torch

        self.calls.append((tuple(x.shape), target.dtype, tuple(target.shape), x.device))
        lam = 0.75
        x[:, :, : x.shape[2] // 2] = x.flip(0)[:, :, : x.shape[2] // 2]
        one_hot = torch.nn.functional.one_hot(target, self.options["num_classes"]).float()
        return x, lam * one_hot + (1 - lam) * one_hot.flip(0)


def test_after_loader_timm_gives_timm_every_mixing_option(tiny_data, device):
    import torch

    options = MixOptions(cutmix_alpha=0.7, mixup_alpha=0.3, cutmix_minmax=(0.2, 0.9), prob=0.9, switch_prob=0.4,
                         mode="elem", correct_lam=False, label_smoothing=0.1)
    settings = ProfileSettings(data=str(tiny_data), device=device, batch_size=4, threads=1, crop=32, mix=options)
    FakeMixup.made.clear()
    runner = AfterLoaderRunner(settings, 2, timm_mixer(settings.mix, 2, settings.batch_size, mixup_class=FakeMixup))
    try:
        images, targets = runner.batch()
        _check_soft_batch(images, targets, 4, 32, 2)
        assert runner.measure(2).images == 8
    finally:
        runner.close()
    (fake,) = FakeMixup.made
    assert fake.options == dict(mixup_alpha=0.3, cutmix_alpha=0.7, cutmix_minmax=[0.2, 0.9], prob=0.9,
                                switch_prob=0.4, mode="elem", correct_lam=False, label_smoothing=0.1,
                                num_classes=2)
    # every batch trained on reaches it as timm expects it: the warm-up, ours, the 2 timed ones (the untimed
    # look-ahead batch is not mixed)
    assert len(fake.calls) == 1 + 1 + 2
    on = torch.device("cuda", 0) if device == "gpu" else torch.device("cpu")
    assert set(fake.calls) == {((4, 3, 32, 32), torch.int64, (4,), on)}
    with pytest.raises(VariantUnavailable, match="even batch size"):
        timm_mixer(options, 2, 5, mixup_class=FakeMixup)


@pytest.mark.skipif(HAS_TIMM, reason="timm is installed here")
def test_timm_mixer_says_timm_is_missing():
    with pytest.raises(VariantUnavailable, match=r"timm is not installed.*dali-cutmix\[bench\]"):
        timm_mixer(MixOptions(), 10, 4)


@pytest.mark.parametrize("backend", ["pil", "tensor"])
def test_reference_loader_backends_give_cutmixed_batches(tiny_data, backend):
    from PIL import Image
    from torchvision.transforms import v2

    from dali_cutmix.pipelines.reference import build_reference_loader, reference_transform

    transform = reference_transform(32, backend)
    names = [type(t).__name__ for t in transform.transforms]
    to_tensor, crop = names.index("PILToTensor"), names.index("RandomResizedCrop")
    assert (to_tensor < crop) == (backend == "tensor")
    assert names[-2:] == ["ToDtype", "Normalize"] and isinstance(transform, v2.Compose)
    sample = transform(Image.new("RGB", (56, 40), (200, 100, 50)))
    assert tuple(sample.shape) == (3, 32, 32)
    loader = build_reference_loader(tiny_data, batch_size=4, num_workers=1, crop=32, backend=backend,
                                    persistent_workers=False)
    images, targets = next(iter(loader))
    _check_soft_batch(images, targets, 4, 32, 2)


def test_reference_refuses_an_unknown_backend(tiny_data):
    from dali_cutmix.pipelines.reference import build_reference_loader, reference_transform

    with pytest.raises(UserError, match="backend"):
        reference_transform(32, "gpu")
    with pytest.raises(UserError, match="backend"):
        build_reference_loader(tiny_data, batch_size=4, num_workers=1, backend="tv_tensor")


def test_two_rounds_warn_that_their_iqr_means_nothing(profile_run):
    from dali_cutmix.profiler.run import round_warnings

    warning = ("2 rounds: the interquartile ranges (IQR) mean nothing with fewer than 4 rounds; use --repeats 5 "
               "or more for figures to quote")
    assert profile_run[3]["warnings"] == [warning] and f"warning: {warning}" in profile_run[1]
    assert round_warnings(ProfileSettings(data="d", repeats=4)) == []


def test_the_stage_alone_per_method_against_one_copy_of_its_batch(profile_run):
    stage = profile_run[3]["stage"]
    assert stage["batch"] == dict(shape=[4, 32, 32, 3], dtype="uint8", bytes=4 * 32 * 32 * 3, device="cpu")
    copy = stage["copy_ms_per_batch"]
    assert copy["median"] > 0 and len(copy["samples"]) == 2
    assert list(stage["methods"]) == ["cutmix", "mixup", "switch"]
    params = ["DaliCutmixParams", "Shape", "Uniform"]
    gpu_pixels = dict(cutmix=["MultiPaste"], mixup=["Cat", "CoordTransform", "PermuteBatch"],
                      switch=["Cat", "CoordTransform", "MultiPaste", "PermuteBatch"])
    for method, entry in stage["methods"].items():
        options = MixOptions(**entry["options"])
        assert options.cutmix_on == (method != "mixup") and options.mixup_on == (method != "cutmix")
        assert entry["operators"] == dict(cpu=sorted(params + ["DaliCutmixApply"]),
                                          gpu=sorted(params + gpu_pixels[method]))
        assert entry["operator_count"] == dict(cpu=4, gpu=3 + len(gpu_pixels[method]))
        assert len(entry["ms_per_batch"]["samples"]) == len(entry["copies"]["samples"]) == 2
        line = [line for line in profile_run[1].splitlines() if line.startswith(f"  stage alone, {method}:")]
        assert len(line) == 1 and f"{entry['copies']['median']:.2f} copies" in line[0]
        assert f"4 operators on the CPU, {3 + len(gpu_pixels[method])} on the GPU" in line[0]
    assert "one copy of the 4x32x32x3 uint8 batch" in profile_run[1]


def test_the_stage_in_copies_is_paired_per_round():
    from dali_cutmix.profiler.stats import in_copies

    samples = dict(stage_cutmix=[3.0, 1.0, 2.0], stage_cutmix_copy=[1.5, 2.0, 1.0])
    assert in_copies(samples, "stage_cutmix", "stage_cutmix_copy") == [2.0, 0.5, 2.0]
    timings = dict(stage_cutmix=[Timing(0.006, 30, copy_seconds=0.003)], full=[Timing(1.0, 10)])
    assert figures(timings, batch_size=10) == dict(full=[10.0], stage_cutmix=[pytest.approx(2.0)],
                                                   stage_cutmix_copy=[pytest.approx(1.0)])


def test_interleaved_times_take_the_steps_in_turn_batch_by_batch():
    from dali_cutmix.profiler.timing import interleaved_times

    calls = []
    times = interleaved_times(dict(a=lambda: calls.append("a"), b=lambda: calls.append("b")), 3)
    assert calls == ["a", "b"] * 3
    assert list(times) == ["a", "a_cpu", "b", "b_cpu"] and all(len(v) == 3 for v in times.values())
    assert all(t >= 0 for v in times.values() for t in v)


def test_the_quiet_figure_is_the_10th_percentile():
    from dali_cutmix.profiler.stats import quiet_figure

    assert quiet_figure([5.0, 1.0, 3.0]) == 1.0
    assert quiet_figure([float(x) for x in range(100, 0, -1)]) == 11.0  # the 11th smallest of 100
    assert quiet_figure([float(x) for x in range(1, 21)]) == 3.0


def test_the_stage_alone_costs_its_quiet_batch_less_the_fed_batch_alone(monkeypatch):
    from dali_cutmix.profiler import runners

    runner = runners.StageAloneRunner.__new__(runners.StageAloneRunner)
    runner.device, runner.batch_size, runner.factor, runner.steps = "cpu", 8, 3, {}
    seen = []

    def fake_times(steps, batches):
        seen.append(batches)
        ten = [float(x) for x in range(10, 20)]
        return dict(source=[x / 1000 for x in ten], stage=[(x + 5) / 1000 for x in ten],
                    copy=[(x - 8) / 1000 for x in ten])

    monkeypatch.setattr(runners, "interleaved_times", fake_times)
    timing = runner.measure(4)
    assert seen == [12] and timing.images == 12 * 8
    # quiet stage 16 ms - quiet source 11 ms = 5 ms per batch; quiet copy 3 ms per batch
    assert timing.seconds == pytest.approx(0.005 * 12) and timing.copy_seconds == pytest.approx(0.003 * 12)
    assert figures({ISOLATED: [timing]}, batch_size=8) == {ISOLATED: [pytest.approx(5.0)],
                                                            f"{ISOLATED}_copy": [pytest.approx(3.0)]}


def test_the_stage_alone_pipelines_differ_by_the_stage_only(tiny_data, device):
    """The baseline hands the fed batch's shape and class ids out; the stage's pipeline the same shape and soft
    labels of one CutMix draw over the batch's own classes."""
    from dali_cutmix.profiler.graphs import build_stage_alone_pipeline, fixed_batch

    settings = ProfileSettings(data=str(tiny_data), device=device, batch_size=4, crop=32, threads=1, seed=5)
    batch = fixed_batch(settings, 3)
    labels = batch[1]
    source = build_stage_alone_pipeline(settings, 3, batch, with_mixing=False)
    stage = build_stage_alone_pipeline(settings, 3, batch, with_mixing=True)
    for _ in range(2):
        (shape, ids), (mixed_shape, targets) = source.run(), stage.run()
        assert np.array(shape.as_tensor()).tolist() == [[32, 32, 3]] * 4 == np.array(mixed_shape.as_tensor()).tolist()
        np.testing.assert_array_equal(np.array(ids.as_tensor()), labels)
        soft = np.array(targets.as_tensor())
        assert soft.shape == (4, 3) and soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
        # one CutMix draw per batch (the default options): every row is lam on its own class plus 1 - lam on
        # its partner's, a class of the batch
        own = soft[np.arange(4), labels[:, 0]]
        lam = own.min()
        for row, label in zip(soft, labels[:, 0]):
            rest = row.copy()
            rest[label] -= lam
            assert np.all(rest >= -1e-6) and np.count_nonzero(rest > 1e-6) <= 1
            assert set(np.flatnonzero(rest > 1e-6)) <= set(labels[:, 0])


class FakeTimmData:
    """A tiny stand-in for ``timm.data`` (timm is optional): the three names the timm loader variant uses, with
    their call signatures, recording how they were called. Only the wiring is checked with it, not timm."""

    def __init__(self):
        self.calls = {}
        fake = self

        class ImageDataset:
            def __init__(self, root):
                fake.calls["ImageDataset"] = root
                self.transform = None

            def __len__(self):
                return 5

            def __getitem__(self, index):
                return self.transform, index

        class FastCollateMixup:
            def __init__(self, **kwargs):
                fake.calls["FastCollateMixup"] = kwargs

        self.ImageDataset, self.FastCollateMixup = ImageDataset, FastCollateMixup

    def create_loader(self, dataset, **kwargs):
        self.calls["create_loader"] = dict(kwargs, dataset=dataset)
        dataset.transform = "timm's train transform"
        return FakeTimmLoader(dataset, kwargs["input_size"], kwargs["batch_size"])


class FakeTimmLoader:
    """Each epoch: as many batches of zeros as the data set's length holds (its length when the epoch starts, as
    timm's training sampler reads it); counts the epochs' batches in ``epochs``. ``loader`` stands for the
    DataLoader timm's PrefetchLoader wraps (its workers' start method)."""

    def __init__(self, dataset, size, batch):
        import types

        self.dataset, self.size, self.batch, self.epochs = dataset, size, batch, []
        self.loader = types.SimpleNamespace(multiprocessing_context=None)

    def __iter__(self):
        import torch

        self.epochs.append(len(self.dataset) // self.batch)
        return iter([(torch.zeros(self.batch, *self.size), torch.zeros(self.batch, 3))] * self.epochs[-1])


def test_timm_loader_variant_is_wired_as_timm_users_call_it(tiny_data):
    from dali_cutmix.profiler.timm_loader import TimmLoaderRunner

    mix = MixOptions(cutmix_alpha=1.0, mixup_alpha=0.8, label_smoothing=0.1)
    settings = ProfileSettings(data=str(tiny_data), batch_size=4, threads=2, batches=3, crop=32, mix=mix)
    fake = FakeTimmData()
    runner = TimmLoaderRunner(settings, num_classes=3, mode="elem", timm_data=fake)
    timing = runner.measure(3)
    assert timing.images == 3 * 4 and timing.seconds > 0
    assert runner.measure(5).images == 5 * 4
    assert runner.loader.epochs == [3, 3, 5]  # the warm-up epoch, then each run's: the batches asked for
    assert runner.loader.loader.multiprocessing_context.get_start_method() == "forkserver"  # not forked from DALI's
    assert fake.calls["ImageDataset"] == str(tiny_data)
    assert fake.calls["FastCollateMixup"] == dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0,
                                                  switch_prob=0.5, mode="elem", correct_lam=True,
                                                  label_smoothing=0.1, num_classes=3)
    loader = fake.calls["create_loader"]
    assert isinstance(loader.pop("collate_fn"), fake.FastCollateMixup)
    dataset = loader.pop("dataset")
    assert len(dataset) == 5 * 4 and dataset[7] == ("timm's train transform", 2)
    assert loader.pop("device").type == "cpu"
    # every augmentation default of timm's that adds work ours does not do, off: ColorJitter(0.4) above all
    assert loader == dict(input_size=(3, 32, 32), batch_size=4, is_training=True, use_prefetcher=True,
                          num_workers=2, pin_memory=False, persistent_workers=True, color_jitter=None,
                          auto_augment=None, re_prob=0.0, vflip=0.0, hflip=0.5, grayscale_prob=0.0,
                          gaussian_blur_prob=0.0, interpolation="bilinear")
    with pytest.raises(VariantUnavailable, match="even batch size, got 5"):
        TimmLoaderRunner(ProfileSettings(data=str(tiny_data), batch_size=5), 3, "batch", timm_data=fake)


class CountingDataset:
    """``dataset`` with a count, shared by the DataLoader's worker processes (started by the fork server), of the
    samples they load; the rest of the data set's interface (``classes``, ``transform``) is the wrapped one's."""

    def __init__(self, dataset):
        import multiprocessing

        self.dataset, self.loaded = dataset, multiprocessing.get_context("forkserver").Value("i", 0)

    def __getattr__(self, name):
        if "dataset" not in self.__dict__:  # being unpickled in a worker
            raise AttributeError(name)
        return getattr(self.__dict__["dataset"], name)

    def __setattr__(self, name, value):
        if name == "transform":
            self.dataset.transform = value
        else:
            super().__setattr__(name, value)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        with self.loaded.get_lock():
            self.loaded.value += 1
        return self.dataset[index]


@pytest.mark.filterwarnings("ignore:This DataLoader will create 16 worker processes:UserWarning")
def test_the_cpu_peers_do_the_batches_asked_for_whatever_the_worker_count(tiny_data, monkeypatch):
    """16 workers, 3 batches: each run of torchvision's reference and of timm's loader loads 3 batches' samples,
    no more (no rounding up to the workers, no batches made ahead or drained), and times them all."""
    from dali_cutmix.pipelines import reference
    from dali_cutmix.profiler.runners import ReferenceRunner
    from dali_cutmix.profiler.timm_loader import TimmLoaderRunner

    settings = ProfileSettings(data=str(tiny_data), batch_size=2, threads=16, batches=3, crop=16)
    made = []
    monkeypatch.setattr(reference, "reference_dataset",
                        lambda *args, make=reference.reference_dataset: made.append(CountingDataset(make(*args)))
                        or made[-1])
    runner = ReferenceRunner(settings, num_classes=2)
    try:
        loader, counted = runner.loader, made[-1]
        assert loader.num_workers == 16 and loader.dataset is counted
        assert counted.loaded.value == 3 * 2  # the warm-up epoch
        loaded = counted.loaded.value
        for batches in (3, 5):
            timing = runner.measure(batches)
            assert timing.images == batches * 2 and timing.seconds > 0
            assert counted.loaded.value - loaded == batches * 2  # the run's samples, none made ahead or drained
            loaded = counted.loaded.value
    finally:
        runner.close()

    timm_data = None
    if HAS_TIMM:
        import timm.data as timm_data
    fake = FakeTimmData()
    data = timm_data or fake
    counting = type("CountingTimmData", (), dict(
        ImageDataset=staticmethod(lambda root: made.append(CountingDataset(data.ImageDataset(root))) or made[-1]),
        FastCollateMixup=data.FastCollateMixup, create_loader=staticmethod(data.create_loader)))
    runner = TimmLoaderRunner(settings, num_classes=2, mode="batch", timm_data=counting)
    try:
        counted = made[-1]
        for batches in (3, 5):
            assert runner.measure(batches).images == batches * 2
        if timm_data is not None:  # timm's own loader: its workers loaded exactly those samples
            assert counted.loaded.value == (3 + 3 + 5) * 2
            names = [type(t).__name__ for t in counted.transform.transforms]
            assert names == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "MaybePILToTensor"]
        else:
            assert runner.loader.epochs == [3, 3, 5]
    finally:
        runner.close()


def test_each_measured_variant_is_saved_at_once_and_a_run_cut_short_leaves_them(tiny_data, tmp_path, monkeypatch):
    """run_profile hands ``save`` the result so far after every measurement ('complete' false), then the final
    one; with write_json as ``save``, a run that fails mid-round leaves the JSON of what it measured."""
    from dali_cutmix.profiler import run
    from dali_cutmix.profiler.report import write_json

    class FakeRunner:
        def __init__(self, key, fail=False):
            self.key, self.fail = key, fail

        def measure(self, batches):
            if self.fail:
                raise RuntimeError("cut short")
            return Timing(1.0, 4 * batches, copy_seconds=0.5)

        def close(self):
            pass

    settings = ProfileSettings(data=str(tiny_data), batch_size=4, batches=2, repeats=2)
    keys = runner_keys(settings)
    monkeypatch.setattr(run, "make_runners", lambda settings, n, progress: ({k: FakeRunner(k) for k in keys}, {}))
    saved = []
    result = run.run_profile(settings, save=saved.append)
    assert len(saved) == 2 * len(keys) + 1 and saved[-1] is result and result["complete"] is True
    assert all(r["complete"] is False for r in saved[:-1])
    assert list(saved[0]["variants"]) == ["decode"] and saved[0]["cutmix_share"] is None
    assert saved[0]["loader_vs_reference"] is None
    assert [len(saved[i]["variants"]) for i in range(len(VARIANTS))] == list(range(1, len(VARIANTS) + 1))
    assert saved[len(keys) - 1]["cutmix_share"]["median"] > 0  # the first round is whole
    assert result["loader_vs_crop"]["samples"] == [1.0, 1.0]
    assert result["variants"]["loader"]["augment"] == PRESETS["none"].as_dict()

    path = tmp_path / "cut.json"
    fail_at = keys.index("reference")
    monkeypatch.setattr(run, "make_runners", lambda settings, n, progress: (
        {k: FakeRunner(k, fail=i == fail_at) for i, k in enumerate(keys)}, {}))
    with pytest.raises(RuntimeError, match="cut short"):
        run.run_profile(settings, save=lambda r: write_json(r, path))
    left = json.loads(path.read_text())
    assert left["complete"] is False and list(left["variants"]) == list(keys[:fail_at])
    assert [p.name for p in tmp_path.iterdir()] == ["cut.json"]  # written atomically: no temporary file left


def test_peers_that_do_not_divide_among_their_workers_are_warned_about():
    from dali_cutmix.profiler.run import worker_warnings

    assert worker_warnings(ProfileSettings(data="d", batches=8, threads=2)) == []
    (warning,) = worker_warnings(ProfileSettings(data="d", batches=4, threads=16))
    assert warning.startswith("--batches 4 is not a multiple of the 16 workers of the CPU peers")
    assert "keep 25% of the worker time busy" in warning and "understate their steady state by up to 75%" in warning


def official_color_jitter(img, order, alphas):
    """clovaai/CutMix-PyTorch utils.py's Brightness, Contrast, Saturation and Grayscale, transcribed (the deprecated
    ``add_(value, tensor)`` as ``add_(tensor, alpha=value)``), applied in ``order`` with the factors ``alphas``
    (what its ``random.shuffle`` and ``random.uniform`` draw)."""
    def grayscale(img):
        gs = img.clone()
        gs[0].mul_(0.299).add_(gs[1], alpha=0.587).add_(gs[2], alpha=0.114)
        gs[1].copy_(gs[0])
        gs[2].copy_(gs[0])
        return gs

    for name, alpha in zip(order, alphas):
        if name == "brightness":
            gs = img.new().resize_as_(img).zero_()
        elif name == "contrast":
            gs = grayscale(img)
            gs.fill_(gs.mean())
        else:
            gs = grayscale(img)
        img = img.lerp(gs, alpha)
    return img


def official_lighting(img, alpha, eigval, eigvec):
    """clovaai/CutMix-PyTorch utils.py's Lighting.__call__ with its ``normal_`` draw given as ``alpha``."""
    import torch

    eigval, eigvec = torch.Tensor(eigval), torch.Tensor(eigvec)
    rgb = eigvec.type_as(img).clone().mul(alpha.view(1, 3).expand(3, 3)).mul(eigval.view(1, 3).expand(3, 3)) \
        .sum(1).squeeze()
    return img.add(rgb.view(3, 1, 1).expand_as(img))


def test_the_reference_jitter_and_lighting_are_the_official_ones():
    import random

    import torch

    from dali_cutmix.pipelines.reference import (LIGHTING_EIGVAL, LIGHTING_EIGVEC, OfficialColorJitter,
                                                 OfficialLighting)

    # the official train.py's constants
    assert LIGHTING_EIGVAL == (0.2175, 0.0188, 0.0045)
    assert LIGHTING_EIGVEC == ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
    img = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    jitter = OfficialColorJitter(0.4, 0.4, 0.4)
    for seed in range(12):
        factors = jitter.draw(random.Random(seed))
        names, alphas = [n for n, _ in factors], [a for _, a in factors]
        assert sorted(names) == ["brightness", "contrast", "saturation"] and all(-0.4 <= a <= 0.4 for a in alphas)
        # the official draws, in its order: one shuffle, then one uniform per transform as it applies
        rng = random.Random(seed)
        order = ["brightness", "contrast", "saturation"]
        rng.shuffle(order)
        assert names == order and alphas == [rng.uniform(-0.4, 0.4) for _ in order]
        torch.testing.assert_close(jitter.apply(img, factors), official_color_jitter(img, names, alphas),
                                   rtol=0, atol=1e-6)
    # each transform alone, on known values: brightness scales toward black, saturation toward the pixel's gray
    flat = torch.tensor([0.2, 0.6, 1.0]).view(3, 1, 1).expand(3, 2, 2).clone()
    torch.testing.assert_close(jitter.apply(flat, [("brightness", 0.25)]), 0.75 * flat)
    gray = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0
    torch.testing.assert_close(jitter.apply(flat, [("saturation", 0.4)]), flat + 0.4 * (gray - flat))
    torch.testing.assert_close(jitter.apply(flat, [("contrast", -0.4)]), flat - 0.4 * (gray - flat))
    assert OfficialColorJitter(0.4, 0, 0.4).draw(random.Random(1))[0][0] in ("brightness", "saturation")

    lighting = OfficialLighting(0.1)
    torch.manual_seed(3)
    alpha = lighting.draw()
    torch.manual_seed(3)
    assert torch.equal(alpha, torch.Tensor(3).normal_(0, 0.1))  # the official draw
    torch.testing.assert_close(lighting.apply(img, alpha),
                               official_lighting(img, alpha, LIGHTING_EIGVAL, LIGHTING_EIGVEC), rtol=0, atol=0)
    expected = np.array(LIGHTING_EIGVEC) @ (alpha.numpy().astype(np.float64) * np.array(LIGHTING_EIGVAL))
    np.testing.assert_allclose(lighting.offset(alpha).numpy(), expected, atol=1e-7)
    assert OfficialLighting(0.0)(img) is img


def test_the_paper_reference_transform_is_the_official_recipes(tiny_data):
    from PIL import Image

    from dali_cutmix.pipelines.reference import (OfficialColorJitter, OfficialLighting, build_reference_loader,
                                                 reference_transform)

    transform = reference_transform(32, "pil", "paper")
    names = [type(t).__name__ for t in transform.transforms]
    # official train.py: RandomResizedCrop, RandomHorizontalFlip, ToTensor, jittering, lighting, normalize
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "PILToTensor", "ToDtype", "OfficialColorJitter",
                     "OfficialLighting", "Normalize"]
    jitter, lighting = transform.transforms[4], transform.transforms[5]
    assert isinstance(jitter, OfficialColorJitter) and isinstance(lighting, OfficialLighting)
    assert jitter.variances == dict(brightness=0.4, contrast=0.4, saturation=0.4) and lighting.alphastd == 0.1
    assert "OfficialColorJitter" not in [type(t).__name__ for t in reference_transform(32, "pil").transforms]
    assert tuple(transform(Image.new("RGB", (56, 40), (200, 100, 50))).shape) == (3, 32, 32)
    loader = build_reference_loader(tiny_data, batch_size=4, num_workers=1, crop=32, augment="paper",
                                    persistent_workers=False)
    _check_soft_batch(*next(iter(loader)), 4, 32, 2)
    with pytest.raises(UserError, match="the torchvision reference applies the official ColorJitter and Lighting "
                                        "only, not auto_augment 'rand-augment' or random erasing"):
        reference_transform(32, "pil", "deit")
    lighter = reference_transform(32, "pil", dict(lighting=0.2)).transforms
    assert [type(t).__name__ for t in lighter][4] == "OfficialLighting" and lighter[4].alphastd == 0.2


def test_augment_flags_reach_the_pipeline_and_the_json(tiny_data, tmp_path, device):
    json_path = tmp_path / "aug.json"
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, "--device", device,
                                    "--repeats", "1", "--augment", "paper", "--lighting", "0.2",
                                    "--json", str(json_path), "--plot", str(tmp_path / "aug.png")])
    assert code == 0, stderr
    result = json.loads(json_path.read_text())
    assert result["settings"]["augment"] == dict(PRESETS["paper"].as_dict(), lighting=0.2)
    assert "--augment paper --lighting 0.2" in result["command"]
    # every peer runs the same augmentation, or is skipped, saying why
    variants = result["variants"]
    assert "Lighting(alphastd 0.2, ImageNet PCA) (official CutMix utils)" in variants["loader"]["augmentation"]
    for peer in ("reference", "reference_tensor", "after_loader"):
        assert variants[peer]["augmentation"] == variants["loader"]["augmentation"], peer
        assert variants[peer]["augment"] == result["settings"]["augment"], peer
    for peer in ("timm_loader", "timm_loader_elem"):
        assert peer not in variants and peer in result["skipped"], peer
        if HAS_TIMM:
            assert "no timm equivalent" in result["skipped"][peer], result["skipped"][peer]
    assert variants["loader_paper"]["augment"] == PRESETS["paper"].as_dict()  # the pair keeps the paper's


def _spin(seconds: float) -> None:
    """Keep one core busy for ``seconds`` of CPU time."""
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_cpu_of_workers_the_fork_server_starts_counts_as_the_profilers_own():
    """DataLoader workers started by the fork server are its children, not the profiler's: their CPU time still
    counts as the profiler's own (``own_cpu_s``), not as other processes' load."""
    import multiprocessing

    from dali_cutmix.profiler.machine import CpuLoadMeter

    meter = CpuLoadMeter()
    worker = multiprocessing.get_context("forkserver").Process(target=_spin, args=(1.5,))
    worker.start()
    worker.join()
    assert worker.exitcode == 0
    load = meter.stop()
    assert load["own_cpu_s"] >= 1.4, load
