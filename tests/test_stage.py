"""The CutMix stage on real DALI pipelines, on the CPU and on the GPU (``device``), checked pixel for pixel
against the NumPy reference applied to the stage's own inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import reference as ref
from conftest import decoder_device, device_id, skip_without_gpu
from scipy import stats
from stage_pipelines import H, W, gpu_graph_stage, run, stage_pipeline

from dali_cutmix import cutmix, mix
from dali_cutmix.errors import UserError


def gpu_graph_cutmix(images, labels, *, num_classes, return_params=True, **options):
    """:func:`gpu_graph_stage` with CutMix only; returns perm, box and lam like :func:`dali_cutmix.cutmix`."""
    mixed, targets, params = gpu_graph_stage(images, labels, num_classes=num_classes, **options)
    return mixed, targets, {n: params[n] for n in ("perm", "box", "lam")}


def check_batch(source, mixed, targets, labels, perm, box, lam, *, num_classes=4, smoothing=0.0):
    """Everything a user relies on for one CutMix batch, against the reference (images of any size and dtype)."""
    n, height, width = source.shape[:3]
    assert sorted(perm.tolist()) == list(range(n)), "perm is a permutation of the batch"
    assert mixed.shape == source.shape and mixed.dtype == source.dtype
    np.testing.assert_array_equal(mixed, ref.mix_pixels(source, perm, box, np.ones(n), lam))
    y0, x0, y1, x1 = box.T
    assert ((0 <= y0) & (y0 <= y1) & (y1 <= height) & (0 <= x0) & (x0 <= x1) & (x1 <= width)).all()
    np.testing.assert_allclose(lam, 1 - (y1 - y0) * (x1 - x0) / (height * width), rtol=0, atol=1e-6)
    assert targets.dtype == np.float32 and targets.shape == (n, num_classes)
    np.testing.assert_allclose(targets, ref.soft_labels(labels, perm, lam, num_classes, smoothing), atol=1e-6)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("stage", [cutmix, gpu_graph_cutmix], ids=["native", "gpu-graph"])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_pixels_lam_and_labels_match_reference(jpeg_tree, mode, stage, device):
    pipe = stage_pipeline(jpeg_tree, device=device, mode=mode, num_classes=4, stage=stage)
    mixed_pixels = 0
    for _ in range(4):
        source, mixed, targets, labels, perm, box, lam = run(pipe)
        check_batch(source, mixed, targets, labels, perm, box, lam)
        mixed_pixels += int((mixed != source).sum())
    assert mixed_pixels > 0, "alpha=1, prob=1: some pixels must come from partners"


def test_batch_mode_shares_one_box_elem_mode_does_not(jpeg_tree, device):
    batch = stage_pipeline(jpeg_tree, device=device, mode="batch", num_classes=4)
    elem = stage_pipeline(jpeg_tree, device=device, mode="elem", num_classes=4)
    for _ in range(3):
        _, _, _, _, _, box, lam = run(batch)
        assert (box == box[0]).all() and (lam == lam[0]).all()
    distinct = set()
    for _ in range(3):
        _, _, _, _, _, box, lam = run(elem)
        distinct |= {tuple(b) for b in box}
        assert len(set(lam.tolist())) > 1
    assert len(distinct) > 8


def test_label_smoothing_is_applied_before_mixing(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, mode="elem", num_classes=10, label_smoothing=0.1)
    source, mixed, targets, labels, perm, box, lam = run(pipe)
    check_batch(source, mixed, targets, labels, perm, box, lam, num_classes=10, smoothing=0.1)
    assert targets.min() == pytest.approx(0.01)


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_prob_zero_leaves_images_and_one_hot_labels(jpeg_tree, mode, device):
    pipe = stage_pipeline(jpeg_tree, device=device, mode=mode, num_classes=4, prob=0.0)
    for _ in range(2):
        source, mixed, targets, labels, perm, box, lam = run(pipe)
        np.testing.assert_array_equal(mixed, source)
        np.testing.assert_array_equal(targets, np.eye(4, dtype=np.float32)[labels])
        assert (box == 0).all() and (lam == 1).all()


def test_prob_is_a_per_sample_coin_in_elem_mode(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, batch_size=24, mode="elem", num_classes=4, prob=0.5)
    mixed = np.concatenate([(run(pipe)[5] != 0).any(1) for _ in range(10)])
    assert stats.binomtest(int(mixed.sum()), len(mixed), 0.5).pvalue > 1e-3


def test_batch_size_one(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, batch_size=1, num_classes=4)
    source, mixed, targets, labels, perm, box, lam = run(pipe)
    assert perm.tolist() == [0]
    np.testing.assert_array_equal(mixed, source)  # a sample mixed with itself is itself
    np.testing.assert_allclose(targets, np.eye(4)[labels], atol=1e-6)


def test_lam_distribution_matches_the_official_algorithm(jpeg_tree, device):
    """Two-sample KS test: per-sample corrected lams from the stage vs the official loop's (NumPy)."""
    pipe = stage_pipeline(jpeg_tree, device=device, batch_size=24, mode="elem", num_classes=4, size=(32, 32), seed=7)
    ours = np.concatenate([run(pipe)[6] for _ in range(25)])
    theirs = ref.official_lams(np.random.default_rng(0), 4000, 32, 32)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    # and a distribution that is not the official one is told apart by the same test
    assert stats.ks_2samp(ours, np.random.default_rng(1).beta(1, 1, 4000)).pvalue < 1e-3


