"""The hot path: images leave the pipelines in the model's dtype and memory format, validation labels on the images'
device, and MixUp's blend in few operators with the NumPy reference's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import device_id, to_numpy

from dali_cutmix import CutMixLoader, build_cutmix_pipeline
from dali_cutmix.errors import UserError
from dali_cutmix.pipelines.imagenet import build_imagenet_val_pipeline

@pytest.fixture
def on(device):
    """The builders' arguments for this test's device (the GPU case skipped with its reason without one)."""
    return dict(device=device, num_threads=2, crop=32)


def first_batch(pipeline):
    return next(iter(CutMixLoader(pipeline)))


@pytest.mark.parametrize("dtype, torch_dtype", [("float32", torch.float32), ("float16", torch.float16)])
def test_training_images_in_each_layout_and_dtype_hold_the_same_pixels(jpeg_tree, dtype, torch_dtype, on):
    reference, ref_targets = first_batch(build_cutmix_pipeline(jpeg_tree, batch_size=5, seed=3, **on))
    nchw, targets = first_batch(build_cutmix_pipeline(jpeg_tree, batch_size=5, seed=3, dtype=dtype, **on))
    nhwc, _ = first_batch(build_cutmix_pipeline(jpeg_tree, batch_size=5, seed=3, dtype=dtype, layout="NHWC",
                                                **on))
    assert nchw.device == nhwc.device == reference.device
    assert nchw.shape == (5, 3, 32, 32) and nchw.dtype == torch_dtype and nchw.is_contiguous()
    assert nhwc.shape == (5, 32, 32, 3) and nhwc.dtype == torch_dtype and nhwc.is_contiguous()
    assert torch.equal(targets, ref_targets)
    torch.testing.assert_close(nchw.float(), reference, rtol=1e-3, atol=1e-3)  # float16 rounding only
    view = nhwc.permute(0, 3, 1, 2)
    assert view.is_contiguous(memory_format=torch.channels_last) and view.data_ptr() == nhwc.data_ptr()
    assert torch.equal(view, nchw), "NHWC is the same images, channels last"


def test_validation_images_in_each_layout_and_dtype(demo_imagenet, on):
    """On the GPU the labels reach the GPU inside the pipeline (no copy per batch in torch); on the CPU they stay
    there, with the images."""
    val = demo_imagenet / "val"
    reference, labels = first_batch(build_imagenet_val_pipeline(val, batch_size=4, **on))
    half, half_labels = first_batch(build_imagenet_val_pipeline(val, batch_size=4, dtype="float16", layout="NHWC",
                                                                **on))
    assert reference.shape == (4, 3, 32, 32) and reference.dtype == torch.float32
    assert half.shape == (4, 32, 32, 3) and half.dtype == torch.float16
    assert torch.equal(labels, half_labels) and labels.dtype == torch.int32 and labels.shape == (4, 1)
    assert labels.device == half.device == reference.device
    assert labels.device.type == ("cuda" if on["device"] == "gpu" else "cpu")
    view = half.permute(0, 3, 1, 2)
    assert view.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(view.float(), reference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("argument, value", [("dtype", "bfloat16"), ("dtype", "float"), ("layout", "CHW"),
                                             ("layout", "nhwc")])
def test_a_bad_dtype_or_layout_names_the_argument(jpeg_tree, demo_imagenet, argument, value, on):
    for build, data in ((build_cutmix_pipeline, jpeg_tree), (build_imagenet_val_pipeline, demo_imagenet / "val")):
        with pytest.raises(UserError) as error:
            build(data, batch_size=4, **on, **{argument: value})
        choices = "('float32', 'float16')" if argument == "dtype" else "('NCHW', 'NHWC')"
        assert str(error.value) == f"{argument} must be one of {choices}, got {value!r}"


SWITCHING = dict(cutmix_alpha=1.0, mixup_alpha=0.8, switch_prob=0.5, mode="elem")


def dali_path_batch(images, labels, *, image_type, device="cpu", **options):
    """The GPU path's pixels (DALI's own operators), on ``device`` (the images fed on the CPU, moved to the GPU
    for the pixel work there; the params stay on the CPU): ``(mixed, perm, box, lam, method)`` host arrays."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from dali_cutmix import MixOptions
    from dali_cutmix.stage import DALI_INPUTS, PARAM_NAMES, draw_params, mix_pixels_dali

    opts = MixOptions(**options)
    names = PARAM_NAMES + tuple(n for n in DALI_INPUTS if n not in PARAM_NAMES)

    @pipeline_def(batch_size=len(images), num_threads=1, device_id=device_id(device), seed=5)
    def pipe():
        x = fn.external_source(source=[list(images)], batch=True, layout="HWC")
        y = fn.external_source(source=[list(labels)], batch=True)
        params = draw_params(x, y, num_classes=4, options=opts, outputs=names)
        pixels = x.gpu() if device == "gpu" else x
        return (mix_pixels_dali(pixels, params, opts, image_type), *(params[n] for n in PARAM_NAMES))

    p = pipe()
    p.build()
    return [to_numpy(o) for o in p.run()]


