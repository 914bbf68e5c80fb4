"""The GPU path's arguments mean on a GPU what they mean on the CPU.

DALI's CPU and GPU ``multi_paste`` kernels differ at the edges (a region of size 0). These tests run the stage's
GPU graph, capture the arguments it hands ``multi_paste`` and replay them through :mod:`gpu_paste_model`, a port
of DALI's GPU kernel: on CPU operators (CI) the replay must equal the CPU operator's pixels; on the GPU (where
DALI sees one) it must equal the GPU kernel's own pixels, which checks the model itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import decoder_device, device_id, skip_without_gpu, to_numpy
from gpu_paste_model import gpu_multi_paste

from dali_cutmix import MixOptions
from dali_cutmix.stage import DALI_INPUTS, PARAM_NAMES, draw_params, paste_boxes

H, W = 40, 56


def run_multi_paste(images, in_ids, in_anchors, shapes, out_anchors, device="cpu"):
    """DALI's ``multi_paste`` on ``device`` (its CPU or its GPU kernel) on a batch given as arrays."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    arrays = [images, in_ids, in_anchors, shapes, out_anchors]
    skip_without_gpu(device)

    @pipeline_def(batch_size=len(images), num_threads=1, device_id=device_id(device))
    def pipe():
        x, ids, ia, sh, oa = (fn.external_source(source=[list(a)], batch=True) for a in arrays)
        x = fn.reshape(x, layout="HWC")
        x = x.gpu() if device == "gpu" else x
        return fn.multi_paste(x, in_ids=ids, in_anchors=ia, shapes=sh, out_anchors=oa)

    p = pipe()
    p.build()
    return to_numpy(p.run()[0])


def test_the_model_agrees_with_the_operator_on_non_empty_regions(device):
    rng = np.random.default_rng(0)
    n, regions = 6, 3
    images = rng.integers(0, 256, (n, 20, 24, 3), dtype=np.uint8)
    for _ in range(5):
        shapes = rng.integers(1, [21, 25], (n, regions, 2)).astype(np.int32)
        in_anchors = (rng.random((n, regions, 2)) * ([20, 24] - shapes + 1)).astype(np.int32)
        out_anchors = (rng.random((n, regions, 2)) * ([20, 24] - shapes + 1)).astype(np.int32)
        in_ids = rng.integers(0, n, (n, regions)).astype(np.int32)
        expected = run_multi_paste(images, in_ids, in_anchors, shapes, out_anchors, device)
        np.testing.assert_array_equal(gpu_multi_paste(images, in_ids, in_anchors, shapes, out_anchors), expected)


def test_the_model_keeps_the_gpu_kernels_behaviour_for_a_region_of_size_0(device):
    """What the stage used to hand multi_paste for an unmixed sample (region 1 = the partner's empty box): the
    CPU leaves the image alone, the GPU copies the partner from the region's corner to the end. On a GPU, its
    kernel itself must do what the model says."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    in_ids = np.array([[0, 1], [1, 0]], np.int32)
    full = [[0, 0], [20, 24]]
    shapes = np.array([[full[1], [0, 0]], [full[1], [0, 5]]], np.int32)
    anchors = np.array([[[0, 0], [0, 0]], [[0, 0], [6, 9]]], np.int32)
    gpu = gpu_multi_paste(images, in_ids, anchors, shapes, anchors)
    real = run_multi_paste(images, in_ids, anchors, shapes, anchors, device)
    np.testing.assert_array_equal(real, gpu if device == "gpu" else images)
    np.testing.assert_array_equal(gpu[0], images[1], "an empty box at the origin: the whole partner")
    np.testing.assert_array_equal(gpu[1, 6:, 9:14], images[0, 6:, 9:14], "a zero-height box: the partner below")


def stage_arguments(data, *, batch_size, gate=None, device="cpu", **options):
    """A built pipeline on ``device``: read, decode, resize, the stage's parameters and its GPU-path paste; outputs
    (images, pasted, in_ids, anchors, regions, method, box)."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    opts = MixOptions(**options)
    names = ("targets",) + PARAM_NAMES + tuple(n for n in DALI_INPUTS if n not in PARAM_NAMES)
    skip_without_gpu(device)

    @pipeline_def(batch_size=batch_size, num_threads=2, device_id=device_id(device), seed=4)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(data), random_shuffle=True, seed=4)
        images = fn.resize(fn.decoders.image(jpegs, device=decoder_device(device)), resize_y=H, resize_x=W)
        gate_node = None
        if gate is not None:
            gate_node = fn.external_source(source=lambda: [np.array(g, np.int32) for g in gate], batch=True)
        params = draw_params(images, labels, num_classes=4, options=opts, outputs=names, gate=gate_node)
        return (images, paste_boxes(images, params), params["in_ids"], params["anchors"], params["regions"],
                params["method"], params["box"])

    p = pipe()
    p.build()
    return p


CASES = {
    "batch": dict(batch_size=8, mode="batch"),
    "elem-prob": dict(batch_size=8, mode="elem", prob=0.5),
    "pair-odd": dict(batch_size=7, mode="pair", prob=0.7),
    "gate": dict(batch_size=8, mode="elem", gate=[1, 0, 1, 0, 1, 1, 0, 0]),
    "padding": dict(batch_size=8, mode="elem", gate=[1, 1, 0, 1, 1, -1, -1, -1]),  # a last batch of 5 samples
    "padding-pair": dict(batch_size=8, mode="pair", gate=[1, 1, 1, 1, 1, -1, -1, -1]),
    "mixup": dict(batch_size=8, mode="elem", mixup_alpha=0.5, switch_prob=0.5),
    "minmax": dict(batch_size=8, mode="elem", cutmix_minmax=(0.2, 0.7), prob=0.8),
    "alpha-small": dict(batch_size=8, mode="elem", cutmix_alpha=0.05),  # boxes of height or width 0 happen
}


@pytest.mark.parametrize("case", CASES)
def test_replay_of_the_stage_arguments_on_the_gpu_kernel_equals_the_operators_result(jpeg_tree, case, device):
    pipe = stage_arguments(jpeg_tree, device=device, **CASES[case])
    unpasted = 0
    for _ in range(6):
        images, pasted, in_ids, anchors, regions, method, box = (to_numpy(o) for o in pipe.run())
        assert (regions > 0).all(), "no region of size 0 reaches multi_paste"
        np.testing.assert_array_equal(gpu_multi_paste(images, in_ids, anchors, regions, anchors), pasted)
        empty = (box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1])
        unpasted += int(((method != 1) | empty).sum())
    if case != "batch":
        assert unpasted > 0, "the case reaches samples with nothing to paste"


@pytest.mark.parametrize("case", ["padding", "padding-pair"])
def test_multi_paste_never_reads_padding(jpeg_tree, case, device):
    """The GPU path's regions come from samples, never from the reader's padding (gate -1), which keeps its pixels."""
    pipe = stage_arguments(jpeg_tree, device=device, **CASES[case])
    for _ in range(6):
        images, pasted, in_ids, anchors, regions, method, box = (to_numpy(o) for o in pipe.run())
        assert (in_ids[:5] < 5).all() and in_ids[5:].tolist() == [[5, 5], [6, 6], [7, 7]]
        np.testing.assert_array_equal(pasted[5:], images[5:])
