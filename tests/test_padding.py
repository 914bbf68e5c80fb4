"""The reader's padding of a shard's last batch is never a partner and is not mixed (issue 10, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import host, write_jpeg_tree

from dali_cutmix import CutMixLoader, build_cutmix_pipeline
from dali_cutmix.builder import shard_size

NUM_CLASSES = 26


@pytest.fixture
def on(device):
    """The builder's arguments for this test's device (the GPU case skipped with its reason without one)."""
    return dict(device=device, num_threads=2, crop=16)


@pytest.fixture(scope="module")
def one_per_class(tmp_path_factory):
    """26 classes with one image each: a class id names its sample."""
    return write_jpeg_tree(tmp_path_factory.mktemp("pad") / "train", classes=NUM_CLASSES, per_class=1)


def test_shard_sizes_are_dalis():
    assert [shard_size(26, 3, s) for s in range(3)] == [8, 9, 9]
    assert [shard_size(26, 2, s) for s in range(2)] == [13, 13]
    assert sum(shard_size(1001, 7, s) for s in range(7)) == 1001


@pytest.mark.parametrize("mode", ["elem", "batch", "pair"])
@pytest.mark.parametrize("num_shards", [2, 3])
def test_partners_labels_and_pixels_of_partial_batches(one_per_class, num_shards, mode, on):
    """Several epochs, every shard, 26 samples in batches of 4: the last batch of a shard holds 1 (2 shards) or
    0 or 1 (3 shards) samples. Every partner is a returned sample, soft labels name returned samples only, and the
    pixels are the reference's."""
    sizes = []
    for shard in range(num_shards):
        common = dict(batch_size=4, shard_id=shard, num_shards=num_shards, seed=3, **on)
        mixed = CutMixLoader(build_cutmix_pipeline(one_per_class, stop_after="mix", return_params=True,
                                                   mix_options=dict(mode=mode, switch_prob=0.5, mixup_alpha=0.0),
                                                   **common))
        source = CutMixLoader(build_cutmix_pipeline(one_per_class, stop_after="crop", **common))
        for epoch in range(3):
            batches = list(mixed)
            crops = list(source)
            assert len(batches) == len(crops) == len(mixed)
            sizes.append([len(b[0]) for b in batches])
            for (images, targets, perm, box, lam, method, class_id), (crop, crop_id) in zip(batches, crops):
                images, targets, perm, box, lam, method = (host(t) for t in (images, targets, perm, box, lam, method))
                n = len(images)
                ids = host(class_id).reshape(-1)
                np.testing.assert_array_equal(ids, host(crop_id).reshape(-1))
                assert ((0 <= perm) & (perm < n)).all(), f"a partner outside the {n} returned samples: {perm}"
                named = set(np.flatnonzero(targets.sum(0) > 0).tolist())
                assert named <= set(ids.tolist()), "soft labels name returned samples only"
                np.testing.assert_array_equal(images, ref.mix_pixels(host(crop), perm, box, method, lam))
                np.testing.assert_allclose(targets, ref.soft_labels(ids, perm, lam, NUM_CLASSES), atol=1e-6)
                if mode == "pair":
                    np.testing.assert_array_equal(perm[perm], np.arange(n))
    expected = {2: [4, 4, 4, 1], 3: None}[num_shards]
    if expected is not None:
        assert all(s == expected for s in sizes)
    else:  # shards of 8, 9, 9 in 3 batches each; the iterator moves a pipeline to the next shard every epoch
        assert sorted(map(tuple, sizes)) == sorted([(4, 4, 0)] * 3 + [(4, 4, 1)] * 6)


def test_padding_returned_by_fill_is_not_mixed(one_per_class, on):
    loader = CutMixLoader(build_cutmix_pipeline(one_per_class, batch_size=4, return_params=True, stop_after="mix",
                                                mix_options=dict(mode="elem"), **on), last_batch="fill")
    *_, (images, targets, perm, box, lam, method, class_id) = list(loader)
    assert len(images) == 4  # 26 = 6 * 4 + 2: two samples and two copies of the last one
    assert method[2:].tolist() == [0, 0] and perm[2:].tolist() == [2, 3] and (perm[:2] < 2).all()
    np.testing.assert_array_equal(host(targets[2:]), np.eye(NUM_CLASSES)[host(class_id).reshape(-1)[2:]])


def test_a_checkpoint_resumes_exactly_across_padded_batches(one_per_class, on):
    options = dict(batch_size=4, num_shards=2, shard_id=1, mix_options=dict(mode="elem"), return_params=True,
                   stop_after="mix", enable_checkpointing=True, mix_off_epoch=2, **on)
    loader = CutMixLoader(build_cutmix_pipeline(one_per_class, **options))
    list(loader)
    it = iter(loader)
    next(it)
    state = loader.checkpoint()
    expected = list(it) + list(loader) + list(loader)
    resumed = CutMixLoader(build_cutmix_pipeline(one_per_class, checkpoint=state, **options))
    got = list(resumed) + list(resumed) + list(resumed)
    assert [len(b[0]) for b in got] == [len(b[0]) for b in expected] == [4, 4, 1] + [4, 4, 4, 1] * 2
    for a, b in zip(expected, got):
        for x, y in zip(a, b):
            assert np.array_equal(host(x), host(y))
    assert all((b[5] == 0).all() for b in got[-4:]), "mix_off_epoch=2 closes the gate in the third epoch"
