"""MixUp, CutMix/MixUp switching and the mixing schedule (timm's Mixup semantics), on pipelines on the CPU and on
the GPU (``device``)."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import device_id, host, skip_without_gpu
from scipy import stats
from stage_pipelines import H, W, gpu_graph_stage, run, stage_pipeline

from dali_cutmix import CutMixLoader, MixOptions, build_cutmix_pipeline, mix, mixup
from dali_cutmix.errors import UserError

BOTH = dict(num_classes=4, cutmix_alpha=1.0, mixup_alpha=0.8)


def check_mix_batch(source, mixed, targets, labels, perm, box, lam, method, *, num_classes=4, smoothing=0.0):
    """Pixels (MixUp within uint8 rounding), labels and lam of one batch against the reference (images of any
    size and dtype)."""
    height, width = source.shape[1:3]
    expected = ref.mix_pixels(source, perm, box, method, lam)
    diff = np.abs(mixed.astype(int) - expected.astype(int))
    assert diff.max() <= 1, "within uint8 rounding"
    assert (diff[method != 2] == 0).all(), "CutMix and unmixed samples are exact"
    assert (box[method != 1] == 0).all()
    cut = method == 1
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    np.testing.assert_allclose(lam[cut], 1 - area[cut] / (height * width), atol=1e-6)
    assert (lam[method == 0] == 1).all()
    np.testing.assert_allclose(targets, ref.soft_labels(labels, perm, lam, num_classes, smoothing), atol=1e-6)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("stage, options", [(mixup, dict(alpha=0.4)),
                                            (gpu_graph_stage, dict(cutmix_alpha=0.0, mixup_alpha=0.4))],
                         ids=["native", "gpu-graph"])
@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_mixup_pixels_and_labels_match_reference(jpeg_tree, mode, stage, options, device):
    pipe = stage_pipeline(jpeg_tree, device=device, stage=stage, num_classes=4, mode=mode, **options)
    for _ in range(3):
        source, mixed, targets, labels, perm, box, lam, method = run(pipe)
        assert set(method.tolist()) <= {2} and (mixed != source).any()
        check_mix_batch(source, mixed, targets, labels, perm, box, lam, method)


@pytest.mark.parametrize("stage", [mix, gpu_graph_stage], ids=["native", "gpu-graph"])
@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_switching_cutmix_and_mixup_matches_reference(jpeg_tree, mode, stage, device):
    pipe = stage_pipeline(jpeg_tree, device=device, stage=stage, batch_size=12, mode=mode, label_smoothing=0.1, **BOTH)
    methods = set()
    for _ in range(4):
        out = run(pipe)
        check_mix_batch(*out, smoothing=0.1)
        methods |= set(out[-1].tolist())
    assert {1, 2} <= methods


def test_switch_frequency_matches_switch_prob_per_sample(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, stage=mix, batch_size=24, mode="elem", switch_prob=0.3, **BOTH)
    method = np.concatenate([run(pipe)[-1] for _ in range(20)])
    assert set(method.tolist()) <= {1, 2}
    assert stats.binomtest(int((method == 1).sum()), len(method), 0.3).pvalue > 1e-3


def test_switch_frequency_matches_switch_prob_per_batch(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, stage=mix, batch_size=2, mode="batch", switch_prob=0.7, **BOTH)
    per_batch = []
    for _ in range(200):
        method = run(pipe)[-1]
        assert (method == method[0]).all()
        per_batch.append(method[0])
    assert stats.binomtest(int(np.sum(np.array(per_batch) == 1)), 200, 0.7).pvalue > 1e-3


def test_pair_mode_is_symmetric(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, stage=mix, batch_size=11, mode="pair", **BOTH)
    for _ in range(4):
        source, mixed, targets, labels, perm, box, lam, method = run(pipe)
        np.testing.assert_array_equal(perm[perm], np.arange(11))  # an involution: i <-> perm[i]
        fixed = np.flatnonzero(perm == np.arange(11))
        assert len(fixed) == 1 and method[fixed[0]] == 0, "the odd one out is not mixed"
        for i in range(11):
            j = perm[i]
            assert method[i] == method[j] and lam[i] == lam[j] and (box[i] == box[j]).all()
            np.testing.assert_allclose(targets[i] + targets[j], np.eye(4)[labels[i]] + np.eye(4)[labels[j]],
                                       atol=1e-6)
            if method[i] == 1:
                y0, x0, y1, x1 = box[i]
                np.testing.assert_array_equal(mixed[i, y0:y1, x0:x1], source[j, y0:y1, x0:x1])
                np.testing.assert_array_equal(mixed[j, y0:y1, x0:x1], source[i, y0:y1, x0:x1])


def test_label_weights_match_timms_formulas(jpeg_tree, device):
    """Over many samples, the own-label weight's distribution equals timm's Mixup (per-element) formulas."""
    options = dict(cutmix_alpha=1.0, mixup_alpha=0.8, switch_prob=0.5, prob=0.8)
    pipe = stage_pipeline(jpeg_tree, device=device, stage=mix, batch_size=24, mode="elem", num_classes=4,
                          size=(32, 32), seed=11,
                          **options)
    ours = np.concatenate([run(pipe)[6] for _ in range(30)])
    theirs = ref.timm_label_weights(np.random.default_rng(0), 8000, height=32, width=32, **options)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert abs(np.mean(ours == 1) - np.mean(theirs == 1)) < 0.05  # the unmixed share (prob 0.8)
    other = ref.timm_label_weights(np.random.default_rng(1), 8000, height=32, width=32,
                                   **{**options, "mixup_alpha": 0.2})
    assert stats.ks_2samp(ours, other).pvalue < 1e-3, "the test tells a different recipe apart"


@pytest.mark.parametrize("options, message", [
    (dict(cutmix_alpha=0.0, mixup_alpha=0.0), "nothing to mix"),
    (dict(mixup_alpha=-0.2), "mixup_alpha must be >= 0"),
    (dict(switch_prob=1.2), "switch_prob must be in [0, 1]"),
    (dict(cutmix_minmax=(0.5, 0.2)), "cutmix_minmax must satisfy 0 < lo <= hi <= 1"),
    (dict(minmax=(0.2, 0.5)), "unknown mixing option(s) ['minmax']"),
])
def test_bad_mix_options_name_the_argument(jpeg_tree, options, message, device):
    with pytest.raises(UserError) as err:
        stage_pipeline(jpeg_tree, device=device, stage=mix, num_classes=4, **options)
    assert message in str(err.value)


def test_mixing_turns_off_from_the_off_epoch_and_resumes_gated(jpeg_tree, device):
    skip_without_gpu(device)
    options = dict(batch_size=5, device=device, crop=32, num_threads=2, mix_off_epoch=2, return_params=True,
                   mix_options=dict(mode="elem", mixup_alpha=0.5, label_smoothing=0.1), enable_checkpointing=True)
    loader = CutMixLoader(build_cutmix_pipeline(jpeg_tree, **options))
    for epoch in range(2):
        methods = np.concatenate([host(batch[5]) for batch in loader])
        assert (methods != 0).all(), f"epoch {epoch} mixes"
    state = loader.checkpoint()
    for epoch in range(2, 4):
        for images, targets, perm, box, lam, method, class_id in loader:
            assert (method == 0).all() and (box == 0).all() and (lam == 1).all()
            expected = 0.025 + 0.9 * np.eye(4)[host(class_id).reshape(-1)]
            np.testing.assert_allclose(host(targets), expected, atol=1e-6)
    resumed = CutMixLoader(build_cutmix_pipeline(jpeg_tree, checkpoint=state, **options))
    assert all((batch[5] == 0).all() for batch in resumed), "a resumed run stays gated"


def test_mix_off_epoch_must_be_an_epoch_from_1(jpeg_tree, device):
    with pytest.raises(UserError, match=r"mix_off_epoch must be an integer >= 1 \(epochs 1..N are mixed"):
        build_cutmix_pipeline(jpeg_tree, batch_size=2, device=device, mix_off_epoch=-1)


def gated_pipeline(gate, *, stage=mix, batch_size=8, num_classes=4, seed=1, device="cpu", **options):
    """A built pipeline on ``device`` over fixed random images (H, W, 3) and labels ``i % num_classes``, with the
    per-sample ``gate``; outputs (source, mixed, targets, labels, perm, box, lam, method) like
    :func:`stage_pipelines.run`."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(batch_size)]
    labels = [np.array(i % num_classes, np.int32) for i in range(batch_size)]
    gates = [np.array(g, np.int32) for g in gate]
    skip_without_gpu(device)

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=device_id(device), seed=seed)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC", device=device)
        y = fn.external_source(source=lambda: labels, batch=True)
        g = fn.external_source(source=lambda: gates, batch=True)
        mixed, targets, params = stage(x, y, num_classes=num_classes, gate=g, return_params=True, **options)
        return (x, mixed, targets, y, *params.values())

    p = pipe()
    p.build()
    return p


