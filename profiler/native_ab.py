"""A/B of two builds of the native operator library in one run: what ``dali_cutmix_apply`` costs per batch with
each, against one NumPy copy of the same batch.

Each library is loaded by its own worker process (the two register the same operator names, so one process can
hold only one). Both workers build the same stage-alone pipeline: a fixed batch of HWC uint8 images and fixed
CutMix parameters (external sources, so no decode and no parameter draw is timed), then ``dali_cutmix_apply``;
and the same pipeline without the operator. The parent alternates the workers round by round (the order swaps
every round) and each round every worker times ``batches`` runs of: the source alone, the source plus the
operator, and ``numpy.copyto`` of the batch. The operator's cost is the median over rounds of the difference.

    python -m dali_cutmix.profiler.native_ab BEFORE.cc AFTER.cc [--rounds 8] [--batches 20] [--json OUT]

(``git show REV:dali_cutmix/native/mix_ops.cc > BEFORE.cc`` gives an older source.) Each source is compiled
with the flags :mod:`dali_cutmix.native` uses into its own folder under ``--cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

from dali_cutmix.helpers.atomic import atomic_path

#: The stage-alone batch: samples, height, width, channels; the box every sample takes from its partner.
BATCH, HEIGHT, WIDTH, CHANNELS = 64, 224, 224, 3
BOX = (37, 41, 187, 191)  # a 150x150 box: lam = 1 - 150*150/224^2 ~ 0.55, the middle of Beta(1, 1)


def compile_command(source: Path, output: Path) -> List[str]:
    """The compiler command that builds ``source`` into ``output`` as :mod:`dali_cutmix.native` builds its
    library (``-std=c++20 -O3``, DALI's compile and link flags, the CUDA runtime headers)."""
    import nvidia.dali.sysconfig as sysconfig

    cuda = [os.path.join(c, "include") for c in (os.environ.get("CUDA_HOME"), "/usr/local/cuda") if c]
    cuda = [d for d in cuda if os.path.isfile(os.path.join(d, "cuda_runtime_api.h"))][:1]
    compiler = os.environ.get("CXX", "").strip() or "g++"
    return ([compiler, "-std=c++20", "-O3", "-shared", "-fPIC", "-w"] + [f"-I{d}" for d in cuda]
            + sysconfig.get_compile_flags() + [str(source), "-o", str(output)] + sysconfig.get_link_flags())


def build_library(source: Path, cache: Path) -> Path:
    """``source`` compiled into ``cache/<sha256 of the source>/libmix_ops.so`` (reused when present)."""
    folder = cache / hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    output = folder / "libmix_ops.so"
    if not output.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "libmix_ops.so.part"
        subprocess.run(compile_command(source, partial), check=True)
        partial.replace(output)
    return output


def worker(library: str) -> None:
    """The worker: loads ``library``, builds both pipelines, then answers each ``batches`` line on stdin with one
    JSON line ``{"source": s, "apply": s, "stage": s, "copy": s}`` (seconds for that many batches; "stage" is
    the whole CPU stage: seeds, ``dali_cutmix_params`` and ``dali_cutmix_apply``)."""
    import numpy as np
    import nvidia.dali.fn as fn
    import nvidia.dali.plugin_manager as plugin_manager
    from nvidia.dali import pipeline_def

    plugin_manager.load_library(library)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (HEIGHT, WIDTH, CHANNELS), dtype=np.uint8) for _ in range(BATCH)]
    perm = [np.array((i + 1) % BATCH, np.int32) for i in range(BATCH)]
    box = [np.array(BOX, np.int32)] * BATCH
    method = [np.array(1, np.int32)] * BATCH
    lam = [np.array(1.0, np.float32)] * BATCH

    def constant(batch):
        return fn.external_source(source=lambda: batch, batch=True, no_copy=True)

    @pipeline_def(batch_size=BATCH, num_threads=2, device_id=None, exec_async=False, exec_pipelined=False,
                  prefetch_queue_depth=1, exec_dynamic=True)
    def pipeline(with_apply: bool):
        pixels = fn.external_source(source=lambda: images, batch=True, no_copy=True, layout="HWC")
        fed = (constant(perm), constant(box), constant(method), constant(lam), constant(labels))
        # The same sources, fed and returned (their shapes only: returning a source's batch may copy it), so only
        # the operator differs.
        if not with_apply:
            return (pixels.shape(device="cpu"),) + fed
        return (fn.dali_cutmix_apply(pixels, *fed[:4]).shape(device="cpu"),) + fed[4:]

    labels = [np.array(i % 10, np.int32) for i in range(BATCH)]

    def params(pixels):
        """perm, box, method, lam from the library's ``dali_cutmix_params`` (its schema: named outputs from
        f4b6577 on, all nine before), seeded by ``random.uniform`` as the stage does."""
        import nvidia.dali.types as types

        from dali_cutmix.options import MixOptions
        from dali_cutmix.stage import NATIVE_INPUTS, SEED_HIGH

        seeds = fn.random.uniform(range=[0, SEED_HIGH], dtype=types.INT32)
        inputs = (seeds, constant(labels), pixels.shape(device="cpu"))  # the labels: fed once, as in "source"
        import nvidia.dali.backend as backend

        if backend.GetSchema("DaliCutmixParams").HasArgument("outputs"):
            args = dict(MixOptions().as_dict(), cutmix_minmax=[])
            return fn.dali_cutmix_params(*inputs, num_classes=1000, outputs=list(NATIVE_INPUTS), **args)
        nodes = fn.dali_cutmix_params(*inputs, num_classes=1000, cutmix_alpha=1.0, minmax=[])
        return nodes[1], nodes[2], nodes[4], nodes[3]  # targets, perm, box, lam, method, ...

    @pipeline_def(batch_size=BATCH, num_threads=2, device_id=None, exec_async=False, exec_pipelined=False,
                  prefetch_queue_depth=1, seed=1, exec_dynamic=True)
    def stage_pipeline():
        pixels = fn.external_source(source=lambda: images, batch=True, no_copy=True, layout="HWC")
        unused = (constant(perm), constant(box), constant(method), constant(lam))  # fed as the others are
        return (fn.dali_cutmix_apply(pixels, *params(pixels)).shape(device="cpu"),) + unused

    pipes = {"source": pipeline(False), "apply": pipeline(True), "stage": stage_pipeline()}
    for pipe in pipes.values():
        pipe.build()
        pipe.run()
    batch = np.stack(images)
    target = np.empty_like(batch)
    for line in sys.stdin:
        batches = int(line)
        result = {}
        for name, pipe in pipes.items():
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(batches):
                pipe.run()
            result[name], result[f"{name}_cpu"] = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            np.copyto(target, batch)
        result["copy"], result["copy_cpu"] = time.perf_counter() - start, time.process_time() - cpu
        print(json.dumps(result), flush=True)


