"""A profiler run: every variant timed in interleaved rounds (and the training step with ``--model``), as one
JSON-ready dict.

Eleven variants, measured in one run, interleaved so that machine drift hits all of them alike:

1. ``decode``            read + decode (full-image decode, ``decoders.image``);
2. ``crop``              read + decode with random-resized-crop (``decoders.image_random_crop``, ROI decoding) +
                         resize, the head of our training pipeline;
3. ``cutmix``            + the mixing stage (:func:`dali_cutmix.mix` with the settings' options);
4. ``full``              + flip/normalize (``crop_mirror_normalize``): the whole training pipeline;
5. ``loader``            the whole pipeline through :class:`dali_cutmix.CutMixLoader`, to torch tensors;
6. ``after_loader``      the pipeline without the stage (``mixing=False``) through the loader, then torchvision's
                         ``v2.CutMix`` (and ``v2.MixUp``) on the batch, on its device: mixing after the loader;
7. ``after_loader_timm`` the same with ``timm.data.Mixup`` (skipped, with the reason, without timm);
8. ``reference``         torchvision ImageFolder + DataLoader (workers = DALI threads) + v2 RandomResizedCrop/flip
                         on PIL images + normalize + v2.CutMix in the collate function, to torch tensors
                         (:mod:`dali_cutmix.pipelines.reference`);
9. ``reference_tensor``  the same with the recipe's tensor backend (``PILToTensor`` before the crop);
10. ``timm_loader``      timm's own loader: ``timm.data.create_loader`` with ``FastCollateMixup`` (mixing in the
                         collate, on uint8) and its ``PrefetchLoader``, mode "batch" (:mod:`.timm_loader`; skipped,
                         with the reason, without timm);
11. ``timm_loader_elem`` the same in mode "elem".

Variants 2-4 are :func:`dali_cutmix.build_cutmix_pipeline` cut after a named stage (:mod:`.graphs`); every
variant has its :mod:`.runners` runner. With ``async_stages`` (default: on the GPU) each of variants 1-4 is also
timed with the builder's prefetching (``images_per_s_async``). A round times every runner once, plus the mixing
stage alone on a fixed batch (with the settings' options and with CutMix, MixUp and switching), each batch timed
in turn with the fed batch alone and one copy of the batch; rounds alternate forward and reversed order (A B C ... C B A), which cancels linear
drift; figures are medians over the rounds with their interquartile range. Paired figures (CutMix's share, our
loader's speed-up over the reference and over mixing after the loader) are computed within each round, then
summarized (:mod:`.stats`). ``benchmarks/README.md`` says more.
"""

from __future__ import annotations

import datetime
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from dali_cutmix.pipelines.profile_data import dataset_summary, quiet

from .machine import CpuLoadMeter, machine_info
from .graphs import stage_operators
from .runners import EXTRA_KEYS, ReferenceRunner, make_runners, method_options
from .settings import ProfileSettings
from .stats import cutmix_shares, describe_round, figures, in_copies, isolated_shares, speedups, summarize
from .timing import Timing
from .training import check_model, measure_training
from .variants import (ISOLATED, LOAD, SKIPPED, STAGE_METHODS, VARIANT_KEYS, VARIANTS, async_key, copy_key,
                       stage_key)

#: The variants our loader is compared with, per round: the JSON key of each ratio (ours / theirs).
COMPARED = dict(loader_vs_reference="reference", loader_vs_reference_tensor="reference_tensor",
                loader_vs_after_loader="after_loader", loader_vs_after_loader_timm="after_loader_timm",
                loader_vs_timm_loader="timm_loader", loader_vs_timm_loader_elem="timm_loader_elem")

