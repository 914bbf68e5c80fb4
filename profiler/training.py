"""``--model``: training steps fed by our loader, with the trainer's own step, split into data wait and compute."""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from dali_cutmix.errors import UserError
from dali_cutmix.pipelines.profile_data import quiet

from .settings import ProfileSettings
from .stats import summarize
from .timing import endless, synchronize

#: The optimizer of the timed steps (the trainer's SGD; the values do not change a step's cost).
OPTIMIZER = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)


def _check_count(name: str, value, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value!r}")


def check_model(model_name: str, crop: int) -> None:
    """Raise ValueError if ``model_name`` is not a torchvision classification model the trainer accepts, or
    cannot take ``crop`` x ``crop`` images (the trainer's checks; their messages name ``--arch``)."""
    from dali_cutmix.train.model import check_arch, check_input_size

    check_arch(model_name)
    check_input_size(model_name, crop, crop)


def trainer_step(model_name: str, num_classes: int, settings: ProfileSettings):
    """``(step, details)``: the trainer's training step (:func:`dali_cutmix.train.loop.make_train_step`) on a
    fresh ``model_name`` (any torchvision classification model, :func:`dali_cutmix.train.model.build_model`)
    with SGD (:data:`OPTIMIZER`, :func:`dali_cutmix.train.optim.build_optimizer`).

    As the trainer's ``--amp auto``: bfloat16 autocast on the GPU, float32 on the CPU; channels-last on the GPU.
    ``details`` names these choices (for the JSON).

    Raises:
        UserError: ``model_name`` is not a torchvision classification model, or cannot take the crop.
    """
    import torch

    from dali_cutmix.train.loop import amp_dtype, make_train_step
    from dali_cutmix.train.model import build_model
    from dali_cutmix.train.optim import build_optimizer

    check_model(model_name, settings.crop)
    gpu = settings.device == "gpu"
    device = torch.device("cuda", settings.device_id) if gpu else torch.device("cpu")
    model = build_model(model_name, num_classes, device=device, channels_last=gpu, image_size=settings.crop)
    model.train()
    optimizer = build_optimizer(model, **OPTIMIZER)
    dtype = amp_dtype("auto", device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step = make_train_step(model=model, optimizer=optimizer, scaler=scaler, device=device, dtype=dtype,
                           nhwc=gpu)
    details = dict(OPTIMIZER, amp=str(dtype).replace("torch.", "") if dtype is not None else "off",
                   channels_last=gpu)
    return step, details


def measure_training(settings: ProfileSettings, model_name: str, steps: int, warmup: int = 1,
                     torch_threads: Optional[int] = None, progress: Callable[[str], None] = quiet
                     ) -> Dict[str, object]:
    """Training-step throughput of ``model_name`` fed by our loader, and the share of time waiting for data.

    The loader is the real thing, :func:`dali_cutmix.build_cutmix_pipeline` (with the settings' mixing options)
    + :class:`dali_cutmix.CutMixLoader` with its default asynchronous prefetching (it overlaps the model's
    step); the step is :func:`trainer_step`'s. Each timed step is split into waiting for the next batch and the
    model's forward/backward/update (``compute``); ``warmup`` steps come first, untimed. ``torch_threads`` sets
    PyTorch's intra-op threads for the run (default: PyTorch's own choice); on a CPU they share the cores with
    DALI's threads.

    Raises:
        UserError: a bad ``steps``, ``torch_threads`` or ``model_name``.
    """
    import torch

    from dali_cutmix.folder_reader import count_classes

    _check_count("steps", steps)
    _check_count("torch_threads", torch_threads, optional=True)
    settings.check()
    num_classes = count_classes(settings.data)
    threads_before = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        return train_and_time(settings, model_name, num_classes, steps, warmup, progress)
    finally:
        torch.set_num_threads(threads_before)


def train_and_time(settings: ProfileSettings, model_name: str, num_classes: int, steps: int, warmup: int,
                   progress: Callable[[str], None] = quiet) -> Dict[str, object]:
    """The body of :func:`measure_training` (with torch's threads set): run the steps, split each into data
    wait and compute; returns the figures."""
    import torch

    from dali_cutmix.builder import build_cutmix_pipeline
    from dali_cutmix.loader import CutMixLoader

    step, details = trainer_step(model_name, num_classes, settings)
    pipe = build_cutmix_pipeline(settings.data, batch_size=settings.batch_size, num_classes=num_classes,
                                 crop=settings.crop, device=settings.device, device_id=settings.device_id,
                                 num_threads=settings.threads, seed=settings.seed, mix_options=settings.mix,
                                 decode=settings.decode, layout="NHWC" if settings.device == "gpu" else "NCHW",
                                 augment=settings.augment)
    loader = CutMixLoader(pipe, last_batch="fill")
    batches = endless(loader)

    waits, totals = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        images, targets = next(batches)[:2]
        synchronize(settings.device)
        got = time.perf_counter()
        step(images, targets)
        synchronize(settings.device)
        end = time.perf_counter()
        kind = "warm-up step" if i < warmup else f"step {i + 1 - warmup}/{steps}"
        progress(f"{model_name} {kind}: {1000 * (end - start):,.0f} ms ({1000 * (got - start):,.0f} ms waiting "
                 "for data)")
        if i >= warmup:
            waits.append(got - start)
            totals.append(end - start)
    computes = [t - w for t, w in zip(totals, waits)]
    return dict(model=model_name, steps=steps, warmup_steps=warmup, batch_size=settings.batch_size,
                torch_threads=torch.get_num_threads(), dali_threads=settings.threads,
                images_per_s=settings.batch_size * len(totals) / sum(totals),
                step_ms=summarize([1000 * t for t in totals]),
                data_wait_share=sum(waits) / sum(totals),
                data_wait_ms=summarize([1000 * t for t in waits]),
                compute_ms=summarize([1000 * t for t in computes]),
                compute_only_images_per_s=settings.batch_size * len(computes) / sum(computes),
                loader="build_cutmix_pipeline + CutMixLoader (asynchronous, prefetch_queue_depth=2)",
                step="dali_cutmix.train.loop.make_train_step", step_settings=details)
