"""MixUp, CutMix/MixUp switching and the mixing schedule (timm's Mixup semantics), on CPU pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import reference as ref
from dali_cutmix import CutMixLoader, build_cutmix_pipeline, mix, mixup
from test_stage import H, W, gpu_graph_stage, run, stage_pipeline

BOTH = dict(num_classes=4, cutmix_alpha=1.0, mixup_alpha=0.8)


def check_mix_batch(source, mixed, targets, labels, perm, box, lam, method, *, num_classes=4, smoothing=0.0):
    """Pixels (MixUp within uint8 rounding), labels and lam of one batch against the reference."""
    expected = ref.mix_pixels(source, perm, box, method, lam)
    diff = np.abs(mixed.astype(int) - expected.astype(int))
    assert diff.max() <= 1, "within uint8 rounding"
    assert (diff[method != 2] == 0).all(), "CutMix and unmixed samples are exact"
    assert (box[method != 1] == 0).all()
    cut = method == 1
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    np.testing.assert_allclose(lam[cut], 1 - area[cut] / (H * W), atol=1e-6)
    assert (lam[method == 0] == 1).all()
    np.testing.assert_allclose(targets, ref.soft_labels(labels, perm, lam, num_classes, smoothing), atol=1e-6)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("stage, options", [(mixup, dict(alpha=0.4)),
                                            (gpu_graph_stage, dict(cutmix_alpha=0.0, mixup_alpha=0.4))],
                         ids=["native", "gpu-graph"])
@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_mixup_pixels_and_labels_match_reference(jpeg_tree, mode, stage, options):
    pipe = stage_pipeline(jpeg_tree, stage=stage, num_classes=4, mode=mode, **options)
    for _ in range(3):
        source, mixed, targets, labels, perm, box, lam, method = run(pipe)
        assert set(method.tolist()) <= {2} and (mixed != source).any()
        check_mix_batch(source, mixed, targets, labels, perm, box, lam, method)


@pytest.mark.parametrize("stage", [mix, gpu_graph_stage], ids=["native", "gpu-graph"])
@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_switching_cutmix_and_mixup_matches_reference(jpeg_tree, mode, stage):
    pipe = stage_pipeline(jpeg_tree, stage=stage, batch_size=12, mode=mode, label_smoothing=0.1, **BOTH)
    methods = set()
    for _ in range(4):
        out = run(pipe)
        check_mix_batch(*out, smoothing=0.1)
        methods |= set(out[-1].tolist())
    assert {1, 2} <= methods


def test_switch_frequency_matches_switch_prob_per_sample(jpeg_tree):
    pipe = stage_pipeline(jpeg_tree, stage=mix, batch_size=24, mode="elem", switch_prob=0.3, **BOTH)
    method = np.concatenate([run(pipe)[-1] for _ in range(20)])
    assert set(method.tolist()) <= {1, 2}
    assert stats.binomtest(int((method == 1).sum()), len(method), 0.3).pvalue > 1e-3


def test_switch_frequency_matches_switch_prob_per_batch(jpeg_tree):
    pipe = stage_pipeline(jpeg_tree, stage=mix, batch_size=2, mode="batch", switch_prob=0.7, **BOTH)
    per_batch = []
    for _ in range(200):
        method = run(pipe)[-1]
        assert (method == method[0]).all()
        per_batch.append(method[0])
    assert stats.binomtest(int(np.sum(np.array(per_batch) == 1)), 200, 0.7).pvalue > 1e-3


def test_pair_mode_is_symmetric(jpeg_tree):
    pipe = stage_pipeline(jpeg_tree, stage=mix, batch_size=11, mode="pair", **BOTH)
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


def test_label_weights_match_timms_formulas(jpeg_tree):
    """Over many samples, the own-label weight's distribution equals timm's Mixup (per-element) formulas."""
    options = dict(cutmix_alpha=1.0, mixup_alpha=0.8, switch_prob=0.5, prob=0.8)
    pipe = stage_pipeline(jpeg_tree, stage=mix, batch_size=24, mode="elem", num_classes=4, size=(32, 32), seed=11,
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
def test_bad_mix_options_name_the_argument(jpeg_tree, options, message):
    with pytest.raises(ValueError) as err:
        stage_pipeline(jpeg_tree, stage=mix, num_classes=4, **options)
    assert message in str(err.value)


def test_mixing_turns_off_from_the_off_epoch_and_resumes_gated(jpeg_tree):
    options = dict(batch_size=5, device="cpu", crop=32, num_threads=2, mix_off_epoch=2, return_params=True,
                   mix_options=dict(mode="elem", mixup_alpha=0.5, label_smoothing=0.1), enable_checkpointing=True)
    loader = CutMixLoader(build_cutmix_pipeline(jpeg_tree, **options))
    for epoch in range(2):
        methods = np.concatenate([batch[5].numpy() for batch in loader])
        assert (methods != 0).all(), f"epoch {epoch} mixes"
    state = loader.checkpoint()
    for epoch in range(2, 4):
        for images, targets, perm, box, lam, method, class_id in loader:
            assert (method == 0).all() and (box == 0).all() and (lam == 1).all()
            expected = 0.025 + 0.9 * np.eye(4)[class_id.reshape(-1).numpy()]
            np.testing.assert_allclose(targets.numpy(), expected, atol=1e-6)
    resumed = CutMixLoader(build_cutmix_pipeline(jpeg_tree, checkpoint=state, **options))
    assert all((batch[5] == 0).all() for batch in resumed), "a resumed run stays gated"


def test_mix_off_epoch_must_be_a_non_negative_int(jpeg_tree):
    with pytest.raises(ValueError, match="mix_off_epoch must be an integer >= 0"):
        build_cutmix_pipeline(jpeg_tree, batch_size=2, device="cpu", mix_off_epoch=-1)
