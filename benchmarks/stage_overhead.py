"""What the mixing stage adds to a CPU training pipeline, measured as ratios in one interleaved run.

The pipeline is the training pipeline's graph (file reader -> decoders.image_random_crop -> resize 224 ->
[stage] -> crop_mirror_normalize with a random flip), batch 64, 2 threads, CPU. Variants:

  none          no stage (the baseline)
  cutmix        dali_cutmix.cutmix, native operators (what the CPU pipeline uses)
  cutmix-ops    CutMix from the stage's pieces: draw_params + mix_pixels_dali, DALI's own operators for the pixels
                (the GPU path's graph), run on the CPU
  mix           dali_cutmix.mix with CutMix and MixUp both on (switch 0.5, per sample)
  composition   CutMix as a plain composition of DALI operators (batch_permutation, random.beta, arithmetic for
                the boxes, a permuted copy, multi_paste, one_hot twice): the first approach this project replaced
  python-fn     CutMix with every parameter drawn by one batch-level python_function (NumPy), pixels by
                multi_paste: the second approach this project replaced

Method: every pipeline runs synchronously (exec_async=False, exec_pipelined=False), so no variant works in the
background while another is timed; rounds interleave the variants; each round times `--batches` batches per
variant; the figure is the median over rounds of time(variant) / time(none), with the interquartile range.
A second, quieter measure times the stage alone on a fixed batch of decoded 224x224 images (external source),
in ms per batch (the median of per-round differences); divided by the full pipeline's ms per batch it gives the
stage's share without decode noise.

    python benchmarks/stage_overhead.py [--images 256] [--rounds 15] [--batches 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dali_cutmix.builder import IMAGENET_MEAN, IMAGENET_STD

BATCH, THREADS, CROP, CLASSES = 64, 2, 224, 1000


def composition_cutmix(images, labels):
    """CutMix (per sample) from plain DALI operators only: one operator per step of the parameters' arithmetic
    (the first approach this project replaced). Returns (mixed images, soft labels)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    perm = fn.batch_permutation()
    lam = fn.random.beta(alpha=1.0, beta=1.0)
    cy = fn.random.uniform(range=[0, CROP], dtype=types.INT32)
    cx = fn.random.uniform(range=[0, CROP], dtype=types.INT32)
    half = fn.cast(dmath.sqrt(1.0 - lam) * CROP, dtype=types.INT32) // 2
    y0, y1 = dmath.clamp(cy - half, 0, CROP), dmath.clamp(cy + half, 0, CROP)
    x0, x1 = dmath.clamp(cx - half, 0, CROP), dmath.clamp(cx + half, 0, CROP)
    anchor = fn.stack(y0, x0)
    zero = anchor * 0
    anchors = fn.stack(zero, anchor)
    shapes = fn.stack(zero + CROP, fn.stack(y1 - y0, x1 - x0))
    partner = fn.permute_batch(images, indices=perm)
    mixed = fn.multi_paste(images, partner, in_anchors=anchors, shapes=shapes, out_anchors=anchors)
    kept = 1.0 - fn.cast((y1 - y0) * (x1 - x0), dtype=types.FLOAT) / (CROP * CROP)
    onehot = fn.one_hot(labels, num_classes=CLASSES)
    return mixed, onehot * kept + fn.permute_batch(onehot, indices=perm) * (1.0 - kept)


def _numpy_cutmix_params(seeds, labels):
    """Batch-level python_function body: official per-sample CutMix parameters, drawn with NumPy."""
    n = len(labels)
    rng = np.random.default_rng(np.stack(seeds).astype(np.uint32).ravel())
    lam = rng.beta(1.0, 1.0, n)
    perm = rng.permutation(n).astype(np.int32)
    half = (CROP * np.sqrt(1.0 - lam)).astype(np.int64) // 2
    cy, cx = rng.integers(0, CROP, n), rng.integers(0, CROP, n)
    y0, y1 = np.clip(cy - half, 0, CROP), np.clip(cy + half, 0, CROP)
    x0, x1 = np.clip(cx - half, 0, CROP), np.clip(cx + half, 0, CROP)
    kept = (1 - (y1 - y0) * (x1 - x0) / CROP**2).astype(np.float32)
    ids = np.stack([np.arange(n, dtype=np.int32), perm], 1)
    anchors = np.zeros((n, 2, 2), np.int32)
    anchors[:, 1] = np.stack([y0, x0], 1)
    regions = np.full((n, 2, 2), CROP, np.int32)
    regions[:, 1] = np.stack([y1 - y0, x1 - x0], 1)
    y = np.array([int(np.asarray(v).reshape(-1)[0]) for v in labels])
    targets = np.zeros((n, CLASSES), np.float32)
    targets[np.arange(n), y] += kept
    targets[np.arange(n), y[perm]] += 1 - kept
    return tuple([a[i, ...] for i in range(n)] for a in (ids, anchors, regions, targets))