def test_batch_mode_lam_distribution_matches_the_official_algorithm(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, batch_size=2, mode="batch", num_classes=4, size=(16, 16), seed=3)
    ours = np.array([run(pipe)[6][0] for _ in range(400)])
    theirs = ref.official_lams(np.random.default_rng(0), 4000, 16, 16)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


def test_minmax_boxes_are_inside_with_sides_in_range(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, batch_size=24, mode="elem", num_classes=4, minmax=(0.2, 0.6))
    lams = []
    for _ in range(10):
        source, mixed, targets, labels, perm, box, lam = run(pipe)
        check_batch(source, mixed, targets, labels, perm, box, lam)
        hs, ws = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        assert ((int(H * 0.2) <= hs) & (hs <= int(H * 0.6))).all()
        assert ((int(W * 0.2) <= ws) & (ws <= int(W * 0.6))).all()
        lams.append(lam)
    theirs = ref.minmax_lams(np.random.default_rng(0), 4000, H, W, 0.2, 0.6)
    assert stats.ks_2samp(np.concatenate(lams), theirs).pvalue > 1e-3


def test_correct_lam_false_reports_the_drawn_lam(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, batch_size=24, mode="elem", num_classes=4, correct_lam=False,
                          alpha=0.5)
    lams = []
    for _ in range(10):
        source, mixed, targets, labels, perm, box, lam = run(pipe)
        np.testing.assert_array_equal(mixed, ref.mix_pixels(source, perm, box, np.ones(24), lam))
        np.testing.assert_allclose(targets, ref.soft_labels(labels, perm, lam, 4), atol=1e-6)
        lams.append(lam)
    assert stats.ks_2samp(np.concatenate(lams), np.random.default_rng(0).beta(0.5, 0.5, 4000)).pvalue > 1e-3


def test_same_seed_same_batches_other_seed_other_batches(jpeg_tree, device):
    a, b, c = (stage_pipeline(jpeg_tree, device=device, mode="elem", num_classes=4, seed=s) for s in (5, 5, 6))
    for _ in range(2):
        ra, rb, rc = run(a), run(b), run(c)
        for x, y in zip(ra, rb):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(ra[5], rc[5])


