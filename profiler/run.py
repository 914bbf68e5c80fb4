"""A profiler run: every variant timed in interleaved rounds (and the training step with ``--model``), as one
JSON-ready dict.

Thirteen variants, measured in one run, interleaved so that machine drift hits all of them alike:

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
                         collate, on uint8) and its ``PrefetchLoader``, mode "batch", its augmentation set to ours
                         (:mod:`.timm_loader`; skipped, with the reason, without timm);
11. ``timm_loader_elem`` the same in mode "elem";
12. ``loader_paper``     variant 5 with the paper's augmentation (``build_cutmix_pipeline(augment="paper")``);
13. ``reference_paper``  variant 8 with the official CutMix recipe's ``ColorJitter`` and ``Lighting``: the pair
                         "paper augmentation on both sides".

Every peer applies the augmentation of the variant of ours it is paired with (:data:`COMPARED`; the JSON names
each variant's transforms).

Variants 2-4 are :func:`dali_cutmix.build_cutmix_pipeline` cut after a named stage (:mod:`.graphs`); every
variant has its :mod:`.runners` runner. With ``async_stages`` (default: on the GPU) each of variants 1-4 is also
timed with the builder's prefetching (``images_per_s_async``). A round times every runner once, plus the mixing
stage alone on a fixed batch (with the settings' options and with CutMix, MixUp and switching), each batch timed
in turn with the fed batch alone and one copy of the batch; rounds alternate forward and reversed order
(A B C ... C B A), which cancels linear drift; figures are medians over the rounds with their interquartile range.
Paired figures (CutMix's share, our loader's speed-up over each peer, our loader over its own pipeline's crop
stage) are computed within each round, then summarized (:mod:`.stats`). ``benchmarks/README.md`` says more.
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
                       stage_key, variant_augmentation, variant_options)

#: The paired figures, per round: the JSON key of each ratio and its two variants ``(ours, theirs)``, ours over
#: theirs in images/s. Each peer is paired with our loader running the same augmentation; ``loader_vs_crop`` is
#: our loader against its own pipeline's decode + random-resized-crop + resize: what the rest costs (the mixing
#: stage, flip/normalize, the hand-off to torch); ``loader_vs_full`` against its own pipeline run directly: what
#: the hand-off to torch costs; ``loader_async_vs_crop_async`` (with ``async_stages``) the same as training runs
#: it, both with the builder's prefetching.
COMPARED = dict(loader_vs_reference=("loader", "reference"),
                loader_vs_reference_tensor=("loader", "reference_tensor"),
                loader_vs_after_loader=("loader", "after_loader"),
                loader_vs_after_loader_timm=("loader", "after_loader_timm"),
                loader_vs_timm_loader=("loader", "timm_loader"),
                loader_vs_timm_loader_elem=("loader", "timm_loader_elem"),
                loader_paper_vs_reference_paper=("loader_paper", "reference_paper"),
                loader_vs_crop=("loader", "crop"),
                loader_vs_full=("loader", "full"),
                loader_async_vs_crop_async=("loader_async", "crop_async"),
                dynamic_vs_loader=("dynamic", "loader"))

SCHEMA = "dali-cutmix-profile/1"
METHOD = dict(
    dali="one batch at a time (exec_pipelined=False, prefetch_queue_depth=1, dynamic executor): nothing "
         "runs in the background between timed runs; the loader's batch scheduled ahead is awaited "
         "untimed after each run and taken untimed before the next",
    dali_async="with async_stages (default: on the GPU), each stage variant and the loader (as training runs it) "
               "are also timed with the builder's prefetching (prefetch_queue_depth 2, exec_pipelined=True): per "
               "run as many batches as the queue "
               "holds taken untimed, the timed batches, then the batches scheduled ahead awaited untimed "
               "(images_per_s_async)",
    after_loader="the full pipeline without the stage (mixing=False; class ids from return_params) through "
                 "CutMixLoader, timed as the loader variant, then the mixer on each batch on its device. "
                 "after_loader: torchvision v2.CutMix(alpha=cutmix_alpha); with MixUp on, v2.RandomChoice of it "
                 "and v2.MixUp(alpha=mixup_alpha) with p = (switch_prob, 1 - switch_prob); torchvision applies no "
                 "cutmix_minmax, prob, per-sample mode or label smoothing. after_loader_timm: timm.data.Mixup "
                 "with every mixing option",
    reference=f"persistent workers = threads, prefetch_factor {ReferenceRunner.PREFETCH_FACTOR}; per run "
              "one epoch of exactly the timed batches, timed from its start (workers idle) to its last batch "
              "(workers idle again): nothing made ahead or left in flight; an epoch of k x workers batches keeps "
              "every worker busy throughout, another count leaves some idle in its last round (a warning says "
              "so); reference: transforms on the PIL image, reference_tensor: on the uint8 tensor (torchvision's "
              "--backend tensor), reference_paper: on the PIL image, then the official CutMix utils.ColorJitter "
              "and utils.Lighting on the float tensor; v2.CutMix(alpha=1) in collate_fn for all, whatever the "
              "mixing options",
    timm_loader="timm.data.create_loader(ImageDataset, is_training=True, use_prefetcher=True, num_workers = "
                "threads, persistent workers, collate_fn=FastCollateMixup with the settings' options in mode batch "
                "or elem, and the augmentation arguments that make timm's train transform ours: color_jitter=None, "
                "auto_augment=None, re_prob=0, hflip=0.5, vflip=0, grayscale_prob=0, gaussian_blur_prob=0, "
                "interpolation bilinear), timed as the reference (one epoch of the timed batches per run); our "
                "loader runs in the settings' mode",
    augmentation="each variant's augment (the training pipeline's preset it runs or matches) and augmentation "
                 "(its per-sample transforms by name, mixing aside): every peer applies what the variant of ours "
                 "it is paired with applies (COMPARED pairs loader with the none peers, loader_paper with "
                 "reference_paper); loader_vs_crop is our loader over its own pipeline cut after the crop, per "
                 "round",
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


def measure_variants(settings: ProfileSettings, progress: Callable[[str], None] = quiet,
                     measured: Optional[Callable[[Dict[str, object]], object]] = None) -> Dict[str, object]:
    """Time every runner :func:`~.runners.make_runners` builds once per round, for ``settings.repeats``
    interleaved rounds (:func:`round_order`).

    Returns :func:`~.stats.figures` of the timings (``{key: [images/s per round]}`` for the variants and the
    stages' asynchronous twins, ``{ISOLATED: [ms per batch the mixing stage adds, per round]}``),
    ``{LOAD: CpuLoadMeter.stop()'s dict}`` (how busy other processes kept the machine meanwhile) and
    ``{SKIPPED: {key: why}}`` for the runners that could not be built here. ``measured``, when given, is called
    with the samples so far (the same keys, the runners not yet timed left out) after each runner's measurement.
    """
    from dali_cutmix.folder_reader import count_classes

    settings.check()
    meter = CpuLoadMeter()
    runners, skipped = make_runners(settings, count_classes(settings.data), progress)
    timings: Dict[str, List[Timing]] = {key: [] for key in runners}

    def samples(final: bool = True) -> Dict[str, object]:
        found: Dict[str, object] = dict(figures({k: t for k, t in timings.items() if t}, settings.batch_size))
        found[LOAD] = meter.stop(reap=final)
        found[SKIPPED] = dict(skipped)
        return found

    try:
        for r in range(settings.repeats):
            for key in round_order(r, tuple(runners)):
                timings[key].append(runners[key].measure(settings.batches))
                if measured is not None:
                    measured(samples(final=False))
            progress(f"round {r + 1}/{settings.repeats}: "
                     + describe_round({key: t[-1] for key, t in timings.items()}, settings.batch_size))
    finally:
        for runner in runners.values():
            runner.close()
    return samples()


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


def worker_warnings(settings: ProfileSettings) -> List[str]:
    """A warning when ``settings.batches`` is not a multiple of ``settings.threads``: the CPU peers (torchvision's
    reference, timm's loader) make each run's batches from idle on ``threads`` workers, one batch per worker at a
    time, so an epoch of another count leaves workers idle in its last round and their images/s understate their
    steady state, by up to the share of worker time left idle."""
    batches, workers = settings.batches, settings.threads
    if batches % workers == 0:
        return []
    used = batches / (workers * -(-batches // workers))
    return [f"--batches {batches} is not a multiple of the {workers} workers of the CPU peers (torchvision's "
            f"reference, timm's loader): their runs keep {100 * used:.0f}% of the worker time busy, so their "
            f"images/s understate their steady state by up to {100 * (1 - used):.0f}%; give --batches a multiple "
            f"of --threads for peer figures to quote"]


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
                 warnings: Sequence[str] = (), machine: Optional[dict] = None, complete: bool = True) -> dict:
    """Everything the run found, as one JSON-ready dict (``benchmarks/README.md`` lists the keys); ``warnings``:
    what makes its figures doubtful (:func:`data_warnings`), one line each; ``machine``: :func:`machine_info`'s
    dict (default: read now); ``complete``: False for the figures of a run still measuring (its ``complete`` key).

    A variant missing from ``samples`` is left out of ``variants``; ``skipped`` says why (``samples[SKIPPED]``).
    Each paired ratio of :data:`COMPARED` is None when either of its variants was not measured, and
    ``cutmix_share`` None while the stages it is taken from are not all measured (a run cut short).
    """
    variants = {}
    for v in VARIANTS:
        if v.key not in samples:
            continue
        variants[v.key] = dict(label=v.label, description=v.description,
                               augment=variant_options(v.key, settings.augment).as_dict(),
                               augmentation=list(variant_augmentation(v.key, settings.augment)),
                               **_throughput(samples[v.key], settings.batch_size))
        if async_key(v.key) in samples:
            variants[v.key].update({f"{name}_async": value for name, value in
                                    _throughput(samples[async_key(v.key)], settings.batch_size).items()})
    paired = {}
    for name, (ours, theirs) in COMPARED.items():
        ratios = speedups(samples, theirs, ours) if ours in samples and theirs in samples else None
        paired[name] = dict(summarize(ratios), samples=[round(x, 4) for x in ratios]) if ratios else None
    return dict(
        schema=SCHEMA,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command, complete=complete, seconds=round(seconds, 1),
        machine=machine_info() if machine is None else machine, settings=settings.as_dict(),
        dataset=dataset,
        warnings=list(warnings),
        method=dict(METHOD),
        machine_load=samples.get(LOAD),
        variants=variants,
        pairs={name: dict(ours=ours, theirs=theirs) for name, (ours, theirs) in COMPARED.items()},
        skipped=dict(samples.get(SKIPPED) or {}),
        cutmix_share=_cutmix_share(settings, samples),
        stage=stage_report(settings, samples),
        **paired,
        training=training,
    )


def _cutmix_share(settings: ProfileSettings, samples: Dict[str, object]) -> Optional[dict]:
    """The JSON's ``cutmix_share``; None until the isolated stage and stages 2-4 are all measured."""
    if not all(samples.get(key) for key in (ISOLATED, "crop", "cutmix", "full")):
        return None
    shares, differences = isolated_shares(samples, settings.batch_size), cutmix_shares(samples)
    stage_ms = samples[ISOLATED]
    return dict(summarize(shares), samples=[round(x, 5) for x in shares],
                stage_ms_per_batch=dict(summarize(stage_ms), samples=[round(x, 3) for x in stage_ms]),
                by_stage_difference=dict(summarize(differences), samples=[round(x, 5) for x in differences]))


def _throughput(values: Sequence[float], batch_size: int) -> dict:
    """``images_per_s`` (:func:`~.stats.summarize` of ``values``, images/s per round), ``ms_per_batch`` (of the
    median) and ``samples`` (rounded)."""
    ips = summarize(values)
    return dict(images_per_s=ips, ms_per_batch=1000 * batch_size / ips["median"],
                samples=[round(x, 2) for x in values])


def run_profile(settings: ProfileSettings, *, model: Optional[str] = None, steps: int = 5,
                torch_threads: Optional[int] = None, progress: Callable[[str], None] = quiet,
                command: Optional[str] = None, save: Optional[Callable[[dict], object]] = None) -> dict:
    """Measure every variant (and the training step of torchvision's ``model``, fed by our loader, with it);
    returns :func:`build_result`'s dict.

    ``save``, when given, is called with the result so far (``complete`` False) each time a variant has been
    measured, and with the final result: a run cut short leaves what it measured (``write_json`` as ``save``
    writes each atomically).

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
    warnings = data_warnings(dataset["images"], settings) + round_warnings(settings) + worker_warnings(settings)
    for warning in warnings:
        progress(f"warning: {warning}")
    machine = machine_info()

    def result(samples: Dict[str, object], training: Optional[dict] = None, complete: bool = True) -> dict:
        return build_result(settings, samples, dataset=dataset, training=training, command=command,
                            seconds=time.perf_counter() - start, warnings=warnings, machine=machine,
                            complete=complete)

    measured = None if save is None else (lambda samples: save(result(samples, complete=False)))
    samples = measure_variants(settings, progress, measured)
    training = (measure_training(settings, model, steps, torch_threads=torch_threads, progress=progress)
                if model else None)
    final = result(samples, training)
    if save is not None:
        save(final)
    return final
