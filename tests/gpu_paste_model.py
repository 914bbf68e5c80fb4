"""A NumPy model of DALI's GPU ``multi_paste``, for checking on a CPU what the GPU kernel makes of our arguments.

Port of ``CreateSampleDescriptors`` and ``PasteKernel`` in ``include/dali/kernels/imgproc/paste/paste_gpu.h`` as
shipped in the nvidia-dali-cuda120 2.4.0 wheel (``nvidia/dali/include/...``). The GPU kernel does not copy the
regions one after another as the CPU operator does: it sweeps the output along the regions' edges, keeps a set of
open regions and takes, for each patch between edges, the highest-numbered open one. A region is opened at its
start edge and closed only at ``ending[x + 1]`` / ``y_ending[y + 1]``, so a region whose start equals its end is
never closed and wins every later patch (in sweep order). The port keeps that behaviour on purpose: it is what a
GPU would do with such a region.
"""

from __future__ import annotations

import numpy as np


def _patch_sources(out_size, regions):
    """``[(y0, y1, x0, x1, region or -1)]``: the output's patches and the region each is copied from, as the GPU
    kernel's sweep decides. ``regions``: ``[(out_anchor (y, x), size (h, w))]`` in paste order."""
    height, width = out_size
    xs = sorted({0, width} | {r[0][1] for r in regions} | {r[0][1] + r[1][1] for r in regions})
    ys = sorted({0, height} | {r[0][0] for r in regions} | {r[0][0] + r[1][0] for r in regions})
    x_index = {x: k for k, x in enumerate(xs)}
    y_index = {y: k for k, y in enumerate(ys)}
    x_count, y_count = len(xs) - 1, len(ys) - 1
    y_starting = [[] for _ in range(y_count + 1)]
    y_ending = [[] for _ in range(y_count + 1)]
    for i, ((ay, ax), (h, w)) in enumerate(regions):
        event = (i, x_index[ax], x_index[ax + w])
        y_starting[y_index[ay]].append(event)
        y_ending[y_index[ay + h]].append(event)
    y_starting[0].append((-1, 0, x_count))
    y_ending[y_count].append((-1, 0, x_count))
    starting = [set() for _ in range(x_count + 1)]
    ending = [set() for _ in range(x_count + 1)]
    open_pastes = set()
    patches = []
    for y in range(y_count):
        for i, x0, x1 in y_starting[y]:
            starting[x0].add(i)
            ending[x1].add(i)
        for x in range(x_count):
            open_pastes |= starting[x]
            patches.append((ys[y], ys[y + 1], xs[x], xs[x + 1], max(open_pastes)))
            open_pastes -= ending[x + 1]
        for i, x0, x1 in y_ending[y + 1]:
            starting[x0].discard(i)
            ending[x1].discard(i)
    return patches


def gpu_multi_paste(images, in_ids, in_anchors, shapes, out_anchors):
    """What DALI's GPU ``multi_paste(images, in_ids=..., in_anchors=..., shapes=..., out_anchors=...)`` outputs,
    for a batch of HWC ``images`` of one size (the output canvas is that size).

    Args:
        images: array [N, H, W, C]. in_ids: int [N, R]. in_anchors, shapes, out_anchors: int [N, R, 2] (y, x).

    Returns:
        Array [N, H, W, C] of the images' dtype; pixels no region covers are 0, as on the GPU.
    """
    images = np.asarray(images)
    n, height, width, _ = images.shape
    out = np.zeros_like(images)
    for s in range(n):
        regions = [(tuple(out_anchors[s][r]), tuple(shapes[s][r])) for r in range(len(in_ids[s]))]
        for y0, y1, x0, x1, r in _patch_sources((height, width), regions):
            if r < 0 or y1 <= y0 or x1 <= x0:
                continue
            (oy, ox), (iy, ix) = out_anchors[s][r], in_anchors[s][r]
            src = images[in_ids[s][r]]
            out[s, y0:y1, x0:x1] = src[iy + y0 - oy:iy + y1 - oy, ix + x0 - ox:ix + x1 - ox]
    return out
