"""Data sets as they are (issue #11): the scan finds exactly the bad files of a zoo the tests make, our class list is
what DALI reads, the trainer skips bad files and names them, a file that fails mid-run stops the run in one line
and is skipped on resume, the builder reads the scan's list, and preview and profile skip bad files too.

Training runs go through the real command line in a subprocess, with the tiny sizes of tests/cli_runs.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_runs import TINY, run_cli
from conftest import trainer_flags
from zoo import BAD, CLASSES, HIDDEN_FOLDER, NOT_IMAGES, ODD, good_files, write_zoo

from dali_cutmix.errors import UserError

TRAIN_PER_CLASS, VAL_PER_CLASS = 16, 6


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The zoo (tests/zoo.py): 4 classes, 16 good train / 6 good val JPEGs each, plus the planted files."""
    return write_zoo(tmp_path_factory.mktemp("zoo") / "zoo", train_per_class=TRAIN_PER_CLASS,
                     val_per_class=VAL_PER_CLASS)


def _copy(zoo, tmp_path):
    return Path(shutil.copytree(zoo, tmp_path / "zoo", symlinks=True))


def _labels_of(path: str) -> int:
    return CLASSES.index(Path(path).parent.name)


# ------------------------------------------------------------------------------------------------ the checks


def test_quick_check_of_each_planted_file(zoo):
    from dali_cutmix.imagecheck import BAD as BAD_STATUS
    from dali_cutmix.imagecheck import UNUSUAL, USABLE, check_image_file

    for path, reason in BAD.items():
        check = check_image_file(zoo / path)
        assert check.status == BAD_STATUS and reason in check.detail, (path, check)
    for path, kind in ODD.items():
        check = check_image_file(zoo / path)
        assert check.status == UNUSUAL and kind in check.detail, (path, check)
    good = check_image_file(zoo / "train" / "class0" / "000.jpg")
    assert (good.status, good.format, good.detail, good.width, good.height) == (USABLE, "jpeg", "", 40, 40)
    png = check_image_file(zoo / "train/class0/png_named.jpg")
    assert (png.format, png.usable, png.width) == ("png", True, 40)
    assert check_image_file(zoo / "nope.jpg").detail.startswith("cannot open")


def test_scan_finds_exactly_the_bad_files_in_both_modes(zoo):
    from dali_cutmix.pipelines.scan import scan_data

    for mode in ("quick", "full"):
        result = scan_data(zoo, mode=mode, use_cache=False, show_progress=False)
        assert result.layout == "imagenet" and result.classes == list(CLASSES)
        assert dict(result.bad()).keys() == BAD.keys(), (mode, result.bad())
        for path, reason in result.bad():
            assert BAD[path] in reason, (mode, path, reason)
        assert dict(result.unusual()).keys() == ODD.keys(), (mode, result.unusual())
        train, val = result.split("train"), result.split("val")
        assert {f.path for f in train.usable()} == good_files(zoo, "train")
        assert {f.path for f in val.usable()} == good_files(zoo, "val")
        assert all(f.label == _labels_of(f.path) for f in train.files + val.files)
        hidden = {train.shown(p) for p in train.hidden}
        assert hidden == {HIDDEN_FOLDER + "/", NOT_IMAGES[0]}
        assert [train.shown(p) for p in train.ignored] == [NOT_IMAGES[1]]
        assert result.total == len(BAD) + len(ODD) + 4 * (TRAIN_PER_CLASS + VAL_PER_CLASS)


def test_full_mode_finds_what_only_decoding_shows(tmp_path):
    """A JPEG whose header parses and whose end marker is there, but without its quantization tables: the quick
    check passes it, the DALI decode does not."""
    from zoo import without_segments
    from zoo import write_zoo as make

    from dali_cutmix.pipelines.scan import scan_data

    data = make(tmp_path / "z", train_per_class=3, val_per_class=1)
    for path in list(BAD) + list(ODD) + list(NOT_IMAGES):
        (data / path).unlink()
    good = (data / "train/class1/001.jpg").read_bytes()
    (data / "train/class1/001.jpg").write_bytes(without_segments(good, 0xDB))
    quick = scan_data(data, mode="quick", show_progress=False)
    assert quick.all_usable
    full = scan_data(data, mode="full", show_progress=False)
    assert [p for p, _ in full.bad()] == ["train/class1/001.jpg"]
    assert "DALI cannot decode it" in full.bad()[0][1]
    again = scan_data(data, mode="full", show_progress=False)  # full results are cached: nothing decoded again
    assert again.cached == again.total and [p for p, _ in again.bad()] == ["train/class1/001.jpg"]
    assert scan_data(data, mode="quick", show_progress=False).cached == again.total  # and answer a quick scan