PADDED_GATE = [1, -1, 1, 1, -1, 0, 1, -1]  # padding anywhere, not only at the end; one sample gated off


@pytest.mark.parametrize("stage", [mix, gpu_graph_stage], ids=["native", "gpu-graph"])
@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_padding_is_never_a_partner_and_is_not_mixed(mode, stage, device):
    """Gate -1 (the reader's padding): never anyone's partner, never mixed; partners, pairs and draws are over the
    other samples; gate 0 leaves a real sample unmixed (it may still be a partner outside pair mode)."""
    gate = np.array(PADDED_GATE)
    pad, real = np.flatnonzero(gate == -1), np.flatnonzero(gate != -1)
    pipe = gated_pipeline(PADDED_GATE, device=device, stage=stage, mode=mode, mixup_alpha=0.5, label_smoothing=0.1)
    mixed_real = 0
    for _ in range(8):
        source, mixed, targets, labels, perm, box, lam, method = run(pipe)
        assert set(perm[real].tolist()) <= set(real.tolist()), perm
        assert perm[pad].tolist() == pad.tolist() and (method[pad] == 0).all() and (method[gate == 0] == 0).all()
        if mode == "pair":
            np.testing.assert_array_equal(perm[perm], np.arange(8))
            assert (method[perm[gate == 0]] == 0).all(), "a gated pair is unmixed on both sides"
        else:
            assert sorted(perm[real].tolist()) == real.tolist(), "a permutation of the real samples"
        check_mix_batch(source, mixed, targets, labels, perm, box, lam, method, smoothing=0.1)
        np.testing.assert_array_equal(mixed[pad], source[pad])
        mixed_real += int((method[real] != 0).sum())
    assert mixed_real > 0


