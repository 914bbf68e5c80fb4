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


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_the_native_mix_and_normalize_writes_crop_mirror_normalizes_pixels(device, dtype, layout):
    """``dali_cutmix_mix_normalize`` (the CPU graph's one pass) against ``dali_cutmix_apply`` then DALI's
    ``crop_mirror_normalize`` on ``device``, mirror on and off, CutMix boxes (inside, at the edges, the whole
    image, none), MixUp and unmixed samples, and without mixing inputs: bit for bit against the CPU operator; the
    GPU one computes ``fmaf(x, 1/std, -mean/std)`` (slice_flip_normalize_gpu_impl.cuh), so there within
    rounding."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import IMAGENET_MEAN, IMAGENET_STD, image_output_args
    from dali_cutmix.native import load
    from dali_cutmix.stage import mix_normalize_native

    load()
    rng = np.random.default_rng(11)
    arrays = [rng.integers(0, 256, (13, 17, 3), dtype=np.uint8) for _ in range(7)]
    params = dict(perm=[3, 0, 5, 1, 2, 4, 6], method=[1, 0, 1, 1, 2, 2, 1],
                  box=[[2, 3, 9, 11], [0, 0, 0, 0], [0, 0, 13, 17], [5, 9, 13, 17], [1, 1, 2, 2], [0, 0, 0, 0],
                       [0, 0, 0, 0]],
                  lam=[0.4, 1.0, 0.0, 0.6, 0.37, 0.81, 1.0])
    dtypes = dict(perm=np.int32, method=np.int32, box=np.int32, lam=np.float32)
    fed = {k: [np.asarray(v, dtype=dtypes[k]) for v in values] for k, values in params.items()}
    out = image_output_args(dtype, layout)
    for flips in ([1, 0, 1, 0, 1, 1, 0], [0] * 7, [1] * 7):
        @pipeline_def(batch_size=len(arrays), num_threads=2, device_id=device_id(device), exec_dynamic=True)
        def pipe():
            images = fn.external_source(source=lambda: arrays, batch=True, layout="HWC")
            p = {k: fn.external_source(source=(lambda v: lambda: v)(v), batch=True) for k, v in fed.items()}
            mirror = fn.external_source(source=lambda: [np.int32(f) for f in flips], batch=True)
            mixed = fn.dali_cutmix_apply(images, p["perm"], p["box"], p["method"], p["lam"])
            norm = dict(mirror=mirror, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), **out)
            on = (lambda x: x.gpu()) if device == "gpu" else (lambda x: x)
            return (fn.crop_mirror_normalize(on(mixed), **norm), fn.crop_mirror_normalize(on(images), **norm),
                    mix_normalize_native(images, p, mirror, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                         dtype=out["dtype"], output_layout=out["output_layout"]),
                    mix_normalize_native(images, None, mirror, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                         dtype=out["dtype"], output_layout=out["output_layout"]))

        pipeline = pipe()
        pipeline.build()
        outputs = pipeline.run()
        assert outputs[2].layout() == out["output_layout"]
        dali_mixed, dali_plain, native_mixed, native_plain = [to_numpy(o) for o in outputs]
        for expected, got in ((dali_mixed, native_mixed), (dali_plain, native_plain)):
            assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
            if device == "cpu":
                np.testing.assert_array_equal(got.view(np.uint16 if dtype == "float16" else np.uint32),
                                              expected.view(np.uint16 if dtype == "float16" else np.uint32))
            else:
                tol = 2e-3 if dtype == "float16" else 2e-6
                np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=tol, atol=tol)
        # the reference itself: the mixed pixels, flipped and normalized (float64 here, so within rounding)
        hwc = native_mixed if layout == "NHWC" else native_mixed.transpose(0, 2, 3, 1)
        for i, x in enumerate(arrays):
            j, (y0, x0, y1, x1) = params["perm"][i], params["box"][i]
            own = x.astype(np.float64)
            if params["method"][i] == 1:
                own[y0:y1, x0:x1] = arrays[j][y0:y1, x0:x1]
            elif params["method"][i] == 2:
                lam = np.float32(params["lam"][i])
                own = np.floor(lam * x.astype(np.float32) + (1 - lam) * arrays[j].astype(np.float32) + 0.5)
            own = own[:, ::-1] if flips[i] else own
            expected = (own - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
            # a MixUp blend within rounding of k + 0.5 may round either way here: one pixel step (1/std)
            loose = dtype == "float16" or params["method"][i] == 2
            np.testing.assert_allclose(hwc[i].astype(np.float64), expected, atol=2e-2 if loose else 1e-5)


def test_the_cpu_training_graph_is_the_stage_then_crop_mirror_normalize(jpeg_tree, on):
    """The builder's CPU graph (the stage's pixels, flip and normalize in one native pass) gives the same batches as
    the two-operator graph (the stage, then ``crop_mirror_normalize`` with its own ``random.coin_flip``), built
    from the builder's pieces with the same seed: the same flips, the same pixels, bit for bit, in every dtype and
    layout, with and without mixing, over several batches."""
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from dali_cutmix import MixOptions
    from dali_cutmix.builder import (decode_random_crop, default_decode, flip_normalize, mix_gate, one_hot_labels,
                                     rank_seed, reader)
    from dali_cutmix.stage import mix_stage

    def two_operators(*, mixing, dtype, layout, mirror, options):
        @pipeline_def(batch_size=5, num_threads=2, device_id=device_id(on["device"]), seed=rank_seed(3),
                      exec_dynamic=True, prefetch_queue_depth=2)
        def pipe():
            jpegs, labels = reader(jpeg_tree, seed=3)
            images = decode_random_crop(jpegs, device=on["device"], crop=(32, 32), decode=default_decode())
            if mixing:
                images, targets, _ = mix_stage(images, labels, num_classes=4, options=options, gate=mix_gate(),
                                               image_type=types.UINT8)
            else:
                targets = one_hot_labels(labels, 4, device=on["device"])
            return flip_normalize(images, mirror=mirror, dtype=dtype, layout=layout), targets

        return pipe()

    cases = [dict(), dict(dtype="float16"), dict(layout="NHWC"), dict(dtype="float16", layout="NHWC"),
             dict(mixing=False), dict(mirror=False),
             dict(options=MixOptions(mixup_alpha=0.5, mode="elem")), dict(mixing=False, layout="NHWC", mirror=False)]
    for case in cases:
        args = dict(dict(mixing=True, dtype="float32", layout="NCHW", mirror=True, options=MixOptions()), **case)
        built = build_cutmix_pipeline(jpeg_tree, batch_size=5, seed=3, mix_options=args.pop("options"),
                                      **args, **on)
        reference = two_operators(options=MixOptions() if "options" not in case else case["options"],
                                  **dict(dict(mixing=True, dtype="float32", layout="NCHW", mirror=True),
                                         **{k: v for k, v in case.items() if k != "options"}))
        built.build()
        reference.build()
        graph = built.serialize()  # the CPU graph has the one native pass; the GPU graph DALI's operators
        assert (b"DaliCutmixMixNormalize" in graph) == (on["device"] == "cpu")
        assert (b"CropMirrorNormalize" in graph) == (on["device"] == "gpu")
        for _ in range(3):
            outputs, expected = built.run(), reference.run()
            assert len(outputs) == len(expected) == 2
            for a, b in zip(outputs, expected):
                a, b = to_numpy(a), to_numpy(b)
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
