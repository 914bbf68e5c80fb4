"""Pipelines that run the CutMix stage on JPEGs on a device, and the GPU path's pixel work run on CPU operators:
shared by the tests of the stage (test_stage.py, test_mix.py, test_gpu_training.py)."""

from __future__ import annotations

from conftest import decoder_device, device_id, skip_without_gpu, to_numpy

from dali_cutmix import MixOptions, cutmix
from dali_cutmix.stage import DALI_INPUTS, PARAM_NAMES, draw_params, mix_pixels_dali

H, W = 40, 56  # not square, so that a swapped height/width would show


def gpu_graph_stage(images, labels, *, num_classes, return_params=True, gate=None, **options):
    """The GPU path's pixel work (DALI's own operators: multi_paste, permute_batch, a blend), run on CPU
    operators: the same parameters as :func:`dali_cutmix.mix`, the same return values (with params)."""
    opts = MixOptions(**options)
    names = ("targets",) + PARAM_NAMES + tuple(n for n in DALI_INPUTS if n not in PARAM_NAMES)
    params = draw_params(images, labels, num_classes=num_classes, options=opts, outputs=names, gate=gate)
    return mix_pixels_dali(images, params, opts), params["targets"], {n: params[n] for n in PARAM_NAMES}


def stage_pipeline(data, *, device, batch_size=8, size=(H, W), seed=1, stage=cutmix, resize=True, dtype=None,
                   **options):
    """A built pipeline on ``device``: read, decode, resize, cast to ``dtype`` (a DALI type; None keeps uint8),
    stage; outputs (source, mixed, targets, labels, *params)."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    skip_without_gpu(device)

    @pipeline_def(batch_size=batch_size, num_threads=2, device_id=device_id(device), seed=seed)
    def pipe():
        jpegs, labels = fn.readers.file(file_root=str(data), random_shuffle=True, seed=seed)
        images = fn.decoders.image(jpegs, device=decoder_device(device))
        if resize:
            images = fn.resize(images, resize_y=size[0], resize_x=size[1])
        if dtype is not None:
            images = fn.cast(images, dtype=dtype)
        mixed, targets, params = stage(images, labels, return_params=True, **options)
        return (images, mixed, targets, labels, *params.values())

    p = pipe()
    p.build()
    return p


def run(pipe):
    """One iteration as host NumPy arrays (from either device): source, mixed, targets, labels (flat), perm, box,
    lam[, method]."""
    out = [to_numpy(o) for o in pipe.run()]
    out[3] = out[3].reshape(-1)
    return out
