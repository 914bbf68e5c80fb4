"""``dali-cutmix profile``: the report's structure (table, JSON, PNG) and clear refusals; no timing assertions."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from dali_cutmix.cli import main
from dali_cutmix.profiler import measure as profiler
from dali_cutmix.pipelines.profile_data import make_profile_dataset
from dali_cutmix.profiler.measure import VARIANTS, VARIANT_KEYS

TINY_RUN = ["--batch-size", "4", "--threads", "1", "--batches", "2", "--repeats", "2", "--crop", "32"]


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
    """One tiny profile run with ``--model resnet50``: (exit code, stdout, stderr, JSON dict, PNG path)."""
    out = tmp_path_factory.mktemp("profile_out")
    json_path, png_path = out / "p.json", out / "p.png"
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, "--model", "resnet50",
                                    "--steps", "1", "--torch-threads", "1", "--json", str(json_path),
                                    "--plot", str(png_path)])
    assert code == 0, stderr
    return code, stdout, stderr, json.loads(json_path.read_text()), png_path


def test_json_holds_every_variant_with_its_figures(profile_run):
    result = profile_run[3]
    assert result["schema"] == profiler.SCHEMA
    assert set(result["variants"]) == set(VARIANT_KEYS) == {
        "decode", "crop", "cutmix", "full", "loader", "reference"}
    for key in VARIANT_KEYS:
        variant = result["variants"][key]
        assert set(variant["images_per_s"]) >= {"median", "q1", "q3", "min", "max", "n", "iqr_pct"}
        assert variant["images_per_s"]["median"] > 0
        assert len(variant["samples"]) == variant["images_per_s"]["n"] == 2
        assert variant["ms_per_batch"] > 0 and variant["label"] and variant["description"]
    share = result["cutmix_share"]
    assert {"median", "q1", "q3", "samples", "stage_ms_per_batch", "by_stage_difference"} <= set(share)
    assert len(share["by_stage_difference"]["samples"]) == 2
    assert {"median", "q1", "q3", "samples"} <= set(result["loader_vs_reference"])


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


def test_json_holds_the_training_step_and_the_targets(profile_run):
    result = profile_run[3]
    training = result["training"]
    assert training["model"] == "resnet50" and training["steps"] == 1 and training["torch_threads"] == 1
    assert training["images_per_s"] > 0 and 0 <= training["data_wait_share"] <= 1
    assert {"step_ms", "data_wait_ms", "compute_ms", "compute_only_images_per_s"} <= set(training)
    names = [t["name"] for t in result["targets"]]
    assert len(names) == 2 and any("2x" in n for n in names) and any("3%" in n for n in names)
    for target in result["targets"]:
        assert {"threshold", "measured", "met", "met_whole_iqr", "conditions_match"} <= set(target)
        assert target["conditions_match"] is False  # batch 4, 1 thread, crop 32


def test_table_is_printed_and_progress_goes_to_stderr(profile_run):
    _, stdout, stderr, result, _ = profile_run
    for variant in VARIANTS:
        assert variant.label in stdout
    assert "images/s" in stdout and "CutMix share of the full pipeline" in stdout
    assert "loader vs torchvision reference" in stdout and "training resnet50" in stdout
    assert "target:" in stdout and "wrote " in stdout
    assert "round 1/2" in stderr and "round 2/2" in stderr and "resnet50 step 1/1" in stderr


def test_png_chart_is_a_valid_image(profile_run):
    from PIL import Image

    png_path = profile_run[4]
    with Image.open(png_path) as image:
        image.verify()
    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 300
        assert len(np.unique(np.asarray(image.convert("L")))) > 2  # bars and text were drawn


def test_profile_runs_on_a_generated_data_set(tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_CUTMIX_CACHE", str(tmp_path / "cache"))
    code, stdout, stderr = run_cli(["profile", "--images", "6", "--batch-size", "2", "--threads", "1",
                                    "--batches", "1", "--repeats", "1", "--crop", "16",
                                    "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png")])
    assert code == 0, stderr
    result = json.loads((tmp_path / "p.json").read_text())
    assert set(result["variants"]) == set(VARIANT_KEYS)
    assert result["dataset"]["images"] == 6 and result["dataset"]["mean_width"] == 500
    assert "--images 6" in result["command"]
    assert (tmp_path / "p.png").stat().st_size > 0


def test_generated_jpegs_are_imagenet_like(tmp_path):
    root = make_profile_dataset(tmp_path / "d", images=4, classes=2)
    files = sorted(root.rglob("*.jpg"))
    assert len(files) == 4 and len({f.parent.name for f in files}) == 2
    mean_kb = np.mean([f.stat().st_size for f in files]) / 1000
    assert 70 <= mean_kb <= 140, mean_kb  # "~100 KB JPEGs", like ImageNet's ~110 KB
    assert profiler.dataset_summary(root)["mean_width"] == 500
    assert make_profile_dataset(root, images=99) == root and len(list(root.rglob("*.jpg"))) == 4  # reused


def test_full_variant_is_the_builders_pipeline(tiny_data):
    """The profiler rebuilds the training graph to cut it after each stage; its full variant must be the builder's."""
    from dali_cutmix import build_cutmix_pipeline

    settings = profiler.ProfileSettings(data=str(tiny_data), batch_size=4, threads=1, crop=32, seed=3)
    ours = profiler.build_stage_pipeline("full", settings, num_classes=2)
    builder = build_cutmix_pipeline(tiny_data, batch_size=4, crop=32, device="cpu", num_threads=1, seed=3)
    builder.build()
    for _ in range(2):
        for a, b in zip(ours.run(), builder.run()):
            np.testing.assert_array_equal(np.stack([np.array(t) for t in a]), np.stack([np.array(t) for t in b]))


