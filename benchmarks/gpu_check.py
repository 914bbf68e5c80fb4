"""One-call GPU check of the product path: invariants of the GPU pipeline's outputs, and its speed.

With the package installed (``pip install -e .`` or the wheel, DALI and torch importable), on a machine with a
GPU: ``python benchmarks/gpu_check.py --out gpu_check.json``. It prints a short table last. With
``--device cpu`` it runs the same checks on the CPU (that is how the tests keep the script working).

Checks (the stage on the device, outputs copied back only for checking, against ``tests/reference.py``):
  * mixed pixels equal own pixels outside the box and the partner's inside (the stage on decoded images,
    against the returned params), for CutMix and for CutMix+MixUp (MixUp within uint8 rounding);
  * soft labels equal the weighted one-hots.
Speed (median of repeats, synchronous per variant):
  * the full training pipeline (``build_cutmix_pipeline``) with and without the mixing stage, images/s at
    ``--batch`` (``check_targets.py`` holds the GPU targets);
  * the stage alone on a fixed batch of ``--batch`` x 224 x 224 x 3 uint8: ms per batch and the effective
    bandwidth (bytes read + written / time), to see whether it is memory-bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # reference.py: the NumPy reference


def to_numpy(out):
    """A DALI output batch as one NumPy array (copied from the GPU if needed)."""
    out = out.as_cpu() if hasattr(out, "as_cpu") else out
    return np.array(out.as_tensor())


def check_stage(data, device, batch, mixup_alpha):
    """Run the stage (``mix``, per sample) on decoded, resized images on ``device`` and compare three batches
    with the NumPy reference; returns the largest pixel difference (raises AssertionError beyond 0 for CutMix,
    1 with MixUp)."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    import reference as ref
    from dali_cutmix import mix
    from dali_cutmix.pipeline import reader

    @pipeline_def(batch_size=batch, num_threads=4, device_id=0 if device == "gpu" else None, seed=3)
    def pipe():
        jpegs, labels = reader(data)
        images = fn.decoders.image(jpegs, device="mixed" if device == "gpu" else "cpu")
        images = fn.resize(images, resize_x=224, resize_y=224)
        mixed, targets, p = mix(images, labels, num_classes=8, mixup_alpha=mixup_alpha, mode="elem",
                                return_params=True)
        return images, mixed, targets, labels, p["perm"], p["box"], p["lam"], p["method"]

    p = pipe()
    p.build()
    worst = 0
    for _ in range(3):
        source, mixed, targets, labels, perm, box, lam, method = (to_numpy(o) for o in p.run())
        expected = ref.mix_pixels(source, perm, box, method, lam)
        worst = max(worst, int(np.abs(mixed.astype(int) - expected.astype(int)).max()))
        np.testing.assert_allclose(targets, ref.soft_labels(labels.reshape(-1), perm, lam, 8), atol=1e-5)
    assert worst <= (1 if mixup_alpha > 0 else 0), f"pixels differ from the reference by {worst}"
    return worst


def time_runs(p, batches, repeats):
    """Median over ``repeats`` of the seconds per ``p.run()`` (``batches`` runs each), after 3 untimed runs."""
    for _ in range(3):
        p.run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            p.run()
        times.append((time.perf_counter() - start) / batches)
    return float(np.median(times))


def full_pipeline_rate(data, device, batch, mixing, batches, repeats):
    """Images/s of the training pipeline (float16 output) with or without the mixing stage (CutMix, the
    defaults of MixOptions)."""
    from dali_cutmix import build_cutmix_pipeline

    p = build_cutmix_pipeline(data, batch_size=batch, device=device, num_threads=8, mixing=mixing, fp16=True)
    p.build()
    return batch / time_runs(p, batches, repeats)


def stage_alone_ms(device, batch, variant, batches, repeats):
    """Ms per batch of a fixed batch on ``device`` through nothing ("none"), a copy ("copy"), CutMix ("cutmix")
    or CutMix + MixUp ("mix"), per sample."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from dali_cutmix import mix

    rng = np.random.default_rng(0)
    images_np = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    labels_np = rng.integers(0, 8, (batch, 1), dtype=np.int32)

    @pipeline_def(batch_size=batch, num_threads=4, device_id=0 if device == "gpu" else None, seed=1,
                  exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
    def pipe():
        images = fn.external_source(source=lambda: images_np, batch=True, layout="HWC", device=device)
        labels = fn.external_source(source=lambda: labels_np, batch=True)
        if variant == "copy":
            images = fn.copy(images)
        elif variant != "none":
            images, labels = mix(images, labels, num_classes=8, mode="elem",
                                 mixup_alpha=0.8 if variant == "mix" else 0.0)
        return images, labels

    p = pipe()
    p.build()
    return time_runs(p, batches, repeats) * 1e3


def main(argv=None):
    """Run the checks and the timings; prints the table, writes ``--out``; returns every figure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=1024, help="JPEGs to generate")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="JSON with every figure")
    args = parser.parse_args(argv)

    from dali_cutmix.pipelines.profile_data import make_profile_dataset

    results = {"device": args.device, "batch": args.batch}
    if args.device == "gpu":
        import torch

        results["gpu"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_profile_dataset(Path(tmp) / "data", images=args.images, classes=8)
        results["max_pixel_error_cutmix"] = check_stage(data, args.device, 16, 0.0)
        results["max_pixel_error_mix"] = check_stage(data, args.device, 16, 0.8)
        for mixing in (False, True):
            key = "pipeline_images_per_s_" + ("cutmix" if mixing else "no_stage")
            results[key] = full_pipeline_rate(data, args.device, args.batch, mixing, args.batches, args.repeats)
    batch_bytes = args.batch * 224 * 224 * 3
    for variant in ("none", "copy", "cutmix", "mix"):
        results[f"stage_alone_ms_{variant}"] = stage_alone_ms(args.device, args.batch, variant, args.batches,
                                                               args.repeats)
    for variant in ("copy", "cutmix", "mix"):
        ms = results[f"stage_alone_ms_{variant}"] - results["stage_alone_ms_none"]
        results[f"stage_ms_{variant}"] = ms
        results[f"stage_GBps_{variant}"] = 2 * batch_bytes / (ms * 1e-3) / 1e9 if ms > 0 else None
    results["cutmix_share_of_pipeline"] = 1 - (results["pipeline_images_per_s_cutmix"]
                                               / results["pipeline_images_per_s_no_stage"])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:{width}s}  {value:.4g}" if isinstance(value, float) else f"{key:{width}s}  {value}")
    return results


if __name__ == "__main__":
    main()
