"""The hot path: images leave the pipelines in the model's dtype and memory format, validation labels on the images'
device, and MixUp's blend in few operators with the NumPy reference's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dali_cutmix import CutMixLoader, build_cutmix_pipeline
from dali_cutmix.errors import UserError
from dali_cutmix.pipelines.imagenet import build_imagenet_val_pipeline

CPU = dict(device="cpu", num_threads=2, crop=32)


def dali_gpus() -> int:
    """GPUs DALI sees (0 without a driver)."""
    import nvidia.dali.backend as backend

    try:
        return int(backend.GetCUDADeviceCount())
    except RuntimeError:
        return 0


needs_gpu = pytest.mark.skipif(dali_gpus() == 0, reason="needs a GPU that DALI sees (none here)")


def first_batch(pipeline):
    return next(iter(CutMixLoader(pipeline)))


@pytest.mark.parametrize("dtype, torch_dtype", [("float32", torch.float32), ("float16", torch.float16)])
def test_training_images_in_each_layout_and_dtype_hold_the_same_pixels(jpeg_tree, dtype, torch_dtype):
    reference, ref_targets = first_batch(build_cutmix_pipeline(jpeg_tree, batch_size=5, seed=3, **CPU))
    nchw, targets = first_batch(build_cutmix_pipeline(jpeg_tree, batch_size=5, seed=3, dtype=dtype, **CPU))
    nhwc, _ = first_batch(build_cutmix_pipeline(jpeg_tree, batch_size=5, seed=3, dtype=dtype, layout="NHWC",
                                                **CPU))
    assert nchw.shape == (5, 3, 32, 32) and nchw.dtype == torch_dtype and nchw.is_contiguous()
    assert nhwc.shape == (5, 32, 32, 3) and nhwc.dtype == torch_dtype and nhwc.is_contiguous()
    assert torch.equal(targets, ref_targets)
    torch.testing.assert_close(nchw.float(), reference, rtol=1e-3, atol=1e-3)  # float16 rounding only
    view = nhwc.permute(0, 3, 1, 2)
    assert view.is_contiguous(memory_format=torch.channels_last) and view.data_ptr() == nhwc.data_ptr()
    assert torch.equal(view, nchw), "NHWC is the same images, channels last"


def test_validation_images_in_each_layout_and_dtype(demo_imagenet):
    val = demo_imagenet / "val"
    reference, labels = first_batch(build_imagenet_val_pipeline(val, batch_size=4, crop=32, device="cpu",
                                                                num_threads=2))
    half, half_labels = first_batch(build_imagenet_val_pipeline(val, batch_size=4, crop=32, device="cpu",
                                                                num_threads=2, dtype="float16", layout="NHWC"))
    assert reference.shape == (4, 3, 32, 32) and reference.dtype == torch.float32
    assert half.shape == (4, 32, 32, 3) and half.dtype == torch.float16
    assert torch.equal(labels, half_labels) and labels.device.type == "cpu"
    view = half.permute(0, 3, 1, 2)
    assert view.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(view.float(), reference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("argument, value", [("dtype", "bfloat16"), ("dtype", "float"), ("layout", "CHW"),
                                             ("layout", "nhwc")])
def test_a_bad_dtype_or_layout_names_the_argument(jpeg_tree, demo_imagenet, argument, value):
    for build, data in ((build_cutmix_pipeline, jpeg_tree), (build_imagenet_val_pipeline, demo_imagenet / "val")):
        with pytest.raises(UserError) as error:
            build(data, batch_size=4, **CPU, **{argument: value})
        choices = "('float32', 'float16')" if argument == "dtype" else "('NCHW', 'NHWC')"
        assert str(error.value) == f"{argument} must be one of {choices}, got {value!r}"


@needs_gpu
@pytest.mark.gpu
def test_gpu_validation_labels_reach_the_gpu_inside_the_pipeline(demo_imagenet):
    images, labels = first_batch(build_imagenet_val_pipeline(demo_imagenet / "val", batch_size=4, crop=32,
                                                             device="gpu", dtype="float16", layout="NHWC"))
    assert images.device.type == labels.device.type == "cuda" and images.dtype == torch.float16
    assert labels.dtype == torch.int32 and labels.shape == (4, 1)
