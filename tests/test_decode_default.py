"""The process-wide default of the builder's ``decode`` (``$DALI_CUTMIX_DECODE``): what a pipeline built without
``decode`` does, so a failing ROI decoder is avoided by every pipeline of a process (benchmarks/gpu_run.sh sets
it when its ROI-decode smoke test fails)."""

from __future__ import annotations

import pytest
import torch
from conftest import skip_where_roi_decoding_is_off

from dali_cutmix import CutMixLoader, build_cutmix_pipeline
from dali_cutmix.builder import DECODE_ENV, default_decode
from dali_cutmix.errors import UserError


def first_crops(jpeg_tree, device, **decode):
    """The first batch of the pipeline cut after the crop (uint8 images, class ids), built with ``decode``."""
    pipe = build_cutmix_pipeline(jpeg_tree, batch_size=5, stop_after="crop", device=device, num_threads=2, crop=32,
                                 seed=7, **decode)
    return next(iter(CutMixLoader(pipe)))


def test_the_environment_sets_the_decode_of_a_pipeline_built_without_one(jpeg_tree, device, monkeypatch):
    skip_where_roi_decoding_is_off(device)
    monkeypatch.delenv(DECODE_ENV, raising=False)
    roi, full = first_crops(jpeg_tree, device, decode="roi")[0], first_crops(jpeg_tree, device, decode="full")[0]
    assert not torch.equal(roi, full), "the two decodes draw their crops with different operators"
    assert default_decode() == "roi" and torch.equal(first_crops(jpeg_tree, device)[0], roi)
    monkeypatch.setenv(DECODE_ENV, "full")
    assert default_decode() == "full" and torch.equal(first_crops(jpeg_tree, device)[0], full)
    assert torch.equal(first_crops(jpeg_tree, device, decode="roi")[0], roi), "a given decode wins"
    monkeypatch.setenv(DECODE_ENV, "roi")
    assert torch.equal(first_crops(jpeg_tree, device)[0], roi)


@pytest.mark.one_device("the builder refuses the variable before any pipeline exists; the last, CPU, build reads "
                        "no variable")
@pytest.mark.parametrize("value", ["FULL", "", "whole"])
def test_a_bad_value_is_refused_naming_the_variable(jpeg_tree, value, monkeypatch):
    monkeypatch.setenv(DECODE_ENV, value)
    message = f"the environment variable DALI_CUTMIX_DECODE must be one of roi, full, got {value!r}"
    with pytest.raises(UserError) as info:
        default_decode()
    assert str(info.value) == message
    with pytest.raises(UserError) as info:
        build_cutmix_pipeline(jpeg_tree, batch_size=5, device="cpu")
    assert str(info.value) == message
    build_cutmix_pipeline(jpeg_tree, batch_size=5, device="cpu", decode="full")  # a given decode reads no variable