SCHEMA = "dali-cutmix-profile/1"
METHOD = dict(
    dali="one batch at a time (exec_pipelined=False, prefetch_queue_depth=1, dynamic executor): nothing "
         "runs in the background between timed runs; the loader's batch scheduled ahead is awaited "
         "untimed after each run and taken untimed before the next",
    dali_async="with async_stages (default: on the GPU), each stage variant is also timed with the builder's "
               "prefetching (prefetch_queue_depth 2, exec_pipelined=True): per run as many batches as the queue "
               "holds taken untimed, the timed batches, then the batches scheduled ahead awaited untimed "
               "(images_per_s_async)",
    after_loader="the full pipeline without the stage (mixing=False; class ids from return_params) through "
                 "CutMixLoader, timed as the loader variant, then the mixer on each batch on its device. "
                 "after_loader: torchvision v2.CutMix(alpha=cutmix_alpha); with MixUp on, v2.RandomChoice of it "
                 "and v2.MixUp(alpha=mixup_alpha) with p = (switch_prob, 1 - switch_prob); torchvision applies no "
                 "cutmix_minmax, prob, per-sample mode or label smoothing. after_loader_timm: timm.data.Mixup "
                 "with every mixing option",
    reference=f"persistent workers = threads, prefetch_factor {ReferenceRunner.PREFETCH_FACTOR}; per run "
              "one epoch: 1 untimed batch, the timed batches, the in-flight batches drained untimed; "
              "reference: transforms on the PIL image, reference_tensor: on the uint8 tensor (torchvision's "
              "--backend tensor); v2.CutMix(alpha=1) in collate_fn for both, whatever the mixing options",
    timm_loader="timm.data.create_loader(ImageDataset, is_training=True, use_prefetcher=True, num_workers = "
                "threads, persistent workers, collate_fn=FastCollateMixup with the settings' options in mode batch "
                "or elem), timed as the reference (one fixed-length epoch per run, drained untimed); our loader "
                "runs in the settings' mode",
    order="rounds alternate forward and reversed variant order (ABBA); medians and quartiles over rounds",
    cutmix_share="per round: the isolated stage's ms/batch over the full pipeline's ms/batch; "
                 "by_stage_difference: per round (1/ips_cutmix - 1/ips_crop) / (1/ips_full); then median "
                 "and quartiles over rounds",
    stage="each method's stage alone on the fixed uint8 batch, 3x the batches every round, each batch in turn: "
          "the fed batch alone (external sources, outputs the images' shape and the labels), the fed batch "
          "through the stage (the same outputs), and one copy of the batch (np.copyto into a preallocated "
          "array; Tensor.copy_ on the GPU), each timed on its own; per round the quiet figure (10th percentile) "
          "of each, the stage's ms = stage - fed batch alone; copies: per round the stage's ms over the copy's "
          "ms; operators: the stage's DALI operators per device, from its graph (uint8 images, class ids, gate)")


def round_order(round_index: int, keys: Sequence[str] = VARIANT_KEYS + EXTRA_KEYS) -> Tuple[str, ...]:
    """Order of a round over the runners ``keys`` (in forward order): forward on even rounds, reversed on odd
    ones (ABBA, cancels linear drift).

    With the default keys, the isolated mixing stage (:data:`~.variants.ISOLATED`) is timed last in forward
    rounds, first in reversed ones.
    """
    keys = tuple(keys)
    return keys if round_index % 2 == 0 else keys[::-1]


def measure_variants(settings: ProfileSettings, progress: Callable[[str], None] = quiet) -> Dict[str, object]:
    """Time every runner :func:`~.runners.make_runners` builds once per round, for ``settings.repeats``
    interleaved rounds (:func:`round_order`).

    Returns :func:`~.stats.figures` of the timings (``{key: [images/s per round]}`` for the variants and the
    stages' asynchronous twins, ``{ISOLATED: [ms per batch the mixing stage adds, per round]}``),
    ``{LOAD: CpuLoadMeter.stop()'s dict}`` (how busy other processes kept the machine meanwhile) and
    ``{SKIPPED: {key: why}}`` for the runners that could not be built here.
    """
    from dali_cutmix.folder_reader import count_classes

    settings.check()
    meter = CpuLoadMeter()
    runners, skipped = make_runners(settings, count_classes(settings.data), progress)
    timings: Dict[str, List[Timing]] = {key: [] for key in runners}
    try:
        for r in range(settings.repeats):
            for key in round_order(r, tuple(runners)):
                timings[key].append(runners[key].measure(settings.batches))
            progress(f"round {r + 1}/{settings.repeats}: "
                     + describe_round({key: t[-1] for key, t in timings.items()}, settings.batch_size))
    finally:
        for runner in runners.values():
            runner.close()
    samples: Dict[str, object] = dict(figures(timings, settings.batch_size))
    samples[LOAD] = meter.stop()
    samples[SKIPPED] = dict(skipped)
    return samples