@pytest.mark.parametrize("options, message", [
    (dict(mode="pairs"), "mode must be one of"),
    (dict(alpha=0.0), "nothing to mix: alpha is 0"),
    (dict(alpha=-1.0), "alpha must be >= 0"),
    (dict(prob=1.5), "prob must be in [0, 1]"),
    (dict(prob=-0.1), "prob must be in [0, 1]"),
    (dict(num_classes=0), "num_classes must be an integer >= 1"),
    (dict(label_smoothing=1.0), "label_smoothing must be in [0, 1)"),
    (dict(label_smoothing=-0.1), "label_smoothing must be in [0, 1)"),
    (dict(alpha=float("nan")), "alpha must be a finite number"),
    (dict(correct_lam="yes"), "correct_lam must be True or False"),
    (dict(minmax=(0.0, 0.5)), "minmax must satisfy 0 < lo <= hi <= 1"),
    (dict(minmax=(0.6, 0.5)), "minmax must satisfy 0 < lo <= hi <= 1"),
    (dict(minmax=(0.2, 1.5)), "minmax must satisfy 0 < lo <= hi <= 1"),
    (dict(minmax=0.5), "minmax must be a pair"),
])
def test_bad_options_name_the_argument(jpeg_tree, options, message, device):
    options = {"num_classes": 4, **options}
    with pytest.raises(UserError) as err:
        stage_pipeline(jpeg_tree, device=device, **options)
    assert message in str(err.value)
    assert "cutmix_alpha" not in str(err.value) and "cutmix_minmax" not in str(err.value), "cutmix()'s names"


def test_images_of_different_sizes_are_refused(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, num_classes=4, resize=False)
    with pytest.raises(RuntimeError, match="must all have one size"):
        pipe.run()


def test_labels_outside_num_classes_are_refused(jpeg_tree, device):
    pipe = stage_pipeline(jpeg_tree, device=device, num_classes=2, batch_size=24)
    with pytest.raises(RuntimeError, match=r"labels must be in \[0, num_classes=2\)"):
        pipe.run()


