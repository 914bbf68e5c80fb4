"""The stage in DALI Dynamic mode (``dali_cutmix.dynamic``) on the CPU and on the GPU (``device``): pixels and soft
labels against the NumPy reference, seeded draws, exact agreement with pipeline mode given the same seeds, and
bad input refused before anything is returned."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from conftest import device_id, skip_without_gpu, to_numpy

from dali_cutmix import dynamic
from dali_cutmix.errors import UserError
from dali_cutmix.options import MixOptions
from dali_cutmix.stage import PARAM_NAMES, mix_stage

H, W, N, C = 24, 36, 8, 5  # not square, so that a swapped height/width would show


def host(batch) -> np.ndarray:
    """An ndd.Batch (CPU or GPU) of uniform shape as one host NumPy array, its samples stacked."""
    return np.stack([np.asarray(t) for t in batch.cpu().tensors])


def source_batches(device, *, seed=0, shape=(H, W, 3), labels=None, dtype=np.uint8):
    """N random images (ndd.Batch, HWC, on ``device``) and their labels (CPU ndd.Batch), plus the images' host
    copy."""
    import nvidia.dali.experimental.dynamic as ndd

    skip_without_gpu(device)
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, shape).astype(dtype) for _ in range(N)]
    images = ndd.batch(arrays, layout="HWC" if len(shape) == 3 else None)
    labels = ndd.batch(labels if labels is not None else [np.array(i % C, np.int32) for i in range(N)])
    return (images.gpu() if device == "gpu" else images), labels, np.stack(arrays)


def expected_pixels(source, perm, box, method, lam, device):
    """The reference's mixed images; on the GPU, MixUp's ties (a blend of exactly k + 0.5) round to even (DALI's
    GPU cast) where the reference rounds them away from zero (the CPU's)."""
    expected = ref.mix_pixels(source, perm, box, method, lam)
    if device == "gpu":
        for i in np.flatnonzero(method == 2):
            lam_i = np.float32(lam[i])
            blend = lam_i * source[i].astype(np.float32) + (np.float32(1) - lam_i) * source[perm[i]].astype(np.float32)
            expected[i] = np.clip(np.rint(blend), 0, 255).astype(source.dtype)
    return expected


def check_mixed(source, mixed, targets, labels, params, *, device, num_classes=C, smoothing=0.0):
    """Pixels exactly the sample's own outside its box and the partner's inside (MixUp: the rounded blend), lam
    the exact own-pixel share, soft labels ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``."""
    perm, box, lam = (host(params[k]) for k in ("perm", "box", "lam"))
    method = host(params["method"]) if "method" in params else np.where((box[:, 2:] > box[:, :2]).all(1), 1, 0)
    mixed, targets = host(mixed), host(targets)
    assert sorted(perm.tolist()) == list(range(len(perm))), "perm is a permutation of the batch"
    assert mixed.shape == source.shape and mixed.dtype == source.dtype
    np.testing.assert_array_equal(mixed, expected_pixels(source, perm, box, method, lam, device))
    cut = method == 1
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    np.testing.assert_allclose(lam[cut], 1 - area[cut] / (H * W), rtol=0, atol=1e-6)
    assert (box[method != 1] == 0).all() and (lam[method == 0] == 1).all()
    assert targets.dtype == np.float32 and targets.shape == (len(perm), num_classes)
    np.testing.assert_allclose(targets, ref.soft_labels(labels, perm, lam, num_classes, smoothing), atol=1e-6)
    return perm, box, lam, method


FUNCTIONS = {
    "cutmix": (dynamic.cutmix, dict(alpha=1.0)),
    "mixup": (dynamic.mixup, dict(alpha=0.4)),
    "mix": (dynamic.mix, dict(cutmix_alpha=1.0, mixup_alpha=0.8)),
}


@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_pixels_and_soft_labels_match_the_reference(name, mode, device):
    import nvidia.dali.experimental.dynamic as ndd

    function, options = FUNCTIONS[name]
    images, labels, source = source_batches(device)
    rng = ndd.random.RNG(seed=11)
    methods, changed = set(), 0
    for _ in range(4):
        mixed, targets, params = function(images, labels, num_classes=C, mode=mode, rng=rng, return_params=True,
                                          **options)
        assert mixed.device.device_type == device and targets.device.device_type == device
        assert all(params[k].device.device_type == "cpu" for k in params)
        assert set(params) == ({"perm", "box", "lam"} if name == "cutmix" else set(PARAM_NAMES))
        perm, box, lam, method = check_mixed(source, mixed, targets, np.arange(N) % C, params, device=device)
        if mode == "batch":
            assert (box == box[0]).all() and (lam == lam[0]).all()
        if mode == "pair":
            assert (perm[perm] == np.arange(N)).all(), "pairs swap with each other"
        methods |= set(method.tolist())
        changed += int((host(mixed) != source).sum())
    assert changed > 0
    assert methods == {"cutmix": {1}, "mixup": {2}, "mix": {1, 2}}[name], methods


def test_label_smoothing_and_the_gate(device):
    """Smoothing as timm's, applied before mixing; gate 0 leaves a sample unmixed, -1 is never a partner."""
    import nvidia.dali.experimental.dynamic as ndd

    images, labels, source = source_batches(device)
    gate = ndd.batch([np.array(g, np.int32) for g in (1, 1, 0, 1, -1, 1, 1, 1)])
    mixed, targets, params = dynamic.mix(images, labels, num_classes=C, mode="elem", label_smoothing=0.1, gate=gate,
                                         rng=ndd.random.RNG(seed=3), return_params=True)
    perm, box, lam, method = check_mixed(source, mixed, targets, np.arange(N) % C, params, device=device,
                                         smoothing=0.1)
    assert method[2] == 0 and method[4] == 0 and 4 not in perm[np.arange(N) != 4]
    np.testing.assert_array_equal(host(mixed)[[2, 4]], source[[2, 4]])


def test_a_seeded_rng_repeats_its_draws(device):
    import nvidia.dali.experimental.dynamic as ndd

    images, labels, _ = source_batches(device)

    def draws(rng, count=3):
        out = []
        for _ in range(count):
            mixed, targets, params = dynamic.mix(images, labels, num_classes=C, mode="elem", mixup_alpha=0.5,
                                                 rng=rng, return_params=True)
            out.append([host(mixed), host(targets)] + [host(params[k]) for k in PARAM_NAMES])
        return out

    first, again, other = draws(ndd.random.RNG(seed=7)), draws(ndd.random.RNG(seed=7)), draws(ndd.random.RNG(seed=8))
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(a[2], b[2]) or not np.array_equal(a[4], b[4]) for a, b in zip(first, other))
    ndd.random.set_seed(7)  # the default RNG, when no rng is given
    default = draws(None, 1)
    ndd.random.set_seed(7)
    np.testing.assert_array_equal(default[0][0], draws(None, 1)[0][0])