def python_function_cutmix(images, labels):
    """CutMix with its parameters from one batch-level python_function (NumPy) and its pixels by multi_paste (the
    second approach this project replaced). Returns (mixed images, soft labels)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    seeds = fn.random.uniform(range=[0, 2**31 - 1], dtype=types.INT32)
    ids, anchors, regions, targets = fn.python_function(seeds, labels, function=_numpy_cutmix_params,
                                                         batch_processing=True, num_outputs=4)
    return fn.multi_paste(images, in_ids=ids, in_anchors=anchors, shapes=regions, out_anchors=anchors), targets


def dali_ops_cutmix(images, labels):
    """CutMix (per sample) from the stage's pieces: the native parameter operator (:func:`draw_params`), then the
    pixels with DALI's own operators (:func:`mix_pixels_dali`, the GPU path), on the images' device. Returns
    (mixed images, soft labels)."""
    from dali_cutmix import MixOptions
    from dali_cutmix.stage import DALI_INPUTS, draw_params, mix_pixels_dali

    options = MixOptions(mode="elem")
    params = draw_params(images, labels, num_classes=CLASSES, options=options, outputs=("targets",) + DALI_INPUTS)
    return mix_pixels_dali(images, params, options), params["targets"]


def stages():
    """{variant name: stage(images, labels) -> (images, labels), or None for no stage}."""
    from dali_cutmix import cutmix, mix

    return {
        "none": None,
        "cutmix": lambda x, y: cutmix(x, y, num_classes=CLASSES, mode="elem"),
        "cutmix-ops": dali_ops_cutmix,
        "mix": lambda x, y: mix(x, y, num_classes=CLASSES, cutmix_alpha=1.0, mixup_alpha=0.8, mode="elem"),
        "composition": composition_cutmix,
        "python-fn": python_function_cutmix,
    }


def full_pipeline(data: Path, stage):
    """The training pipeline's graph with ``stage`` between resize and normalize, built, synchronous."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import reader

    @pipeline_def(batch_size=BATCH, num_threads=THREADS, device_id=None, seed=1, prefetch_queue_depth=1,
                  exec_async=False, exec_pipelined=False)
    def pipe():
        jpegs, labels = reader(data, seed=1)
        images = fn.decoders.image_random_crop(jpegs, device="cpu", output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[0.75, 4 / 3])
        images = fn.resize(images, resize_x=CROP, resize_y=CROP, interp_type=types.INTERP_TRIANGULAR)
        if stage is not None:
            images, labels = stage(images, labels)
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=list(IMAGENET_MEAN),
                                          std=list(IMAGENET_STD), mirror=fn.random.coin_flip(probability=0.5))
        return images, labels

    p = pipe()
    p.build()
    return p


def stage_only_pipeline(batch, stage):
    """``stage`` alone on the fixed uint8 HWC ``batch`` (external source), built, synchronous."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    images_np = [b for b in batch]
    labels_np = [np.array([i % CLASSES], np.int32) for i in range(BATCH)]

    @pipeline_def(batch_size=BATCH, num_threads=THREADS, device_id=None, seed=1, prefetch_queue_depth=1,
                  exec_async=False, exec_pipelined=False)
    def pipe():
        images = fn.external_source(source=lambda: images_np, batch=True, layout="HWC")
        labels = fn.external_source(source=lambda: labels_np, batch=True)
        if stage is not None:
            images, labels = stage(images, labels)
        return images, labels

    p = pipe()
    p.build()
    return p


def interleave(pipes, rounds, batches, label):
    """Seconds per batch of every variant in every round: {name: [s, ...]}."""
    times = {name: [] for name in pipes}
    for p in pipes.values():  # warm up: allocations, first-touch, the native build
        for _ in range(2):
            p.run()
    for r in range(rounds):
        for name, p in pipes.items():
            start = time.perf_counter()
            for _ in range(batches):
                p.run()
            times[name].append((time.perf_counter() - start) / batches)
        print(f"\r{label}: round {r + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return times


def machine():
    """The CPU, its cores and the versions the figures come from."""
    import nvidia.dali as dali

    from dali_cutmix.profiler.machine import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "dali": dali.__version__}


def main(argv=None):
    """Run the benchmark; prints the table, writes ``--json``; returns {variant: figures}."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="JPEGs in the generated data set")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--batches", type=int, default=4, help="batches per variant per round")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)

    from dali_cutmix.pipelines.profile_data import make_profile_dataset

    variants = stages()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_profile_dataset(Path(tmp) / "data", images=args.images, classes=8)
        full = interleave({n: full_pipeline(data, s) for n, s in variants.items()}, args.rounds, args.batches,
                          "full pipeline")
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (BATCH, CROP, CROP, 3), dtype=np.uint8)
    alone = interleave({n: stage_only_pipeline(batch, s) for n, s in variants.items()}, args.rounds * 2,
                       args.batches * 4, "stage alone")

    base = np.array(full["none"])
    base_ms = float(np.median(base)) * 1e3
    rows = {}
    print(f"\nbatch {BATCH}, {THREADS} threads, {CROP}x{CROP}, CPU; full pipeline without the stage: "
          f"{base_ms:.1f} ms/batch ({BATCH / np.median(base):.0f} images/s)")
    print(f"{'variant':12s} {'full ms':>8s} {'ratio':>7s} {'IQR':>15s} {'stage ms':>9s} {'share':>7s}")
    for name in variants:
        ratio = np.array(full[name]) / base
        q1, med, q3 = np.percentile(ratio, [25, 50, 75])
        stage_ms = float(np.median(np.array(alone[name]) - np.array(alone["none"]))) * 1e3  # paired per round
        rows[name] = {"full_ms_per_batch": float(np.median(full[name]) * 1e3), "ratio_median": float(med),
                      "ratio_iqr": [float(q1), float(q3)], "stage_ms_per_batch": float(stage_ms),
                      "stage_share_of_pipeline": float(stage_ms / base_ms)}
        print(f"{name:12s} {rows[name]['full_ms_per_batch']:8.1f} {med:7.3f} [{q1:.3f}, {q3:.3f}] "
              f"{stage_ms:9.2f} {stage_ms / base_ms:7.1%}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "batch": BATCH, "threads": THREADS, "crop": CROP,
                                         "rounds": args.rounds, "batches_per_round": args.batches,
                                         "variants": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