def labelled_pipeline(*, batch_size=4, images_hook=None, labels=None, gate=None, num_classes=4, stage=cutmix,
                      reader=False, device="cpu"):
    """A built pipeline on ``device`` over fixed arrays: 4 HWC uint8 images of (H, W, 3), ``images_hook`` applied,
    integer labels 0..3 (or ``labels``, a list of arrays), an optional ``gate`` (a list of arrays); outputs the stage's.
    ``reader``: images come from a file reader named "Reader" (for :class:`CutMixLoader`) instead."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(batch_size)]
    label_arrays = labels or [np.array(i % num_classes, np.int32) for i in range(batch_size)]
    skip_without_gpu(device)

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=device_id(device), seed=2)
    def pipe():
        images = fn.external_source(source=lambda: arrays, batch=True, layout="HWC", device=device)
        y = fn.external_source(source=lambda: label_arrays, batch=True)
        if images_hook is not None:
            images = images_hook(images)
        kwargs = {} if gate is None else dict(gate=fn.external_source(source=lambda: gate, batch=True))
        return stage(images, y, num_classes=num_classes, **kwargs)

    p = pipe()
    p.build()
    return p


CHANNELS_FIRST = (f"images reaching the cutmix stage must be HWC with 1 to 4 channels, got shape (3, {H}, {W}): "
                  f"they look channels-first (CHW); mix them before transposing or normalizing them")


def test_channels_first_images_are_refused(device):
    """Issue 10.1: a transpose to CHW before the stage used to paste across channels and keep 0.5/0.5 labels."""
    import nvidia.dali.fn as fn

    pipe = labelled_pipeline(device=device, images_hook=lambda x: fn.transpose(x, perm=[2, 0, 1]))
    with pytest.raises(RuntimeError) as err:
        pipe.run()
    assert "[dali-cutmix] " + CHANNELS_FIRST in str(err.value)


@pytest.mark.one_device("the layout is read by the CPU stage's own pixel operator (DaliCutmixApply), which the GPU "
                        "path does not have; the refusal both devices share is test_channels_first_images_are_refused")
def test_a_channels_first_layout_is_refused_on_the_cpu():
    """Images whose layout says CHW, whatever their shape: the CPU operator reads the layout."""
    import nvidia.dali.fn as fn

    pipe = labelled_pipeline(images_hook=lambda x: fn.reshape(x, layout="CHW"))
    with pytest.raises(RuntimeError) as err:
        pipe.run()
    assert ("[dali-cutmix] images reaching the cutmix stage must be HWC, got layout CHW: they are channels-first; "
            "mix them before transposing or normalizing them") in str(err.value)


@pytest.mark.parametrize("what", ["labels", "gate"])
def test_float_labels_or_gate_are_named_with_their_dtype(what, device):
    floats = [np.array(1.0, np.float32)] * 4
    if what == "gate":
        pipe = labelled_pipeline(device=device, stage=mix, gate=floats)
    else:
        pipe = labelled_pipeline(device=device, labels=floats)
    name = "labels" if what == "labels" else "the mixing gate's values"
    with pytest.raises(RuntimeError) as err:
        pipe.run()
    assert (f"[dali-cutmix] {name} must be integers, got dtype float32 (cast them, e.g. "
            f"fn.cast(x, dtype=types.INT32))") in str(err.value)


def test_a_gate_value_other_than_1_0_or_minus_1_is_refused(device):
    pipe = labelled_pipeline(device=device, stage=mix, gate=[np.array(v, np.int32) for v in (1, 0, 2, -1)])
    with pytest.raises(RuntimeError, match=r"the mixing gate must be one value per sample, 1 \(mix\), 0 \(do not "
                                           r"mix\) or -1 \(padding\), got 2"):
        pipe.run()


def test_the_stage_outside_a_pipeline_definition_is_a_clear_type_error(device):
    """Issue 10.4: cutmix() on arrays used to fail with "'tuple' object is not callable"."""
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(TypeError) as err:
        cutmix(images, np.zeros(2, np.int32), num_classes=2)
    assert str(err.value) == ("cutmix() must be called inside a DALI pipeline definition (@pipeline_def) on "
                              "DataNodes; got images of type ndarray")
    with pytest.raises(TypeError, match=r"^mix\(\) must be called inside .* got labels of type list$"):
        labelled_pipeline(stage=lambda x, y, **kw: mix(x, [0, 1], **kw), device=device)


def test_a_data_node_outside_a_pipeline_definition_is_refused(device):
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    kept = {}

    @pipeline_def(batch_size=1, num_threads=1, device_id=device_id(device))
    def pipe():
        kept["x"] = fn.external_source(source=lambda: [np.zeros((4, 4, 3), np.uint8)], batch=True)
        return kept["x"]

    pipe()
    with pytest.raises(TypeError, match=r"^cutmix\(\) must be called inside a DALI pipeline definition "
                                        r"\(@pipeline_def\) on DataNodes$"):
        cutmix(kept["x"], kept["x"], num_classes=2)


def test_labels_on_the_gpu_are_refused(device):
    with pytest.raises(UserError, match="^labels must be a CPU DataNode"):
        labelled_pipeline(stage=lambda x, y, **kw: cutmix(x, y.gpu(), **kw), device=device)


def test_the_loader_reraises_stage_errors_as_one_line(jpeg_tree, device):
    """Issue 10.5: the stage's message is the whole, one-line error; DALI's is its cause."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from dali_cutmix import CutMixLoader

    @pipeline_def(batch_size=24, num_threads=2, device_id=device_id(device), seed=1)
    def pipe(transpose, num_classes):
        jpegs, labels = fn.readers.file(file_root=str(jpeg_tree), name="Reader", pad_last_batch=True)
        images = fn.resize(fn.decoders.image(jpegs, device=decoder_device(device)), resize_y=H, resize_x=W)
        if transpose:
            images = fn.transpose(images, perm=[2, 0, 1])
        return cutmix(images, labels, num_classes=num_classes)

    with pytest.raises(UserError) as err:
        next(iter(CutMixLoader(pipe(False, 2))))
    assert re.fullmatch(r"labels must be in \[0, num_classes=2\), got [23]", str(err.value))
    assert isinstance(err.value.__cause__, RuntimeError) and "Error in CPU operator" in str(err.value.__cause__)
    with pytest.raises(UserError) as err:
        next(iter(CutMixLoader(pipe(True, 4))))
    assert str(err.value) == CHANNELS_FIRST