def pipeline_stage(arrays, label_arrays, seed_arrays, *, device, num_classes, options, gate_arrays=None):
    """Pipeline mode: the stage (:func:`dali_cutmix.stage.mix_stage`) over fixed images, labels and seeds, on
    ``device``; returns (mixed, targets, *params) as host arrays."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=len(arrays), num_threads=1, device_id=device_id(device), seed=5, exec_dynamic=True)
    def pipe():
        images = fn.external_source(source=lambda: arrays, batch=True, layout="HWC", device=device)
        labels = fn.external_source(source=lambda: label_arrays, batch=True)
        seeds = fn.external_source(source=lambda: seed_arrays, batch=True)
        gate = None if gate_arrays is None else fn.external_source(source=lambda: gate_arrays, batch=True)
        mixed, targets, params = mix_stage(images, labels, num_classes=num_classes, options=options, gate=gate,
                                           seeds=seeds)
        return (mixed, targets, *params.values())

    p = pipe()
    p.build()
    return [to_numpy(o) for o in p.run()]


@pytest.mark.parametrize("options", [dict(mode="batch"), dict(mode="elem", mixup_alpha=0.8, label_smoothing=0.1),
                                     dict(mode="pair", cutmix_alpha=0.0, mixup_alpha=0.4),
                                     dict(mode="elem", cutmix_minmax=(0.2, 0.6), self_pairs=False)],
                         ids=["cutmix-batch", "mix-elem", "mixup-pair", "minmax-elem"])
def test_pipeline_and_dynamic_modes_agree_exactly_given_the_same_seeds(options, device):
    import nvidia.dali.experimental.dynamic as ndd

    options = MixOptions(**options)
    images, labels, source = source_batches(device)
    label_arrays = [np.array(i % C, np.int32) for i in range(N)]
    gate_arrays = [np.array(g, np.int32) for g in (1, 1, 1, 0, 1, 1, -1, 1)]
    for seed in range(3):
        seed_arrays = list(np.random.default_rng(seed).integers(-2**31, 2**31 - 1, N).astype(np.int32))
        mixed, targets, params = dynamic.mix_with_seeds(
            images, labels, ndd.batch(seed_arrays), num_classes=C, options=options, gate=ndd.batch(gate_arrays))
        piped = pipeline_stage(list(source), label_arrays, seed_arrays, device=device, num_classes=C,
                               options=options, gate_arrays=gate_arrays)
        ours = [host(mixed), host(targets)] + [host(params[k]) for k in PARAM_NAMES]
        for name, a, b in zip(("images", "targets") + PARAM_NAMES, ours, piped):
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b.reshape(a.shape), err_msg=name)


# Bad input: refused with the argument named, nothing returned.

def test_channels_first_images_are_refused(device):
    images, labels, _ = source_batches(device, shape=(3, H, W))
    with pytest.raises(UserError, match=r"^images reaching the cutmix stage must be HWC with 1 to 4 channels, got "
                                        rf"shape \(3, {H}, {W}\): they look channels-first \(CHW\)"):
        dynamic.cutmix(images, labels, num_classes=C)


def test_images_of_different_sizes_are_refused(device):
    import nvidia.dali.experimental.dynamic as ndd

    skip_without_gpu(device)
    arrays = [np.zeros((H + (i % 2), W, 3), np.uint8) for i in range(N)]
    images = ndd.batch(arrays, layout="HWC")
    images = images.gpu() if device == "gpu" else images
    labels = ndd.batch([np.array(0, np.int32)] * N)
    with pytest.raises(UserError, match=r"^images reaching the cutmix stage must all have one size"):
        dynamic.mix(images, labels, num_classes=C)


@pytest.mark.parametrize("labels, message", [
    ([np.array(C + 1, np.int32)] * N, rf"^labels must be in \[0, num_classes={C}\), got {C + 1}$"),
    ([np.array(-1, np.int32)] * N, rf"^labels must be in \[0, num_classes={C}\), got -1$"),
    ([np.array(1.0, np.float32)] * N, r"^labels must be integers, got dtype float32"),
], ids=["too-large", "negative", "float"])
def test_bad_labels_are_refused(labels, message, device):
    images, labels, _ = source_batches(device, labels=labels)
    with pytest.raises(UserError, match=message):
        dynamic.mixup(images, labels, num_classes=C)


@pytest.mark.parametrize("call, message", [
    (lambda i, y: dynamic.mix(i, y, num_classes=C, cutmix_alpa=1.0), r"^unknown mixing option\(s\) \['cutmix_alpa'\]"),
    (lambda i, y: dynamic.cutmix(i, y, num_classes=C, alpha=-1), r"^alpha must be >= 0"),
    (lambda i, y: dynamic.cutmix(i, y, num_classes=C, minmax=(0.6, 0.5)), r"^minmax must satisfy 0 < lo <= hi <= 1"),
    (lambda i, y: dynamic.mixup(i, y, num_classes=C, mode="row"), r"^mode must be one of"),
    (lambda i, y: dynamic.mix(i, y, num_classes=0), r"^num_classes must be an integer >= 1, got 0$"),
    (lambda i, y: dynamic.mix(i, np.zeros(N, np.int32), num_classes=C),
     r"^mix\(\): labels must be an ndd.Batch \(nvidia.dali.experimental.dynamic\), got ndarray$"),
], ids=["unknown-option", "alpha", "minmax", "mode", "num_classes", "not-a-batch"])
def test_bad_arguments_are_named(call, message, device):
    images, labels, _ = source_batches(device)
    with pytest.raises(UserError, match=message):
        call(images, labels)


def test_labels_on_the_gpu_are_refused(gpu_only):
    images, labels, _ = source_batches("gpu")
    with pytest.raises(UserError, match=r"^cutmix\(\): labels must be a CPU Batch \(the mixing parameters are "
                                        r"drawn on the CPU\), got one on the gpu$"):
        dynamic.cutmix(images, labels.gpu(), num_classes=C)


def test_the_gpu_pixel_path_in_dynamic_mode_matches_the_reference(device):
    """The GPU's pixel path (DALI's multi_paste, permute_batch, cat, coord_transform called through ndd), on the
    images' device: on the CPU its CPU kernels, which the GPU run of the stage never reaches otherwise here."""
    import nvidia.dali.experimental.dynamic as ndd

    from dali_cutmix.stage import mix_pixels_dali, param_args, stage_outputs

    images, labels, source = source_batches(device)
    options = MixOptions(mixup_alpha=0.8, mode="elem")
    wanted = stage_outputs(gpu=True)
    seeds = dynamic.draw_seeds(N, ndd.random.RNG(seed=2))
    shapes = ndd.batch([np.asarray(s, np.int64) for s in images.shape])
    params = dict(zip(wanted, dynamic.dynamic_operators().dali_cutmix_params(
        seeds, labels, shapes, **param_args(num_classes=C, options=options, outputs=wanted))))
    mixed = mix_pixels_dali(images, params, options, image_type=images.dtype, ops=ndd)
    method = host(params["method"])
    assert set(method.tolist()) == {1, 2}
    expected = expected_pixels(source, host(params["perm"]), host(params["box"]), method, host(params["lam"]), device)
    np.testing.assert_array_equal(host(mixed), expected)