def data_warnings(images: int, settings: ProfileSettings) -> List[str]:
    """What a data set of ``images`` images does to the figures of ``settings``' run, one line each (none for a
    data set that holds at least one round's timed batches of every variant).

    A DALI variant reads ``batches * batch_size`` images per round; with fewer, the reader wraps around within the
    round and the same few files stay hot in every cache, so images/s come out far above what real data gives
    (and below one batch, every batch repeats its images)."""
    per_round = settings.batches * settings.batch_size
    if images >= per_round:
        return []
    if images < settings.batch_size:
        what = f"fewer than one batch of {settings.batch_size}: every batch repeats its images"
    else:
        what = (f"fewer than the {per_round} a variant reads per round (--batches {settings.batches} x "
                f"--batch-size {settings.batch_size}): images repeat within a round")
    return [f"the data holds {images} images, {what}, so the images/s overstate real data; give at least "
            f"{per_round} images (--images {max(per_round, 1024)} or a larger --data)"]


MIN_ROUNDS = 4


def round_warnings(settings: ProfileSettings) -> List[str]:
    """A warning when ``settings.repeats`` is under :data:`MIN_ROUNDS`: quartiles of so few rounds are not a
    spread (with 2, they are interpolations between the two values)."""
    if settings.repeats >= MIN_ROUNDS:
        return []
    return [f"{settings.repeats} round{'s' if settings.repeats > 1 else ''}: the interquartile ranges (IQR) mean "
            f"nothing with fewer than {MIN_ROUNDS} rounds; use --repeats 5 or more for figures to quote"]


def stage_report(settings: ProfileSettings, samples: Dict[str, object]) -> dict:
    """The mixing stage per method of :data:`~.variants.STAGE_METHODS`: its options, its DALI operators on each
    device (and their count), its ms per batch alone, and that in copies of the batch (per round, over the copies
    timed between its batches); plus the batch, and the copy's ms per batch (the CutMix runner's rounds)."""
    methods = {}
    for method in STAGE_METHODS:
        options = method_options(settings, method)
        operators = {device: stage_operators(options, device) for device in ("cpu", "gpu")}
        entry = dict(options=options.as_dict(), operators=operators,
                     operator_count={device: len(ops) for device, ops in operators.items()})
        key = stage_key(method)
        if key in samples:
            entry["ms_per_batch"] = _summary(samples[key])
            entry["copies"] = _summary(in_copies(samples, key, copy_key(key)))
        methods[method] = entry
    copy = samples.get(copy_key(stage_key("cutmix")))
    return dict(
        batch=dict(shape=[settings.batch_size, settings.crop, settings.crop, 3], dtype="uint8",
                   bytes=settings.batch_size * settings.crop * settings.crop * 3, device=settings.device),
        copy_ms_per_batch=None if copy is None else _summary(copy),
        methods=methods)


def _summary(values: Sequence[float]) -> dict:
    """:func:`~.stats.summarize` of ``values`` with the values themselves (rounded) as ``samples``."""
    return dict(summarize(values), samples=[round(x, 4) for x in values])


