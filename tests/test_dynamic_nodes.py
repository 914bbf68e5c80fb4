"""The whole training input in DALI Dynamic mode as a torchdata.nodes graph (``dali_cutmix.dynamic_nodes``), on the
CPU and the GPU (``device``), over class folders, a file list and tar shards: what a batch holds, sharding over
ranks, and exact resume from a ``state_dict()`` taken mid-epoch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import host, skip_without_gpu, write_jpeg_tree

pytest.importorskip("torchdata", reason="the dynamic extra (pip install 'dali-cutmix[dynamic]') is not installed")

BATCH, CROP, CLASSES, PER_CLASS = 4, 24, 3, 7  # 21 samples: shards of 10 and 11, short last batches


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same 21 images as a class-folder tree, a DALI file list and tar shards."""
    from dali_cutmix.pipelines.shard_writer import shard_data

    root = tmp_path_factory.mktemp("dynamic")
    tree = write_jpeg_tree(root / "tree", classes=CLASSES, per_class=PER_CLASS)
    lines = [f"{path.relative_to(tree).as_posix()} {c}" for c, folder in enumerate(sorted(tree.iterdir()))
             for path in sorted(folder.iterdir())]
    (tree / "list.txt").write_text("\n".join(lines) + "\n")
    shard_data(tree, root / "shards", shard_size="8KB", jobs=1, seed=3, show_progress=False)
    return {"folder": tree, "file-list": tree / "list.txt", "shards": root / "shards"}


def loader(data, device, **kwargs):
    from dali_cutmix.dynamic_nodes import training_loader

    skip_without_gpu(device)
    options = dict(batch_size=BATCH, crop=CROP, device=device, num_threads=2, seed=4,
                   mix_options=dict(cutmix_alpha=1.0, mixup_alpha=0.5, mode="elem"))
    return training_loader(data, **{**options, **kwargs})


def batches(it, count=None):
    """Host copies of the next ``count`` batches of ``it`` (all of them when None)."""
    out = []
    for images, targets in it:
        out.append((host(images), host(targets)))
        if count is not None and len(out) == count:
            break
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for (images_a, targets_a), (images_b, targets_b) in zip(a, b):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(targets_a, targets_b)


@pytest.mark.parametrize("kind", ["folder", "file-list", "shards"])
def test_an_epoch_is_the_ranks_shard_mixed_and_normalized(sources, kind, device):
    shards = [batches(loader(sources[kind], device, shard_id=rank, num_shards=2)) for rank in (0, 1)]
    for rank, epoch in enumerate(shards):
        sizes = [len(images) for images, _ in epoch]
        assert sizes == ([4, 4, 2] if rank == 0 else [4, 4, 3]), "DALI's cut of 21 samples, the padding dropped"
        for images, targets in epoch:
            assert images.dtype == np.float32 and images.shape[1:] == (3, CROP, CROP)
            assert targets.dtype == np.float32 and targets.shape[1:] == (CLASSES,)
            np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)
            # normalized with ImageNet's mean and std: (0 - 0.485) / 0.229 = -2.12 to (1 - 0.406) / 0.225 = 2.64
            assert -2.2 <= images.min() < -1 and 1.5 < images.max() <= 2.7
        assert any((t.max(1) < 1).any() for _, t in epoch), "some labels are mixed"
    assert not np.array_equal(shards[0][0][0], shards[1][0][0]), "ranks read different samples"


def test_the_tensors_are_on_the_device(sources, device):
    images, targets = next(iter(loader(sources["folder"], device)))
    expected = torch.device("cuda", 0) if device == "gpu" else torch.device("cpu")
    assert images.device == expected and targets.device == expected


@pytest.mark.parametrize("kind, stop", [("folder", 2), ("file-list", 5), ("shards", 3), ("folder", 6), ("shards", 8)],
                         ids=["folder-2", "file-list-5", "shards-3", "folder-epoch-end", "shards-second-epoch"])
def test_resume_mid_epoch_yields_the_uninterrupted_batches(sources, kind, stop, device):
    """state_dict() after ``stop`` batches (6 an epoch), through JSON, into a new graph: the batches that follow
    are those of the uninterrupted run, to the end of the second epoch."""
    whole = loader(sources[kind], device)
    expected = batches(whole) + batches(whole)  # two epochs
    assert len(expected) == 12

    first, seen = loader(sources[kind], device), []
    while len(seen) < stop:
        seen += batches(first, count=min(stop - len(seen), 6))
    state = json.loads(json.dumps(first.state_dict()))
    del first

    resumed = loader(sources[kind], device)
    resumed.load_state_dict(state)
    rest = batches(resumed)
    if stop < 6:
        rest += batches(resumed)  # the first epoch's rest, then the second epoch
    assert_same(seen + rest, expected)


def test_the_same_seed_gives_the_same_epochs_another_seed_others(sources, device):
    a, b, c = (batches(loader(sources["folder"], device, seed=s)) for s in (4, 4, 5))
    assert_same(a, b)
    assert not np.array_equal(a[0][0], c[0][0])


def test_without_mixing_the_labels_are_smoothed_one_hots(sources, device):
    epoch = batches(loader(sources["folder"], device, mixing=False, mix_options=dict(label_smoothing=0.3)))
    targets = np.concatenate([t for _, t in epoch])
    assert len(targets) == 3 * PER_CLASS
    np.testing.assert_allclose(np.unique(targets), [0.1, 0.8], rtol=1e-6)  # eps / C and 1 - eps + eps / C
    assert np.bincount(targets.argmax(1)).tolist() == [PER_CLASS] * CLASSES, "every sample once, its own class"


def test_a_bad_argument_is_named(sources):
    from dali_cutmix.errors import UserError

    with pytest.raises(UserError, match=r"^shard_id must be in \[0, num_shards=2\), got 2$"):
        loader(sources["folder"], "cpu", shard_id=2, num_shards=2)


def test_without_torchdata_the_message_says_what_to_install(tmp_path):
    """A ``torchdata`` that cannot be imported (a stand-in package that raises ModuleNotFoundError as a missing
    one does): one UserError line naming the extra."""
    fake = tmp_path / "torchdata"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torchdata'\", "
                                      "name='torchdata')\n")
    code = ("from dali_cutmix.errors import UserError\n"
            "try:\n    import dali_cutmix.dynamic_nodes\nexcept UserError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1], env={"PYTHONPATH": f"{tmp_path}:."})
    assert result.stdout.strip() == ("the DALI Dynamic training input's torchdata.nodes graph needs torchdata, which "
                                     "is not installed: pip install 'dali-cutmix[dynamic]'"), result.stderr


def test_mixing_turns_off_from_the_off_epoch(sources, device):
    """``mix_off_epoch=1``: epoch 1 is mixed, epoch 2 has one-hot labels (the gate's 0), as the pipeline's."""
    it = loader(sources["folder"], device, mix_off_epoch=1)
    first, second = (np.concatenate([t for _, t in batches(it)]) for _ in range(2))
    assert (first.max(1) < 1).any()
    np.testing.assert_array_equal(np.sort(second, 1)[:, -1], 1.0)
