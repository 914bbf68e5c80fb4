"""Tar shards (``dali-cutmix shard``, :mod:`dali_cutmix.shard_reader`): the round trip, bad files, an interrupted run,
sharding over ranks, checkpoints, training from shards, and reading them from a local S3-compatible server."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tarfile
from pathlib import Path

import cli_runs as helpers
import numpy as np
import pytest
import torch
from conftest import trainer_flags, upload
from zoo import BAD, CLASSES, good_files, write_zoo

from dali_cutmix.errors import UserError

CPU = dict(device="cpu", num_threads=2, crop=32)


@pytest.fixture
def on(device):
    """The builder's arguments for this test's device (the GPU case skipped with its reason without one)."""
    return dict(device=device, num_threads=2, crop=32)


def sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """An ImageNet-layout tree with bad, odd and hidden files (tests/zoo.py)."""
    return write_zoo(tmp_path_factory.mktemp("zoo") / "zoo")


@pytest.fixture(scope="module")
def zoo_shards(zoo, tmp_path_factory):
    """The zoo written as shards (small ones: several per split), with the lines the run said."""
    from dali_cutmix.pipelines.shard_writer import shard_data

    out = tmp_path_factory.mktemp("shards") / "zoo-shards"
    said = []
    result = shard_data(zoo, out, shard_size="16KB", jobs=2, seed=5, show_progress=False, say=said.append)
    return out, result, said


def folder_samples(root, split):
    """``{sha1 of the file's bytes: label}`` of a split's usable files (labels: the sorted class folders)."""
    found = {}
    for rel in good_files(root, split):
        data = (Path(root) / split / rel).read_bytes()
        found[sha(data)] = CLASSES.index(rel.split("/")[0])
    return found


def tar_samples(folder):
    """``[(key, image ext, image bytes, label)]`` of every tar of a shard folder, read with Python's tarfile, and
    every index checked against its tar (each component's offset and size find its bytes)."""
    from dali_cutmix.pipelines.tar_format import index_entries
    from dali_cutmix.shard_reader import as_shards

    shards = as_shards(folder)
    samples = []
    for tar_path, index_path, count in zip(shards.tar_paths, shards.index_paths, shards.counts):
        blob = Path(tar_path).read_bytes()
        members = {}
        with tarfile.open(tar_path) as tar:
            for m in tar:
                members[m.name] = tar.extractfile(m).read()
        index = index_entries(Path(index_path).read_text())
        assert len(index) == count == len(members) // 2
        for components in index:
            for ext, offset, size, name in components:
                assert blob[offset:offset + size] == members[name], name
            (img_ext, _, _, img_name), (cls_ext, _, _, cls_name) = components
            assert cls_ext == "cls" and img_name.split(".")[0] == cls_name.split(".")[0]
            text = members[cls_name].decode()
            assert len(text) == shards.label_digits and text.isdigit()
            samples.append((img_name.split(".")[0], img_ext, members[img_name], int(text)))
    return samples


def read_with_dali(data, *, shard_id=0, num_shards=1, shuffle=False, seed=0, epochs=1, batch_size=8):
    """Per epoch, ``[(sha1 of the image bytes, label)]`` that our reader gives rank ``shard_id`` (padding
    left out)."""
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import reader

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=None, seed=11 + shard_id)
    def probe():
        return reader(data, shard_id=shard_id, num_shards=num_shards, shuffle=shuffle, seed=seed)

    pipe = probe()
    pipe.build()
    meta = pipe.reader_meta("Reader")
    per_rank = math.ceil(meta["epoch_size_padded"] / num_shards)
    out = []
    for _ in range(epochs):
        seen = []
        for _ in range(math.ceil(per_rank / batch_size)):
            images, labels = pipe.run()
            for i in range(len(images)):
                if len(seen) < per_rank:
                    seen.append((sha(images.at(i).tobytes()), int(np.asarray(labels.at(i))[0])))
        out.append(seen)
    return out, meta


# ------------------------------------------------------------------------------------------ the round trip


@pytest.mark.one_device("our shard reader alone (no decoder): a reader runs on the CPU on every machine")
def test_round_trip_every_usable_image_once_with_its_bytes_and_label(zoo, zoo_shards):
    from dali_cutmix.shard_reader import FORMAT, FORMAT_VERSION, MANIFEST, as_shards

    out, result, _ = zoo_shards
    for split in ("train", "val"):
        want = folder_samples(zoo, split)
        got = tar_samples(out / split)
        assert len(got) == len(want)  # each usable image exactly once
        assert {sha(img): label for _, _, img, label in got} == want  # the same bytes, the same label
        keys = [k for k, *_ in got]
        assert len(set(keys)) == len(keys)
        # The odd but usable files keep their bytes (a PNG named .jpg, CMYK, progressive...).
        manifest = json.loads((out / split / MANIFEST).read_text())
        assert manifest["format"] == FORMAT and manifest["version"] == FORMAT_VERSION
        assert manifest["classes"] == list(CLASSES) and manifest["samples"] == len(want)
        assert [s["samples"] for s in manifest["shards"]] == list(as_shards(out / split).counts)
        assert all(s["bytes"] == (out / split / s["tar"]).stat().st_size for s in manifest["shards"])
        assert manifest["source"]["path"] == os.path.abspath(zoo) and manifest["source"]["split"] == split
        # ... and DALI's reader, through our index files and the in-graph label parse, gives the same.
        (epoch,), meta = read_with_dali(out / split)
        assert meta["epoch_size"] == len(want)
        assert dict(epoch) == want and len(epoch) == len(want)
    assert [(name, samples) for name, _, samples, _, _ in result.splits] == [
        ("train", len(folder_samples(zoo, "train"))), ("val", len(folder_samples(zoo, "val")))]


def test_samples_are_shuffled_across_shards(zoo, zoo_shards):
    out, _, _ = zoo_shards
    from dali_cutmix.shard_reader import as_shards

    shards = as_shards(out / "train")
    assert len(shards.tars) >= 4
    labels = [label for *_, label in tar_samples(out / "train")]
    # Written in shuffled order: not sorted by class, and the classes spread over the shards.
    assert labels != sorted(labels)
    start, mixed = 0, 0
    for count in shards.counts:
        mixed += len(set(labels[start:start + count])) > 1
        start += count
    assert mixed >= len(shards.counts) - 1


def test_bad_files_are_skipped_and_named(zoo, zoo_shards):
    out, result, said = zoo_shards
    (line,) = [s for s in said if s.startswith("skipping ")]
    assert line.startswith(f"skipping {len(BAD)} files that DALI cannot read: ")
    named = [e["path"] for split in ("train", "val")
             for e in json.loads((out / split / "manifest.json").read_text())["source"]["skipped"]]
    assert sorted(named) == sorted(BAD)
    reasons = {e["path"]: e["reason"] for split in ("train", "val")
               for e in json.loads((out / split / "manifest.json").read_text())["source"]["skipped"]}
    for path, fragment in BAD.items():
        assert fragment in reasons[path], (path, reasons[path])


def test_same_seed_writes_the_same_shards(zoo, zoo_shards, tmp_path):
    from dali_cutmix.pipelines.shard_writer import shard_data

    out, _, _ = zoo_shards
    again = shard_data(zoo, tmp_path / "again", shard_size="16KB", jobs=1, seed=5, show_progress=False)
    for split in ("train", "val"):
        for tar in sorted((out / split).glob("shard-*")):
            assert (again.out / split / tar.name).read_bytes() == tar.read_bytes(), tar.name


# ------------------------------------------------------------------------------------------ an interrupted run


@pytest.mark.one_device("the shard writer's test: the builder refuses the unfinished folder before any pipeline "
                        "exists, on every device")
def test_an_interrupted_run_leaves_no_complete_looking_output_and_a_rerun_finishes(zoo, zoo_shards, tmp_path,
                                                                                   monkeypatch):
    from dali_cutmix import build_cutmix_pipeline
    from dali_cutmix.pipelines.shard_writer import STATE_FILE, shard_data
    from dali_cutmix.pipelines.tar_format import TarIndexWriter
    from dali_cutmix.shard_reader import is_shard_folder

    out = tmp_path / "out"
    original, calls = TarIndexWriter.add, []

    def failing_add(self, key, components):
        calls.append(key)
        if len(calls) == 30:  # in the middle of a shard of train/
            raise OSError(28, "No space left on device")
        return original(self, key, components)

    monkeypatch.setattr(TarIndexWriter, "add", failing_add)
    with pytest.raises(OSError, match="No space left"):
        shard_data(zoo, out, shard_size="16KB", jobs=1, seed=5, show_progress=False)
    monkeypatch.setattr(TarIndexWriter, "add", original)

    # Nothing reads as complete: no manifest, no half-written tar under a shard's name, no val/ yet.
    assert not list(out.rglob("manifest.json"))
    assert not is_shard_folder(out / "train") and not (out / "val").exists()
    assert not [p for p in (out / "train").iterdir() if p.name.startswith(".")]  # the temporary tar is gone
    done = sorted(p.name for p in (out / "train").glob("shard-*.tar"))
    assert done and all((out / "train" / n.replace(".tar", ".idx")).is_file() for n in done)
    assert (out / STATE_FILE).is_file()
    with pytest.raises(UserError):
        build_cutmix_pipeline(out / "train", batch_size=4, **CPU)
    # What a SIGKILL leaves besides: a temporary file of the shard being written.
    (out / "train" / ".shard-00009.tar.abc123.tmp").write_bytes(b"partial")

    # Another source into it is refused; the same source finishes it, keeping the whole shards.
    other = tmp_path / "other"
    (other / "a").mkdir(parents=True)
    (other / "a" / "x.jpg").write_bytes((zoo / "train" / "class0" / "000.jpg").read_bytes())
    with pytest.raises(Exception, match="unfinished shard run of"):
        shard_data(other, out, shard_size="16KB", jobs=1, show_progress=False)
    result = shard_data(zoo, out, shard_size="16KB", jobs=1, seed=5, show_progress=False)
    assert result.kept == len(done)
    assert not (out / STATE_FILE).exists()
    assert not [p for p in out.rglob(".*")]
    ref, _, _ = zoo_shards
    for split in ("train", "val"):  # the same shards a run that was never interrupted writes
        names = sorted(p.name for p in (ref / split).iterdir())
        assert sorted(p.name for p in (out / split).iterdir()) == names
        for name in names:
            if name != "manifest.json":
                assert (out / split / name).read_bytes() == (ref / split / name).read_bytes(), name


def test_another_seed_restarts_an_unfinished_run_cleanly(zoo, tmp_path, monkeypatch):
    from dali_cutmix.pipelines.shard_writer import shard_data
    from dali_cutmix.pipelines.tar_format import TarIndexWriter
    from dali_cutmix.shard_reader import as_shards

    out = tmp_path / "out"
    original, calls = TarIndexWriter.add, []

    def failing_add(self, key, components):
        calls.append(key)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return original(self, key, components)

    monkeypatch.setattr(TarIndexWriter, "add", failing_add)
    with pytest.raises(KeyboardInterrupt):
        shard_data(zoo, out, shard_size="16KB", jobs=1, seed=1, show_progress=False)
    monkeypatch.setattr(TarIndexWriter, "add", original)
    result = shard_data(zoo, out, shard_size="64KB", jobs=1, seed=2, show_progress=False)
    assert result.kept == 0
    shards = as_shards(out / "train")
    assert sorted(p.name for p in (out / "train").glob("shard-*")) == sorted(shards.tars + shards.indexes)
    assert len(tar_samples(out / "train")) == len(folder_samples(zoo, "train"))


def test_cli_refuses_bad_flags_and_folders_in_one_line(zoo, zoo_shards, tmp_path, capsys):
    from dali_cutmix.cli import main

    out, _, _ = zoo_shards

    def fails(args, *fragments):
        code = main(["shard", str(zoo), *args])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("skipping ")]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])

    fails(["--out", str(tmp_path / "a"), "--shard-size", "1XB"], "--shard-size", "1XB")
    fails(["--out", str(tmp_path / "a"), "--shard-size", "0"], "--shard-size")
    fails(["--out", str(tmp_path / "a"), "--jobs", "0"], "--jobs")
    fails([], "--out")
    fails(["--out", str(out)], "already holds finished shards")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    fails(["--out", str(tmp_path / "busy")], "not empty")
    fails(["--out", str(zoo / "shards")], "inside the data")
    code = main(["shard", str(tmp_path / "missing"), "--out", str(tmp_path / "b")])
    assert code == 2 and "missing" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_writes_a_class_per_folder_tree(tmp_path, capsys, on):
    from conftest import write_jpeg_tree

    from dali_cutmix import CutMixLoader, build_cutmix_pipeline
    from dali_cutmix.cli import main

    tree = write_jpeg_tree(tmp_path / "tree", classes=3, per_class=5)
    assert main(["shard", str(tree), "--out", str(tmp_path / "s"), "--shard-size", "10KB", "--jobs", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "15 samples" in stdout and (tmp_path / "s" / "manifest.json").is_file()
    loader = CutMixLoader(build_cutmix_pipeline(tmp_path / "s", batch_size=4, **on))
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and targets.shape == (4, 3)
    assert len(loader) == 4


# ------------------------------------------------------------------------------------------ reading


@pytest.mark.one_device("our shard reader alone (no decoder): a reader runs on the CPU on every machine")
def test_two_ranks_read_disjoint_shards_that_cover_the_data(zoo, zoo_shards):
    out, _, _ = zoo_shards
    want = folder_samples(zoo, "train")
    ranks = [read_with_dali(out / "train", shard_id=r, num_shards=2, shuffle=True, seed=3, epochs=3)[0]
             for r in (0, 1)]
    for epoch in range(3):
        a, b = (set(h for h, _ in ranks[r][epoch]) for r in (0, 1))
        assert not a & b
        assert a | b == set(want)
        assert all(want[h] == label for r in (0, 1) for h, label in ranks[r][epoch])
    assert set(h for h, _ in ranks[0][0]) != set(h for h, _ in ranks[0][1])  # a new tar order every epoch
    # One rank: every epoch is each sample exactly once, in a new order.
    (one, two), _ = read_with_dali(out / "train", shuffle=True, seed=3, epochs=2)
    assert sorted(one) == sorted(two) == sorted(want.items()) and one != two


def test_a_restored_pipeline_continues_exactly(zoo_shards, on):
    from dali_cutmix import CutMixLoader, build_cutmix_pipeline

    out, _, _ = zoo_shards
    options = dict(batch_size=6, mix_options=dict(mode="elem"), enable_checkpointing=True, return_params=True,
                   **on)
    loader = CutMixLoader(build_cutmix_pipeline(out / "train", **options))
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.checkpoint()
    expected = list(it) + list(iter(loader)) + list(iter(loader))  # the rest of this epoch, and two more
    resumed = CutMixLoader(build_cutmix_pipeline(out / "train", checkpoint=state, **options))
    got = list(iter(resumed)) + list(iter(resumed)) + list(iter(resumed))
    assert len(got) == len(expected) > 0
    for a, b in zip(expected, got):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_a_folder_without_a_manifest_and_a_bad_manifest_are_named(zoo_shards, tmp_path, on):
    from dali_cutmix import build_cutmix_pipeline

    out, _, _ = zoo_shards
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps(dict(format="dali-cutmix-shards", version=99)))
    with pytest.raises(UserError, match="version 99"):
        build_cutmix_pipeline(bad, batch_size=2, **on)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        build_cutmix_pipeline(bad, batch_size=2, **on)


def test_preview_and_the_profiler_take_a_shard_folder(zoo, zoo_shards, tmp_path, capsys, device):
    from dali_cutmix.cli import main
    from dali_cutmix.pipelines.profile_data import dataset_summary
    from dali_cutmix.profiler.runners import ReferenceRunner
    from dali_cutmix.profiler.settings import ProfileSettings
    from dali_cutmix.profiler.timing import VariantUnavailable

    out, _, _ = zoo_shards
    assert main(["preview", "--data", str(out / "train"), "--out", str(tmp_path / "p.png"), "--crop", "32",
                 "--device", device]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    summary = dataset_summary(out / "train", sample=8)
    assert summary["images"] == len(folder_samples(zoo, "train")) and summary["classes"] == 4
    assert summary["mean_width"] > 0 and summary["mean_file_kb"] > 0
    with pytest.raises(VariantUnavailable, match="tar shards"):
        ReferenceRunner(ProfileSettings(data=str(out / "train")), 4)


# ------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def colour_shards(tmp_path_factory):
    """The trainer tests' colour data set (tests/cli_runs.py) and its shards."""
    from dali_cutmix.pipelines.shard_writer import shard_data

    root = tmp_path_factory.mktemp("colour")
    data = helpers.write_colour_dataset(root / "data", train_per_class=helpers.TRAIN_PER_CLASS,
                                        val_per_class=helpers.VAL_PER_CLASS)
    shard_data(data, root / "shards", shard_size="24KB", jobs=1, show_progress=False)
    return data, root / "shards"


def test_training_from_shards_learns_and_a_sigkill_resume_is_exact(colour_shards, tmp_path, device):
    """On the GPU with ``--deterministic`` (deterministic cuDNN and torch kernels, no autotuning): the resumed
    run's weights equal the uninterrupted run's bit for bit there too."""
    data, shards = colour_shards
    args = ["train", "--data", str(shards), "--epochs", "3", "--batch-size", "16", "--log-every", "1",
            *trainer_flags(device), *(["--deterministic"] if device == "gpu" else []), *helpers.TINY]
    ref = tmp_path / "ref"
    result = helpers.run_cli(args + ["--output", str(ref)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "shards: 128 training and 48 validation samples" in result.stdout + result.stderr
    records = helpers.read_records(ref)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["val_top1"] > 50  # 4 classes: chance is 25%
    assert records[-1]["val_images"] == 4 * helpers.VAL_PER_CLASS
    for name in ("last.pt", "best.pt", "run.json", "metrics.jsonl"):
        assert (ref / name).is_file(), name

    out = tmp_path / "killed"
    helpers.kill_in_epoch_2(args + ["--output", str(out)], tmp_path)
    result = helpers.run_cli(args + ["--output", str(out), "--resume", "auto"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 1" in result.stdout
    got, want = helpers.load_state(out / "last.pt"), helpers.load_state(ref / "last.pt")
    for name, tensor in want["model"].items():
        assert got["model"][name].equal(tensor), name
    assert got["dali"] == want["dali"]
    assert [r["train_loss"] for r in helpers.read_records(out)] == [r["train_loss"] for r in records]


def test_training_on_one_shard_folder_is_refused_in_one_line(zoo_shards, tmp_path, capsys):
    from dali_cutmix.cli import main

    out, _, _ = zoo_shards
    assert main(["train", "--data", str(out / "train"), "--output", str(tmp_path / "run"), "--gpus", "0"]) == 2
    err = capsys.readouterr().err
    assert "is one shard folder" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_two_ranks_train_from_shards_on_disjoint_parts(colour_shards, tmp_path, device):
    """Two CPU ranks (gloo), or two GPUs (NCCL; skipped where DALI sees fewer)."""
    _, shards = colour_shards
    out = tmp_path / "ddp"
    result = helpers.run_cli(["train", "--data", str(shards), "--output", str(out), "--epochs", "1",
                              "--batch-size", "16", *trainer_flags(device, ranks=2), *helpers.TINY], tmp_path)
    assert result.returncode == 0, result.stderr
    ranks = json.loads((out / "ranks.json").read_text())
    assert sorted(r["reader"]["shard_id"] for r in ranks) == [0, 1]
    assert all(r["reader"]["number_of_shards"] == 2 and r["reader"]["epoch_size"] == 128 for r in ranks)
    assert ranks[0]["state_digest"] == ranks[1]["state_digest"]
    assert sum(r["train_samples_per_epoch"] for r in ranks) == 128
    assert helpers.read_records(out)[-1]["val_images"] == 4 * helpers.VAL_PER_CLASS  # each val sample once


# ------------------------------------------------------------------------------------------ S3


def test_shards_on_s3_read_like_local_ones_and_train(colour_shards, s3_server, tmp_path, monkeypatch, on):
    """DALI's reader (on the CPU on every machine) reads s3:// as it reads the folder; the pipeline and the trainer
    read it on this test's device."""
    from dali_cutmix import CutMixLoader, build_cutmix_pipeline
    from dali_cutmix.shard_reader import as_shards

    env, client = s3_server
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _, shards = colour_shards
    client.create_bucket(Bucket="data")
    upload(client, shards, "data", "colour")

    uri = "s3://data/colour/train"
    remote = as_shards(uri)
    assert remote.classes == as_shards(shards / "train").classes and remote.samples == 128
    (epoch,), meta = read_with_dali(uri)
    (local,), _ = read_with_dali(shards / "train")
    assert epoch == local and meta["epoch_size"] == 128
    loader = CutMixLoader(build_cutmix_pipeline(uri, batch_size=8, **on))
    assert sum(len(x) for x, _ in loader) == 128

    # The trainer: one epoch from s3://bucket/prefix (train/ and val/), the endpoint from the environment.
    out = tmp_path / "s3run"
    run_env = {**helpers.cli_env(tmp_path), **env}
    result = subprocess.run(helpers.cli_command() + ["train", "--data", "s3://data/colour", "--output", str(out),
                                                      "--epochs", "1", "--batch-size", "16",
                                                      *trainer_flags(on["device"]), *helpers.TINY],
                            cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    (record,) = helpers.read_records(out)
    assert record["val_images"] == 4 * helpers.VAL_PER_CLASS

    # A prefix that holds nothing: one line naming it and DALI's reason, exit 2.
    result = subprocess.run(helpers.cli_command() + ["train", "--data", "s3://data/nothing", "--output",
                                                      str(tmp_path / "none")],
                            cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    helpers.assert_one_line_error(result.stderr, "s3://data/nothing/train/manifest.json", "AWS_ENDPOINT_URL")


def test_a_shard_sample_that_fails_to_decode_is_named_with_what_to_do(tmp_path):
    """DALI names a failing webdataset sample TAR:OFFSET:KEY; a run cannot skip it, so the line says to write the
    shards again with --full, and the trainer's stop line keeps that advice."""
    from dali_cutmix.loader import SHARD_FIX, bad_file_error
    from dali_cutmix.shard_reader import ShardSet
    from dali_cutmix.train.loop import file_failure

    tar = f"{tmp_path}/shard-00000.tar"
    error = RuntimeError(f"Critical error in pipeline:\nError in MIXED operator nvidia.dali.fn.decoders.image, which "
                         f"was used in the pipeline definition with the following traceback:\n\nencountered:\n\n"
                         f"Failed to decode sample #3 : {tar}:9728:00000003.jpg\nC++ context: [...]")
    bad = bad_file_error(error)
    assert str(bad) == f"cannot decode sample '00000003.jpg' of '{tar}' (byte 9728): {SHARD_FIX}"
    assert bad.shard and bad.path is None
    stop = file_failure(bad, output=tmp_path / "run", data_root=tmp_path, epoch=3)
    assert str(stop) == f"epoch 3 stopped: {bad} (checkpoints intact: last.pt holds epoch 2)"
    assert not (tmp_path / "run").exists()  # nothing recorded: a skip list cannot skip a sample of a tar

    shards = ShardSet(location=str(tmp_path), classes=("a",), tars=("shard-00000.tar",),
                      indexes=("shard-00000.idx",), counts=(4,), label_digits=1, manifest={})
    codec = bad_file_error(RuntimeError("nvImageCodec failure: '#3'"), shards)
    assert str(codec) == (f"a sample of the tar shards in '{tmp_path}' failed to decode (nvImageCodec reports a bad "
                          f"code stream) and DALI does not say which: {SHARD_FIX}")
    assert codec.shard