def test_a_batch_of_padding_only_is_left_as_it_is(device):
    source, mixed, targets, labels, perm, box, lam, method = run(gated_pipeline([-1] * 8, device=device))
    np.testing.assert_array_equal(mixed, source)
    assert perm.tolist() == list(range(8)) and (method == 0).all()
    np.testing.assert_array_equal(targets, np.eye(4)[labels])


@pytest.mark.parametrize("stage", [mix, gpu_graph_stage], ids=["native", "gpu-graph"])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_without_self_pairs_every_partner_is_another_sample(mode, stage, device):
    pipe = gated_pipeline([1] * 5, device=device, stage=stage, batch_size=5, mode=mode, self_pairs=False)
    cycles = []
    for _ in range(60):
        source, mixed, targets, labels, perm, box, lam, method = run(pipe)
        assert sorted(perm.tolist()) == list(range(5)) and (perm != np.arange(5)).all()
        assert (method == 1).all()
        check_mix_batch(source, mixed, targets, labels, perm, box, lam, method)
        cycles.append(tuple(perm))
    assert len(set(cycles)) > 10, "a random derangement (44 of them for 5 samples)"


def test_derangements_are_uniform(device):
    """3 samples have 2 derangements, (1, 2, 0) and (2, 0, 1): drawn alike."""
    pipe = gated_pipeline([1] * 3, device=device, batch_size=3, mode="elem", self_pairs=False)
    first = [tuple(run(pipe)[4]) == (1, 2, 0) for _ in range(300)]
    assert stats.binomtest(sum(first), 300, 0.5).pvalue > 1e-3


def test_without_self_pairs_a_lone_sample_is_not_mixed(device):
    source, mixed, targets, labels, perm, box, lam, method = run(
        gated_pipeline([-1, -1, 1, -1], device=device, batch_size=4, mode="elem", self_pairs=False))
    assert perm.tolist() == [0, 1, 2, 3] and (method == 0).all() and (lam == 1).all()
    np.testing.assert_array_equal(mixed, source)


MIX_DTYPES = {"uint8": "UINT8", "int16": "INT16", "float32": "FLOAT"}  # every input dtype the stage takes


@pytest.mark.parametrize("dtype", MIX_DTYPES)
@pytest.mark.parametrize("crop", [224, 176])
def test_training_crops_and_every_input_dtype_match_reference(jpeg_tree, crop, dtype, device):
    """Crop 224 (ImageNet's) and 176 (torchvision's v2 recipe; a width where DALI's GPU paste kernel's first loop
    may run past its table, issue 18.5), CutMix and MixUp switching per sample, on images of each dtype the stage
    takes: the output keeps the dtype, CutMix pixels are exact and MixUp's within rounding."""
    from nvidia.dali import types

    pipe = stage_pipeline(jpeg_tree, device=device, stage=mix, batch_size=6, mode="elem", size=(crop, crop),
                          dtype=getattr(types, MIX_DTYPES[dtype]), **BOTH)
    methods = set()
    for _ in range(3):
        out = run(pipe)
        assert out[0].dtype == out[1].dtype == np.dtype(dtype) and out[1].shape == (6, crop, crop, 3)
        check_mix_batch(*out)
        methods |= set(out[-1].tolist())
    assert {1, 2} <= methods, "both CutMix and MixUp samples were checked"


def test_self_pairs_must_be_a_bool():
    with pytest.raises(UserError, match=r"^self_pairs must be True or False, got 'no'$"):
        MixOptions(self_pairs="no")
