"""The DALI graphs the profiler times: the training pipeline cut after a stage (with or without the mixing stage),
full-image decode, and the mixing stage alone on a fixed batch. Each makes one batch per ``run()`` with nothing
prefetched, unless asked for the builder's prefetching."""

from __future__ import annotations

import re
from typing import Dict, List, Optional

import numpy as np

from dali_cutmix.errors import UserError

from .settings import ProfileSettings
from .variants import STAGES

#: ``nvidia.dali.Pipeline`` arguments for one batch per ``run()``, nothing left running after it returns (the
#: dynamic executor still runs operators on its threads, but ``run()`` returns only when the batch is done).
SYNCHRONOUS = dict(exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
#: The variants that are the training pipeline cut after one of its named stages (``build_cutmix_pipeline``'s
#: ``stop_after``).
STOP_AFTER = dict(crop="crop", cutmix="mix", full="normalize")


def _device_id(settings: ProfileSettings):
    return settings.device_id if settings.device == "gpu" else None


def build_decode_pipeline(settings: ProfileSettings, **pipeline_kwargs):
    """Unbuilt: the training pipeline's reader and seeds, then a full-image decode (``decoders.image`` with the
    pipeline's decoder arguments): what decoding costs without the crop. Outputs: images, class ids."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import decoder_args, rank_seed, reader

    @pipeline_def(enable_conditionals=False)
    def decode_pipeline():
        jpegs, labels = reader(settings.data, shuffle=True, seed=settings.seed)
        return fn.decoders.image(jpegs, **decoder_args(settings.device)), labels

    return decode_pipeline(batch_size=settings.batch_size, num_threads=settings.threads,
                           device_id=_device_id(settings), seed=rank_seed(settings.seed), exec_dynamic=True,
                           **pipeline_kwargs)


def build_stage_pipeline(stage: str, settings: ProfileSettings, num_classes: int, *, synchronous: bool = True,
                         mixing: bool = True, return_params: bool = False, augment: Optional[str] = None):
    """The pipeline of variant ``stage`` (one of :data:`~.variants.STAGES`), built and ready to ``run()``.

    "crop", "cutmix" and "full" are :func:`dali_cutmix.build_cutmix_pipeline` with the settings (mixing options
    included) cut after its stage "crop", "mix" and "normalize" (see :data:`STOP_AFTER`); "decode" is
    :func:`build_decode_pipeline`. ``synchronous`` adds :data:`SYNCHRONOUS`; without it the builder's default
    prefetching applies. Outputs: images and labels (class ids up to "crop", soft labels from "cutmix" on).

    ``mixing`` and ``return_params`` are the builder's (not for "decode"): ``mixing=False`` builds the same
    graph without the mixing stage (smoothed one-hot labels); ``return_params`` adds the builder's extra outputs,
    the integer class ids last. ``augment``: the builder's augmentation (a preset name such as "paper", or
    :class:`dali_cutmix.AugmentOptions`); None: the settings' (``settings.augment``).

    Raises:
        UserError: an unknown ``stage``; ``mixing=False``, ``return_params`` or ``augment`` with "decode".
    """
    from dali_cutmix.builder import build_cutmix_pipeline

    if stage not in STAGES:
        raise UserError(f"stage must be one of {STAGES}, got {stage!r}")
    mode = SYNCHRONOUS if synchronous else {}
    if stage == "decode":
        if not mixing or return_params or augment is not None:
            raise UserError("mixing=False, return_params and augment are the training pipeline's, not the decode "
                            "stage's")
        pipe = build_decode_pipeline(settings, **mode)
    else:
        pipe = build_cutmix_pipeline(
            settings.data, batch_size=settings.batch_size, num_classes=num_classes, crop=settings.crop,
            device=settings.device, device_id=_device_id(settings), mixing=mixing, mix_options=settings.mix,
            num_threads=settings.threads, seed=settings.seed, stop_after=STOP_AFTER[stage], decode=settings.decode,
            return_params=return_params, augment=settings.augment if augment is None else augment, **mode)
    pipe.build()
    return pipe


def fixed_batch(settings: ProfileSettings, num_classes: int):
    """The profiler's fixed batch: ``(images, labels)``, random uint8 ``[batch_size, crop, crop, 3]`` images (a
    torch tensor on the GPU for "gpu", else a NumPy array) and int32 ``[batch_size, 1]`` class ids (NumPy)."""
    rng = np.random.default_rng(settings.seed)
    images = rng.integers(0, 256, (settings.batch_size, settings.crop, settings.crop, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, (settings.batch_size, 1), dtype=np.int32)
    if settings.device == "gpu":
        import torch

        images = torch.from_numpy(images).cuda(settings.device_id)
    return images, labels


def build_stage_alone_pipeline(settings: ProfileSettings, num_classes: int, batch, *, with_mixing: bool,
                               options=None):
    """The mixing stage alone on ``batch`` (:func:`fixed_batch`'s ``(images, labels)``), built, synchronous:
    ``with_mixing`` the fed images and class ids through the stage, else the same sources alone, the baseline the
    stage's cost is taken against.

    The batch is handed to DALI without a copy (on the GPU for "gpu"), so pipelines built on one batch share it. Outputs: the images' shapes (on the CPU) and
    the labels (class ids, or the stage's soft labels): nothing in either pipeline copies the images but the stage
    itself, so the pair's difference is what the stage costs. ``options``: the stage's
    :class:`dali_cutmix.MixOptions` (default ``settings.mix``).
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import rank_seed
    from dali_cutmix.stage import mix_stage

    images, labels = batch
    gpu = settings.device == "gpu"
    options = settings.mix if options is None else options

    @pipeline_def(enable_conditionals=False)
    def stage_alone():
        pixels = fn.external_source(source=lambda: images, batch=True, no_copy=True, layout="HWC",
                                    device="gpu" if gpu else "cpu")
        ids = fn.external_source(source=lambda: labels, batch=True, no_copy=True)
        if with_mixing:
            pixels, ids, _ = mix_stage(pixels, ids, num_classes=num_classes, options=options,
                                       image_type=types.UINT8)
        return pixels.shape(device="cpu"), ids

    pipe = stage_alone(batch_size=settings.batch_size, num_threads=settings.threads, device_id=_device_id(settings),
                       seed=rank_seed(settings.seed), exec_dynamic=True, **SYNCHRONOUS)
    pipe.build()
    return pipe


def graph_operators(outputs, inputs) -> List[str]:
    """The DALI operators that make the DataNodes ``outputs`` from the DataNodes ``inputs``: every operator reached
    backwards from ``outputs`` through positional and argument inputs, less ``inputs``' own operators and all that
    feeds them. Each is named by its schema (DALI's automatic instance name without the ``__`` prefix and the
    ``_<id>`` suffix, e.g. "CoordTransform"); sorted."""

    def upstream(nodes) -> Dict[int, object]:
        found, todo = {}, [n.source for n in nodes if n.source is not None]
        while todo:
            op = todo.pop()
            if id(op) not in found:
                found[id(op)] = op
                todo.extend(n.source for n in op.inputs if n.source is not None)
        return found

    given = upstream(inputs)
    made = [op for key, op in upstream(outputs).items() if key not in given]
    return sorted(re.sub(r"^_+|_\d+$", "", op.name) for op in made)


def stage_operators(options, device: str, num_classes: int = 10) -> List[str]:
    """The operators of the mixing stage with ``options`` (:class:`dali_cutmix.MixOptions`) as the training
    pipeline has it on ``device`` ("cpu" or "gpu"; the graph is only defined, never built, so no GPU is needed):
    from uint8 HWC images, class ids and the gate to mixed images and soft labels (:func:`graph_operators`)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import Pipeline

    from dali_cutmix.stage import mix_stage

    with Pipeline(batch_size=2, num_threads=1, device_id=None):
        images = fn.external_source(name="images", device=device, layout="HWC")
        labels, gate = fn.external_source(name="labels"), fn.external_source(name="gate")
        mixed, targets, _ = mix_stage(images, labels, num_classes=num_classes, options=options, gate=gate,
                                      image_type=types.UINT8)
        return graph_operators([mixed, targets], [images, labels, gate])