def test_the_cache_rescans_a_changed_file_only(zoo, tmp_path):
    from dali_cutmix.pipelines.scan import scan_data

    data = _copy(zoo, tmp_path)
    first = scan_data(data, show_progress=False)
    assert first.cached == 0
    second = scan_data(data, show_progress=False)
    assert second.cached == second.total and second.bad() == first.bad()
    (data / "train/class3/002.jpg").write_bytes(b"")  # changed: scanned again
    (data / "train/class0/zero.jpg").write_bytes((data / "train/class0/000.jpg").read_bytes())  # repaired
    third = scan_data(data, show_progress=False)
    assert third.cached == third.total - 2
    bad = dict(third.bad())
    assert "train/class3/002.jpg" in bad and "train/class0/zero.jpg" not in bad


def test_flat_val_is_named_with_how_to_sort_it(zoo, tmp_path, capsys):
    from dali_cutmix.cli import main

    data = tmp_path / "flat"
    shutil.copytree(zoo / "train", data / "train")
    (data / "val").mkdir()
    for i, path in enumerate(sorted((zoo / "val").rglob("0*.jpg"))):
        shutil.copy(path, data / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    assert main(["scan", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert "val' is a flat folder" in err and "valprep.sh" in err
    assert main(["train", "--data", str(data), "--output", str(tmp_path / "o"), "--gpus", "0"]) == 2
    assert "is a flat folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the scan command


def test_scan_command_summary_report_list_and_exit_codes(zoo, tmp_path, capsys):
    from dali_cutmix.cli import main
    from dali_cutmix.folder_reader import read_file_list

    report, lists = tmp_path / "report.json", tmp_path / "lists" / "{split}.txt"
    lists.parent.mkdir()  # a missing folder is refused, as for every output of the commands
    assert main(["scan", str(zoo), "--report", str(report), "--write-list", str(lists), "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    for path, reason in BAD.items():
        assert any(line.strip().startswith(f"{path}: ") and reason in line for line in out.splitlines()), path
    assert "train: 76 files: 70 usable (6 unusual), 6 bad" in out and "val: 25 files: 24 usable, 1 bad" in out
    assert "1 CMYK" in out and "1 PNG named .jpg" in out and "hidden names" in out
    data = json.loads(report.read_text())
    assert (data["files"], data["usable"], data["unusual"], data["bad"]) == (101, 94, 6, 7)
    assert {b["path"] for b in data["bad_files"]} == BAD.keys()
    assert {u["path"] for u in data["unusual_files"]} == ODD.keys()
    assert HIDDEN_FOLDER + "/" in data["hidden"] and data["class_names"] == list(CLASSES)
    for split in ("train", "val"):
        files, labels = read_file_list(tmp_path / "lists" / f"{split}.txt")
        assert {os.path.relpath(f, zoo / split) for f in files} == good_files(zoo, split)
        assert labels == [_labels_of(f) for f in files]

    # a list written inside the data is relative to its folder: `relative/path label` lines
    clean = tmp_path / "clean"
    shutil.copytree(zoo / "train", clean, ignore=shutil.ignore_patterns("zero.jpg", "half.jpg", "no_end.jpg",
                                                                         "notes.JPEG", "error_page.jpg",
                                                                         "garbage.jpg"))
    assert main(["scan", str(clean), "--write-list", str(clean / "all.txt")]) == 0
    lines = (clean / "all.txt").read_text().splitlines()
    assert len(lines) == 70 and lines[0] == "class0/000.jpg 0" and all(not line.startswith("/") for line in lines)
    capsys.readouterr()

    for args, fragment in ((["scan", str(tmp_path / "missing")], "does not exist"),
                           (["scan", str(zoo), "--write-list", str(tmp_path / "x.txt")], "{split}"),
                           (["scan", str(zoo), "--report", str(tmp_path)], "is a directory, expected a file name"),
                           (["scan", str(zoo), "--jobs", "0"], "--jobs")):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "Traceback" not in err and fragment in err, (args, err)


def test_scan_measures_its_speed_on_a_few_thousand_files(tmp_path):
    """The quick mode reads headers and ends, not pixels: a tree of 3,000 small files scans at thousands of
    files/s even here (benchmarks/scan_speed.py measures 100,000)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scan_speed", Path(__file__).parents[1] / "benchmarks" /
                                                  "scan_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tree = bench.make_tree(tmp_path / "bench", 3000, 30)
    from dali_cutmix.pipelines.scan import scan_data

    result = scan_data(tree, use_cache=False, show_progress=False)
    assert result.total == 3000 and result.all_usable and result.total / result.seconds > 1000


# ------------------------------------------------------------------------------- one class list: ours


def _reader_labels(data, **kw):
    """``{path relative to its class folder's parent: label}`` as the pipeline's reader reads ``data``."""
    from nvidia.dali import fn, pipeline_def

    from dali_cutmix.builder import reader

    @pipeline_def(batch_size=8, num_threads=1, device_id=None)
    def probe():
        jpegs, labels = reader(data, shuffle=False, **kw)
        return fn.get_property(jpegs, key="source_info"), labels

    pipe = probe()
    pipe.build()
    size = pipe.reader_meta("Reader")["epoch_size"]
    seen = {}
    while len(seen) < size:
        info, labels = pipe.run()
        for i in range(len(info)):
            path = Path(bytes(info.at(i)).decode())
            seen[f"{path.parent.name}/{path.name}"] = int(labels.at(i)[0])
    return seen


def test_hidden_folder_never_shifts_labels_and_val_lines_up(zoo, tmp_path, device):
    """An empty train/.ipynb_checkpoints sorts before every class: DALI's folder reader would make it class 0.
    Ours is what DALI reads, in the builder, the validation pipeline and the trainer's lists."""
    from dali_cutmix import CutMixLoader, build_cutmix_pipeline
    from dali_cutmix.folder_reader import count_classes
    from dali_cutmix.pipelines.imagenet import build_imagenet_val_pipeline

    data = _copy(zoo, tmp_path)
    for path in BAD:
        (data / path).unlink()
    (data / "val" / ".ipynb_checkpoints").mkdir()
    assert count_classes(data / "train") == 4
    for split in ("train", "val"):
        labels = _reader_labels(data / split)
        assert len(labels) == len(good_files(zoo, split))
        assert all(label == _labels_of(path) for path, label in labels.items()), labels
    pipe = build_cutmix_pipeline(data / "train", batch_size=10, crop=24, device=device, num_threads=1,
                                 mixing=False)
    seen = 0
    for _, targets in CutMixLoader(pipe):
        assert targets.shape[1] == 4
        seen += len(targets)
    assert seen == len(good_files(zoo, "train"))
    val = build_imagenet_val_pipeline(data / "val", batch_size=8, crop=24, resize=28, device=device,
                                      num_threads=1)
    got = [int(label) for _, labels in CutMixLoader(val) for label in labels.reshape(-1)]
    assert sorted(got) == sorted(_labels_of(p) for p in good_files(zoo, "val"))


def test_builder_reads_the_list_scan_writes(zoo, tmp_path, capsys, device):
    from dali_cutmix import CutMixLoader, build_cutmix_pipeline
    from dali_cutmix.cli import main
    from dali_cutmix.folder_reader import count_classes, read_file_list

    listed = tmp_path / "train.txt"
    assert main(["scan", str(zoo / "train"), "--write-list", str(listed)]) == 1
    capsys.readouterr()
    assert count_classes(listed) == 4
    pipe = build_cutmix_pipeline(listed, batch_size=16, crop=24, device=device, num_threads=1)
    seen = sum(len(images) for images, _ in CutMixLoader(pipe))
    assert seen == len(read_file_list(listed)[0]) == len(good_files(zoo, "train"))


def test_loader_names_the_file_dali_fails_on(zoo, tmp_path, device):
    """DALI's decoder error names the file (as its list gives it); nvImageCodec's "bad code stream" names none:
    the loader finds it among the reader's files. Either way the first line names the full path, on either
    device's decoder (on the GPU, nvImageCodec's "mixed" one)."""
    from dali_cutmix import CutMixLoader, build_cutmix_pipeline
    from dali_cutmix.folder_reader import ImageList
    from dali_cutmix.imagecheck import BadFileError

    good = [f"train/class{c}/00{i}.jpg" for c in range(4) for i in range(3)]
    for bad, why in (("train/class1/no_end.jpg", "no JPEG end marker"), ("train/class2/garbage.jpg", "JPEG header"),
                     ("train/class0/zero.jpg", "empty file")):
        files = tuple(good + [bad])
        images = ImageList(root=zoo, files=files, labels=tuple(_labels_of(f) for f in files), classes=CLASSES)
        pipe = build_cutmix_pipeline(images, batch_size=len(files), crop=24, device=device, num_threads=1)
        with pytest.raises(BadFileError) as info:
            for _ in CutMixLoader(pipe):
                pass
        first = str(info.value).splitlines()[0]
        assert first.startswith(f"cannot read image file {str(zoo / bad)!r}: ") and why in first, first
        assert info.value.path == zoo / bad and why in info.value.reason


# ------------------------------------------------------------------------------------------------ the trainer


def _train(data, out, tmp_path, device, *extra, epochs=1):
    """``dali-cutmix train`` for ``epochs`` on ``device`` (one rank: ``--gpus 1``, or ``--gpus 0`` on the CPU)."""
    return run_cli(["train", "--data", str(data), "--output", str(out), "--epochs", str(epochs), "--batch-size", "16",
                    *trainer_flags(device), *TINY, *extra], tmp_path)


def test_train_on_the_zoo_skips_and_names_every_bad_file(zoo, tmp_path, device):
    from dali_cutmix.folder_reader import read_file_list

    out = tmp_path / "run"
    result = _train(zoo, out, tmp_path, device)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("skipping "))
    assert line.startswith(f"skipping {len(BAD)} files that DALI cannot read: train/class0/half.jpg: truncated")
    assert "and 2 more" in line and str(out / "skipped.txt") in line
    skipped = [line.split("\t") for line in (out / "skipped.txt").read_text().splitlines()]
    assert {s[0] for s in skipped} == BAD.keys() and all(s[1] == "scan" for s in skipped)
    run = json.loads((out / "run.json").read_text())
    assert {s["path"] for s in run["skipped"]} == BAD.keys()
    # every usable image is trained on (and validated on), the odd ones included; nothing else is
    assert run["train_images"] == len(good_files(zoo, "train")) == 4 * TRAIN_PER_CLASS + len(ODD)
    assert run["val_images"] == len(good_files(zoo, "val")) == 4 * VAL_PER_CLASS
    for split in ("train", "val"):
        files, labels = read_file_list(out / f"{split}-files.txt")
        assert {os.path.relpath(f, zoo / split) for f in files} == good_files(zoo, split)
        assert labels == [_labels_of(f) for f in files]  # the hidden folder shifts nothing
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["val_images"] == run["val_images"]
    assert "from the cache" not in result.stdout and "checked before (cache)" not in result.stdout
    # a second run on the same data reads its scan from the cache
    again = _train(zoo, tmp_path / "again", tmp_path, device, "--scan", "quick")
    assert again.returncode == 0, again.stderr
    assert f"{101:,} of them checked before (cache)" in again.stdout


def test_a_file_corrupted_after_the_scan_stops_the_run_then_resume_skips_it(zoo, tmp_path, device):
    """The scan passed the file and cached that; then its second half turns to zeros, size and time unchanged
    (as bit rot does). Epoch 2 stops on it: one line naming it, exit 2, last.pt intact; --resume auto goes on
    without it. On the GPU it is nvImageCodec's "mixed" decoder that meets the file."""
    import torch

    data = _copy(zoo, tmp_path)
    out = tmp_path / "run"
    result = _train(data, out, tmp_path, device)
    assert result.returncode == 0, result.stderr
    victim = data / "train" / "class2" / "005.jpg"
    st = victim.stat()
    content = victim.read_bytes()
    victim.write_bytes(content[:len(content) // 2] + bytes(len(content) - len(content) // 2))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = (out / "last.pt").read_bytes()

    result = _train(data, out, tmp_path, device, "--resume", "auto", epochs=2)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert errors[0].startswith("error: epoch 2 stopped: DALI cannot read train/class2/005.jpg (truncated")
    assert "--resume auto" in errors[0] and "last.pt holds epoch 1" in errors[0]
    assert (out / "last.pt").read_bytes() == before  # checkpoints intact
    assert "train/class2/005.jpg\tepoch 2\t" in (out / "skipped.txt").read_text()

    result = _train(data, out, tmp_path, device, "--resume", "auto", epochs=2)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 1" in result.stdout and "train/class2/005.jpg" in (out / "skipped.txt").read_text()
    run = json.loads((out / "run.json").read_text())
    assert run["train_images"] == len(good_files(zoo, "train")) - 1
    assert {"path": "train/class2/005.jpg", "reason": "truncated: no JPEG end marker", "found": "epoch 2"} \
        in run["skipped"]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2


def test_scan_off_still_reads_our_class_list(zoo, tmp_path):
    """--scan off checks nothing (the bad files stay in the lists) but the lists still come from our class list."""
    from dali_cutmix.folder_reader import read_file_list
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.plan import prepare

    out = tmp_path / "o"
    plan = prepare(resolve_config({"data": str(zoo), "output": str(out), "gpus": 0, "scan": "off",
                                   "batch_size": 16}))
    files, labels = read_file_list(plan.train_list)
    assert len(files) == 4 * TRAIN_PER_CLASS + len(ODD) + sum(p.startswith("train/") for p in BAD)
    assert labels == [_labels_of(f) for f in files] and plan.skipped == ()
    with pytest.raises(UserError, match="--scan must be one of quick, full, off"):
        resolve_config({"scan": "fast"})


# ------------------------------------------------------------------------------------- preview and profile


def test_preview_skips_bad_files_and_names_them(zoo, tmp_path, capsys, device):
    from dali_cutmix.cli import main

    out = tmp_path / "grid.png"
    assert main(["preview", "--data", str(zoo / "train"), "--out", str(out), "--count", "16", "--crop", "32",
                 "--device", device]) == 0
    err = capsys.readouterr().err
    assert "skipping 6 files that DALI cannot read: class0/half.jpg: truncated" in err
    assert out.stat().st_size > 0


def test_profile_reads_the_usable_files_only(zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_CUTMIX_CACHE", str(tmp_path / "cache"))  # where the usable files' list goes
    from dali_cutmix.cli.profile import _resolve_data
    from dali_cutmix.folder_reader import read_file_list
    from dali_cutmix.pipelines.profile_data import dataset_summary
    from dali_cutmix.pipelines.reference import reference_dataset

    lines = []
    data = _resolve_data(str(zoo / "train"), None, lines.append)
    assert data.is_file() and lines[0].startswith("skipping 6 files that DALI cannot read")
    files, labels = read_file_list(data)
    assert {os.path.relpath(f, zoo / "train") for f in files} == good_files(zoo, "train")
    summary = dataset_summary(data)
    assert (summary["images"], summary["classes"]) == (len(files), 4)
    dataset = reference_dataset(data, crop=24)
    image, label = dataset[0]
    assert len(dataset) == len(files) and tuple(image.shape) == (3, 24, 24) and label == labels[0]
    # the torchvision reference over a folder takes our classes: the hidden folder is none
    clean = tmp_path / "clean"
    shutil.copytree(zoo / "val", clean)
    (clean / "class3" / "broken.jpg").unlink()
    (clean / ".ipynb_checkpoints").mkdir()
    (clean / "class0" / "._000.jpg").write_bytes(b"AppleDouble")
    assert _resolve_data(str(clean), None, lines.append) == Path(str(clean)) and len(lines) == 1
    folder = reference_dataset(clean, crop=24)
    assert folder.classes == list(CLASSES) and len(folder) == 4 * VAL_PER_CLASS
    assert sorted(folder.targets) == sorted(_labels_of(p) for p in good_files(zoo, "val"))