def median(values: List[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def compare(libraries: Dict[str, Path], rounds: int, batches: int) -> Dict[str, dict]:
    """Per library: the per-round ms per batch of the operator (apply minus source) and of one copy, and their
    medians. The workers alternate; the order swaps every round."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = {name: subprocess.Popen([sys.executable, "-m", "dali_cutmix.profiler.native_ab", "--worker", str(lib)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for name, lib in libraries.items()}
    keys = ("source", "apply", "stage", "copy", "source_cpu", "apply_cpu", "stage_cpu", "copy_cpu")
    samples = {name: {f"{key}_ms": [] for key in keys} for name in libraries}
    try:
        names = list(libraries)
        for r in range(rounds + 1):  # round 0 warms up and is dropped
            for name in names if r % 2 else names[::-1]:
                procs[name].stdin.write(f"{batches}\n")
                procs[name].stdin.flush()
                t = json.loads(procs[name].stdout.readline())
                if r:
                    for key in keys:
                        samples[name][f"{key}_ms"].append(1e3 * t[key] / batches)
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    return {name: summarize(s) for name, s in samples.items()}


def summarize(s: Dict[str, List[float]]) -> dict:
    """The per-round ms per batch ``s`` with: the operator's (``apply``) and the whole stage's (``stage``) cost as
    the median of the per-round differences to the source alone, and as the difference of the fastest rounds
    (``*_best_ms``: what the code costs when the machine leaves it alone); one copy likewise; and both costs in
    copies of the batch."""
    def diff(key, base):
        return [x - y for x, y in zip(s[key], s[base])]

    out = dict(s)
    for clock in ("", "_cpu"):
        source, copy = s[f"source{clock}_ms"], s[f"copy{clock}_ms"]
        out[f"copy{clock}_median_ms"], out[f"copy{clock}_best_ms"] = median(copy), min(copy)
        for key in ("apply", "stage"):
            costs = diff(f"{key}{clock}_ms", f"source{clock}_ms")
            out[f"{key}{clock}_median_ms"] = median(costs)
            out[f"{key}{clock}_best_ms"] = min(s[f"{key}{clock}_ms"]) - min(source)
            out[f"{key}{clock}_copies_median"] = median([d / c for d, c in zip(costs, copy)])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("before", nargs="?", type=Path)
    parser.add_argument("after", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dali-cutmix-native-ab"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.before is None or args.after is None:
        parser.error("BEFORE and AFTER sources are required")
    libraries = {"before": build_library(args.before, args.cache), "after": build_library(args.after, args.cache)}
    result = dict(batch=[BATCH, HEIGHT, WIDTH, CHANNELS], box=list(BOX), threads=2, rounds=args.rounds,
                  batches=args.batches, sources={k: str(v) for k, v in (("before", args.before),
                                                                         ("after", args.after))},
                  load_average=os.getloadavg(), variants=compare(libraries, args.rounds, args.batches))
    for name, v in result["variants"].items():
        for clock in ("", "_cpu"):
            print(f"{name:7s} {'wall' if not clock else 'cpu '} ms/batch, median (best): "
                  f"stage {v[f'stage{clock}_median_ms']:.3f} ({v[f'stage{clock}_best_ms']:.3f})  "
                  f"apply {v[f'apply{clock}_median_ms']:.3f} ({v[f'apply{clock}_best_ms']:.3f})  "
                  f"copy {v[f'copy{clock}_median_ms']:.3f} ({v[f'copy{clock}_best_ms']:.3f})  "
                  f"stage/copy {v[f'stage{clock}_copies_median']:.2f}")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