def build_result(settings: ProfileSettings, samples: Dict[str, object], *, dataset: dict,
                 training: Optional[dict] = None, command: Optional[str] = None, seconds: float = 0.0,
                 warnings: Sequence[str] = ()) -> dict:
    """Everything the run found, as one JSON-ready dict (``benchmarks/README.md`` lists the keys); ``warnings``:
    what makes its figures doubtful (:func:`data_warnings`), one line each.

    A variant missing from ``samples`` is left out of ``variants``; ``skipped`` says why (``samples[SKIPPED]``).
    Each paired ratio of :data:`COMPARED` is None when its variant was not measured.
    """
    shares, differences = isolated_shares(samples, settings.batch_size), cutmix_shares(samples)
    variants = {}
    for v in VARIANTS:
        if v.key not in samples:
            continue
        variants[v.key] = dict(label=v.label, description=v.description,
                               **_throughput(samples[v.key], settings.batch_size))
        if async_key(v.key) in samples:
            variants[v.key].update({f"{name}_async": value for name, value in
                                    _throughput(samples[async_key(v.key)], settings.batch_size).items()})
    paired = {}
    for name, other in COMPARED.items():
        ratios = speedups(samples, other) if other in samples else None
        paired[name] = None if ratios is None else dict(summarize(ratios), samples=[round(x, 4) for x in ratios])
    # The DALI Dynamic input against the pipeline's loader: its images/s over the loader's, per round.
    dynamic = ([d / l for d, l in zip(samples["dynamic"], samples["loader"])]
               if "dynamic" in samples and "loader" in samples else None)
    paired["dynamic_vs_loader"] = None if dynamic is None else dict(summarize(dynamic),
                                                                    samples=[round(x, 4) for x in dynamic])
    stage_ms = samples[ISOLATED]
    return dict(
        schema=SCHEMA,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command, seconds=round(seconds, 1), machine=machine_info(), settings=settings.as_dict(),
        dataset=dataset,
        warnings=list(warnings),
        method=dict(METHOD),
        machine_load=samples.get(LOAD),
        variants=variants,
        skipped=dict(samples.get(SKIPPED) or {}),
        cutmix_share=dict(
            summarize(shares), samples=[round(x, 5) for x in shares],
            stage_ms_per_batch=dict(summarize(stage_ms), samples=[round(x, 3) for x in stage_ms]),
            by_stage_difference=dict(summarize(differences), samples=[round(x, 5) for x in differences])),
        stage=stage_report(settings, samples),
        **paired,
        training=training,
    )


def _throughput(values: Sequence[float], batch_size: int) -> dict:
    """``images_per_s`` (:func:`~.stats.summarize` of ``values``, images/s per round), ``ms_per_batch`` (of the
    median) and ``samples`` (rounded)."""
    ips = summarize(values)
    return dict(images_per_s=ips, ms_per_batch=1000 * batch_size / ips["median"],
                samples=[round(x, 2) for x in values])


def run_profile(settings: ProfileSettings, *, model: Optional[str] = None, steps: int = 5,
                torch_threads: Optional[int] = None, progress: Callable[[str], None] = quiet,
                command: Optional[str] = None) -> dict:
    """Measure every variant (and the training step of torchvision's ``model``, fed by our loader, with it);
    returns :func:`build_result`'s dict.

    Raises:
        UserError: a bad setting, naming it.
    """
    settings.check()
    if model is not None:
        check_model(model, settings.crop)
    start = time.perf_counter()
    dataset = dataset_summary(settings.data)
    progress(f"data: {dataset['images']} images in {dataset['classes']} classes, "
             f"~{dataset['mean_file_kb']} KB, ~{dataset['mean_width']:.0f}x{dataset['mean_height']:.0f}")
    warnings = data_warnings(dataset["images"], settings) + round_warnings(settings)
    for warning in warnings:
        progress(f"warning: {warning}")
    samples = measure_variants(settings, progress)
    training = (measure_training(settings, model, steps, torch_threads=torch_threads, progress=progress)
                if model else None)
    return build_result(settings, samples, dataset=dataset, training=training, command=command,
                        seconds=time.perf_counter() - start, warnings=warnings)