def test_statistics():
    s = profiler.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"], s["n"]) == (3.0, 2.0, 4.0, 1.0, 100.0, 5)
    samples = dict(crop=[100.0], cutmix=[80.0], full=[50.0], loader=[60.0], reference=[20.0],
                   cutmix_stage=[2.0])
    # crop 10 ms/image, cutmix 12.5 ms/image: the stage adds 2.5 ms of the full pipeline's 20 ms
    assert profiler.cutmix_shares(samples) == [pytest.approx(0.125)]
    assert profiler.speedups(samples) == [3.0]
    # 2 ms per batch of 10 over the full pipeline's 200 ms per batch
    assert profiler.isolated_shares(samples, batch_size=10) == [pytest.approx(0.01)]


@pytest.mark.parametrize("args, names", [
    (["--batch-size", "0"], "--batch-size"),
    (["--threads", "0"], "--threads"),
    (["--batches", "-1"], "--batches"),
    (["--repeats", "0"], "--repeats"),
    (["--crop", "2"], "--crop"),
    (["--steps", "0"], "--steps"),
    (["--device", "tpu"], "--device"),
    (["--model", "vgg11"], "--model"),
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


def test_library_checks_its_settings(tiny_data):
    with pytest.raises(ValueError, match="batch_size"):
        profiler.ProfileSettings(data=str(tiny_data), batch_size=0).check()
    with pytest.raises(ValueError, match="device"):
        profiler.ProfileSettings(data=str(tiny_data), device="tpu").check()
    with pytest.raises(ValueError, match="stage"):
        profiler.build_stage_pipeline("resize", profiler.ProfileSettings(data=str(tiny_data)), num_classes=2)
    with pytest.raises(ValueError, match="images"):
        make_profile_dataset(tiny_data.parent / "never", images=0)


def test_mixing_options_reach_the_stage_and_the_json(tiny_data, tmp_path):
    json_path = tmp_path / "mix.json"
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, "--mixup-alpha", "0.8",
                                    "--cutmix-alpha", "1.0", "--switch-prob", "0.3", "--mix-mode", "elem",
                                    "--json", str(json_path), "--plot", str(tmp_path / "mix.png")])
    assert code == 0, stderr
    settings = json.loads(json_path.read_text())["settings"]
    assert (settings["mixup_alpha"], settings["switch_prob"], settings["mode"]) == (0.8, 0.3, "elem")
    pipe = profiler.build_stage_pipeline("cutmix", profiler.ProfileSettings(
        data=str(tiny_data), batch_size=8, threads=1, crop=32, mixup_alpha=0.8, switch_prob=0.0, mode="elem"),
        num_classes=2)
    targets = np.array(pipe.run()[1].as_tensor())
    assert ((targets > 0) & (targets < 1)).any(), "MixUp (switch_prob 0) mixes labels"


@pytest.mark.parametrize("args, message", [
    (["--switch-prob", "1.5"], "switch_prob must be in [0, 1]"),
    (["--cutmix-alpha", "0"], "nothing to mix"),
    (["--mixup-alpha", "-1"], "mixup_alpha must be >= 0"),
])
def test_bad_mixing_options_exit_2(tiny_data, tmp_path, args, message):
    code, stdout, stderr = run_cli(["profile", "--data", str(tiny_data), *TINY_RUN, *args,
                                    "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png")])
    assert code == 2 and message in stderr and "Traceback" not in stderr
