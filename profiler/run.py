"""A profiler run: every variant timed in interleaved rounds (and the training step with ``--model``), as one
JSON-ready dict.

Six variants, measured in one run, interleaved so that machine drift hits all of them alike:

1. ``decode``    read + decode (full-image decode, ``decoders.image``);
2. ``crop``      read + decode with random-resized-crop (``decoders.image_random_crop``, ROI decoding) + resize,
                 the head of our training pipeline;
3. ``cutmix``    + the mixing stage (:func:`dali_cutmix.mix` with the settings' options);
4. ``full``      + flip/normalize (``crop_mirror_normalize``): the whole training pipeline;
5. ``loader``    the whole pipeline through :class:`dali_cutmix.CutMixLoader`, to torch tensors;
6. ``reference`` torchvision ImageFolder + DataLoader (workers = DALI threads) + v2 RandomResizedCrop/flip/
                 normalize + v2.CutMix in the collate function, to torch tensors
                 (:mod:`dali_cutmix.pipelines.reference`).

Variants 2-4 are :func:`dali_cutmix.build_cutmix_pipeline` cut after a named stage (:mod:`.graphs`); every
variant has its :mod:`.runners` runner. A round times every variant once, plus the mixing stage alone on a
fixed batch; rounds alternate forward and reversed order (A B C ... C B A), which cancels linear drift; figures
are medians over the rounds with their interquartile range. Paired figures (CutMix's share, the speed-up over
the reference) are computed within each round, then summarized (:mod:`.stats`). ``benchmarks/README.md`` says
more.
"""

from __future__ import annotations

import datetime
import time
from typing import Callable, Dict, List, Optional, Tuple

from dali_cutmix.pipelines.profile_data import dataset_summary, quiet

from .machine import CpuLoadMeter, machine_info
from .runners import ReferenceRunner, make_runners
from .settings import ProfileSettings
from .stats import cutmix_shares, describe_round, figures, isolated_shares, speedups, summarize
from .timing import Timing
from .training import check_model, measure_training
from .variants import ISOLATED, LOAD, VARIANT_KEYS, VARIANTS

SCHEMA = "dali-cutmix-profile/1"
METHOD = dict(
    dali="one batch at a time (exec_pipelined=False, prefetch_queue_depth=1, dynamic executor): nothing "
         "runs in the background between timed runs; the loader's batch scheduled ahead is awaited "
         "untimed after each run and taken untimed before the next",
    reference=f"persistent workers = threads, prefetch_factor {ReferenceRunner.PREFETCH_FACTOR}; per run "
              "one epoch: 1 untimed batch, the timed batches, the in-flight batches drained untimed",
    order="rounds alternate forward and reversed variant order (ABBA); medians and quartiles over rounds",
    cutmix_share="per round: the isolated stage's ms/batch over the full pipeline's ms/batch; "
                 "by_stage_difference: per round (1/ips_cutmix - 1/ips_crop) / (1/ips_full); then median "
                 "and quartiles over rounds")


def round_order(round_index: int) -> Tuple[str, ...]:
    """Order of a round: forward on even rounds, reversed on odd ones (ABBA, cancels linear drift).

    The isolated mixing stage (:data:`~.variants.ISOLATED`) is timed last in forward rounds, first in reversed
    ones.
    """
    keys = VARIANT_KEYS + (ISOLATED,)
    return keys if round_index % 2 == 0 else keys[::-1]


def measure_variants(settings: ProfileSettings, progress: Callable[[str], None] = quiet) -> Dict[str, object]:
    """Time every runner once per round, for ``settings.repeats`` interleaved rounds.

    Returns :func:`~.stats.figures` of the timings (``{key: [images/s per round]}`` for the variants,
    ``{ISOLATED: [ms per batch the mixing stage adds, per round]}``) and ``{LOAD: CpuLoadMeter.stop()'s dict}``
    (how busy other processes kept the machine meanwhile).
    """
    from dali_cutmix.data import count_classes

    settings.check()
    meter = CpuLoadMeter()
    runners = make_runners(settings, count_classes(settings.data), progress)
    timings: Dict[str, List[Timing]] = {key: [] for key in runners}
    try:
        for r in range(settings.repeats):
            for key in round_order(r):
                timings[key].append(runners[key].measure(settings.batches))
            progress(f"round {r + 1}/{settings.repeats}: "
                     + describe_round({key: t[-1] for key, t in timings.items()}, settings.batch_size))
    finally:
        for runner in runners.values():
            runner.close()
    samples: Dict[str, object] = dict(figures(timings, settings.batch_size))
    samples[LOAD] = meter.stop()
    return samples


def build_result(settings: ProfileSettings, samples: Dict[str, object], *, dataset: dict,
                 training: Optional[dict] = None, command: Optional[str] = None, seconds: float = 0.0) -> dict:
    """Everything the run found, as one JSON-ready dict (``benchmarks/README.md`` lists the keys)."""
    shares, differences = isolated_shares(samples, settings.batch_size), cutmix_shares(samples)
    ratios = speedups(samples)
    variants = {}
    for v in VARIANTS:
        ips = summarize(samples[v.key])
        variants[v.key] = dict(label=v.label, description=v.description, images_per_s=ips,
                               ms_per_batch=1000 * settings.batch_size / ips["median"],
                               samples=[round(x, 2) for x in samples[v.key]])
    stage_ms = samples[ISOLATED]
    return dict(
        schema=SCHEMA,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command, seconds=round(seconds, 1), machine=machine_info(), settings=settings.as_dict(),
        dataset=dataset,
        method=dict(METHOD),
        machine_load=samples.get(LOAD),
        variants=variants,
        cutmix_share=dict(
            summarize(shares), samples=[round(x, 5) for x in shares],
            stage_ms_per_batch=dict(summarize(stage_ms), samples=[round(x, 3) for x in stage_ms]),
            by_stage_difference=dict(summarize(differences), samples=[round(x, 5) for x in differences])),
        loader_vs_reference=dict(summarize(ratios), samples=[round(x, 4) for x in ratios]),
        training=training,
    )


def run_profile(settings: ProfileSettings, *, model: Optional[str] = None, steps: int = 5,
                torch_threads: Optional[int] = None, progress: Callable[[str], None] = quiet,
                command: Optional[str] = None) -> dict:
    """Measure every variant (and the training step of torchvision's ``model``, fed by our loader, with it);
    returns :func:`build_result`'s dict.

    Raises:
        ValueError: a bad setting, naming it.
    """
    settings.check()
    if model is not None:
        check_model(model, settings.crop)
    start = time.perf_counter()
    dataset = dataset_summary(settings.data)
    progress(f"data: {dataset['images']} images in {dataset['classes']} classes, "
             f"~{dataset['mean_file_kb']} KB, ~{dataset['mean_width']:.0f}x{dataset['mean_height']:.0f}")
    samples = measure_variants(settings, progress)
    training = (measure_training(settings, model, steps, torch_threads=torch_threads, progress=progress)
                if model else None)
    return build_result(settings, samples, dataset=dataset, training=training, command=command,
                        seconds=time.perf_counter() - start)