def assert_blend_matches(mixed, expected, method, device):
    """``mixed`` is ``expected`` exactly on the CPU. On the GPU, CutMix and unmixed samples are exact too; MixUp's
    samples (method 2) may differ by 1 in integer images, where the GPU rounds the blend half to even
    (``__float2int_rn``, DALI's ``include/dali/core/convert.h``) and the CPU half away from zero, and by float32
    rounding in float images (the GPU kernel may contract ``w * a + (1 - w) * b`` into one fused multiply-add)."""
    assert mixed.dtype == expected.dtype and mixed.shape == expected.shape
    if device == "cpu":
        np.testing.assert_array_equal(mixed, expected)
        return
    blend = method == 2
    np.testing.assert_array_equal(mixed[~blend], expected[~blend])
    if np.issubdtype(expected.dtype, np.integer):
        assert np.abs(mixed[blend].astype(int) - expected[blend].astype(int)).max(initial=0) <= 1
    else:
        np.testing.assert_allclose(mixed[blend], expected[blend], rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("options", [dict(cutmix_alpha=0.0, mixup_alpha=1.0), SWITCHING,
                                     dict(SWITCHING, mode="pair"), dict(cutmix_alpha=0.0, mixup_alpha=0.5, prob=0.5,
                                                                         mode="elem")])
def test_the_blend_written_in_the_images_type_gives_the_reference_pixels(options, device):
    import nvidia.dali.types as types
    import reference as ref

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (9, 20, 28, 3), dtype=np.uint8)
    images[:, :2] = 255  # blends near the top of the range
    labels = rng.integers(0, 4, (9, 1), dtype=np.int32)
    mixed, perm, box, lam, method = dali_path_batch(images, labels, image_type=types.UINT8, device=device,
                                                    **options)
    assert_blend_matches(mixed, ref.mix_pixels(images, perm, box, method, lam), method, device)
    assert (method == 2).any() and mixed.dtype == np.uint8
    cast, *_ = dali_path_batch(images, labels, image_type=None, device=device, **options)
    np.testing.assert_array_equal(cast, mixed)  # the same blend, then a cast: the same rounding on one device


def test_the_blend_keeps_float_and_int16_images_exact(device):
    import reference as ref

    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.int16):
        images = (rng.random((6, 12, 16, 3)) * 400 - 100).astype(dtype)
        labels = rng.integers(0, 4, (6, 1), dtype=np.int32)
        mixed, perm, box, lam, method = dali_path_batch(images, labels, image_type=None, device=device,
                                                        **SWITCHING)
        assert mixed.dtype == dtype
        expected = ref.mix_pixels(images, perm, box, method, lam)
        if dtype == np.int16:  # the reference clips to uint8's range; the blend of two int16 values cannot leave it
            blend = method == 2
            f = lam[blend, None, None, None].astype(np.float32)
            v = f * images[blend].astype(np.float32) + (np.float32(1) - f) * images[perm[blend]].astype(np.float32)
            expected[blend] = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int16)
        assert_blend_matches(mixed, expected, method, device)


def test_the_stage_is_few_operators_on_each_device():
    from dali_cutmix import MixOptions
    from dali_cutmix.profiler.graphs import stage_operators

    params = ["DaliCutmixParams", "Shape", "Uniform"]
    for mix, gpu_pixels in ((MixOptions(), ["MultiPaste"]),
                            (MixOptions(cutmix_alpha=0.0, mixup_alpha=1.0), ["Cat", "CoordTransform", "PermuteBatch"]),
                            (MixOptions(mixup_alpha=1.0), ["Cat", "CoordTransform", "MultiPaste", "PermuteBatch"])):
        assert stage_operators(mix, "cpu") == sorted(params + ["DaliCutmixApply"])
        assert stage_operators(mix, "gpu") == sorted(params + gpu_pixels)


def test_the_library_ab_reports_each_cost_against_the_fed_sources_and_one_copy():
    from dali_cutmix.profiler.native_ab import summarize

    slow = 50.0  # one batch a busy machine slowed down: in neither the quiet figure nor the median
    per_batch = {"source": 1.0, "apply": 1.5, "stage": 2.25, "copy": 0.5}
    samples = {f"{key}{clock}_ms": [value] * 9 + [slow] for key, value in per_batch.items() for clock in ("", "_cpu")}
    result = summarize(samples)
    for clock in ("", "_cpu"):
        assert result[f"stage{clock}_cost_quiet_ms"] == result[f"stage{clock}_cost_median_ms"] == 1.25
        assert result[f"apply{clock}_cost_quiet_ms"] == 0.5 and result[f"copy{clock}_quiet_ms"] == 0.5
        assert result[f"stage{clock}_copies"] == 2.5 and result[f"apply{clock}_copies"] == 1.0
    assert result["stage_ms_batches"] == 10


def test_the_library_ab_compiles_each_source_as_the_native_build_does(tmp_path):
    from dali_cutmix.native import build_command

    command = build_command(tmp_path / "lib.so", tmp_path / "old.cc")
    assert command[1:6] == ["-std=c++20", "-O3", "-shared", "-fPIC", "-w"]
    assert command[command.index(str(tmp_path / "old.cc")) + 1:][:2] == ["-o", str(tmp_path / "lib.so")]
