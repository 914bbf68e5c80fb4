"""A/B of builds of the native operator library in one run: what ``dali_cutmix_apply`` costs per batch with
each, against one NumPy copy of the same batch.

Each library is loaded by its own worker process (the two register the same operator names, so one process can
hold only one). Both workers build the same stage-alone pipeline: a fixed batch of HWC uint8 images and fixed
CutMix parameters (external sources, so no decode and no parameter draw is timed), then ``dali_cutmix_apply``;
and the same pipeline without the operator. The parent alternates the workers round by round (the order rotates
every round) and each round every worker times ``batches`` runs of: the source alone, the source plus the
operator, and ``numpy.copyto`` of the batch. The operator's cost is the median over rounds of the difference.

    python -m dali_cutmix.profiler.native_ab A.cc B.cc [C.cc ...] [--rounds 8] [--batches 20] [--json OUT]

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
from pathlib import Path
from statistics import median
from typing import Dict, List

from dali_cutmix.helpers.atomic import atomic_path
from dali_cutmix.native import build_command

from .machine import machine_info
from .stats import quiet_figure
from .timing import interleaved_times

#: The stage-alone batch: samples, height, width, channels; the box every sample takes from its partner.
BATCH, HEIGHT, WIDTH, CHANNELS = 64, 224, 224, 3
BOX = (37, 41, 187, 191)  # a 150x150 box: lam = 1 - 150*150/224^2 ~ 0.55, the middle of Beta(1, 1)


def build_library(source: Path, cache: Path) -> Path:
    """``source`` compiled into ``cache/<sha256 of the source>/libmix_ops.so`` (reused when present)."""
    folder = cache / hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    output = folder / "libmix_ops.so"
    if not output.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "libmix_ops.so.part"
        subprocess.run(build_command(partial, source), check=True)
        partial.replace(output)
    return output


def worker(library: str) -> None:
    """The worker: loads ``library``, builds both pipelines, then answers each ``batches`` line on stdin with one
    JSON line ``{"source": [s, ...], "apply": [...], "stage": [...], "copy": [...]}`` and the same with ``_cpu``
    (process CPU time): the seconds of each of that many batches, one of each pipeline and one copy of the batch
    in turn (:func:`~.timing.interleaved_times`; "stage" is the whole CPU stage: seeds, ``dali_cutmix_params`` and
    ``dali_cutmix_apply``)."""
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
    steps = {name: pipe.run for name, pipe in pipes.items()}
    steps["copy"] = lambda: np.copyto(target, batch)
    for line in sys.stdin:
        print(json.dumps(interleaved_times(steps, int(line))), flush=True)


def compare(libraries: Dict[str, Path], rounds: int, batches: int) -> Dict[str, dict]:
    """Per library: the per-round ms per batch of each pipeline and of one copy (:func:`summarize`). The workers
    take turns; the order rotates every round."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = {name: subprocess.Popen([sys.executable, "-m", "dali_cutmix.profiler.native_ab", "--worker", str(lib)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for name, lib in libraries.items()}
    keys = ("source", "apply", "stage", "copy", "source_cpu", "apply_cpu", "stage_cpu", "copy_cpu")
    samples = {name: {f"{key}_ms": [] for key in keys} for name in libraries}
    try:
        names = list(libraries)
        for r in range(rounds + 1):  # round 0 warms up and is dropped; the order rotates every round
            for name in names[r % len(names):] + names[:r % len(names)]:
                procs[name].stdin.write(f"{batches}\n")
                procs[name].stdin.flush()
                t = json.loads(procs[name].stdout.readline())
                if r:
                    for key in keys:
                        samples[name][f"{key}_ms"] += [1e3 * x for x in t[key]]
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    return {name: summarize(s) for name, s in samples.items()}


def summarize(s: Dict[str, List[float]]) -> dict:
    """From the per-batch ms ``s`` of each pipeline: the operator's (``apply``) and the whole stage's (``stage``)
    cost as the difference to the fed sources alone, of the medians and of the 10th percentiles (``*_quiet_ms``:
    what the code costs when the machine leaves it alone: a shared machine only ever slows a batch down); one
    copy of the batch likewise; and each cost in copies of the batch (``*_copies``, of the quiet figures). The quiet
    figure is :func:`~.stats.quiet_figure`, as the profiler's stage-alone figures."""
    out = {f"{key}_batches": len(values) for key, values in s.items()}
    for clock in ("", "_cpu"):
        for key in ("source", "copy", "apply", "stage"):
            values = s[f"{key}{clock}_ms"]
            out[f"{key}{clock}_median_ms"], out[f"{key}{clock}_quiet_ms"] = median(values), quiet_figure(values)
        for key in ("apply", "stage"):
            for figure in ("median", "quiet"):
                out[f"{key}{clock}_cost_{figure}_ms"] = (out[f"{key}{clock}_{figure}_ms"]
                                                         - out[f"source{clock}_{figure}_ms"])
            out[f"{key}{clock}_copies"] = out[f"{key}{clock}_cost_quiet_ms"] / out[f"copy{clock}_quiet_ms"]
    return out


def argv_of(args) -> List[str]:
    """The command line of a comparison with ``args``' settings (for the JSON)."""
    return [str(s) for s in args.sources] + ["--rounds", str(args.rounds), "--batches", str(args.batches)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("sources", nargs="*", type=Path, help="two or more mix_ops.cc sources; each is named by "
                        "its file name without the suffix")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dali-cutmix-native-ab"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if len(args.sources) < 2:
        parser.error("give two or more sources to compare")
    libraries = {source.stem: build_library(source, args.cache) for source in args.sources}
    load_before = os.getloadavg()
    variants = compare(libraries, args.rounds, args.batches)
    command = " ".join(["python -m dali_cutmix.profiler.native_ab"] + argv_of(args))
    result = dict(machine=machine_info(), command=command,
                  load_average_before=load_before, load_average_after=os.getloadavg(),
                  batch=[BATCH, HEIGHT, WIDTH, CHANNELS], box=list(BOX), threads=2, rounds=args.rounds,
                  batches=args.batches, sources={source.stem: str(source) for source in args.sources},
                  variants=variants)
    for name, v in result["variants"].items():
        for clock in ("", "_cpu"):
            print(f"{name:16s} {'wall' if not clock else 'cpu '} ms/batch, quiet (median): "
                  f"stage {v[f'stage{clock}_cost_quiet_ms']:.3f} ({v[f'stage{clock}_cost_median_ms']:.3f})  "
                  f"apply {v[f'apply{clock}_cost_quiet_ms']:.3f} ({v[f'apply{clock}_cost_median_ms']:.3f})  "
                  f"copy {v[f'copy{clock}_quiet_ms']:.3f} ({v[f'copy{clock}_median_ms']:.3f})  "
                  f"stage = {v[f'stage{clock}_copies']:.2f} copies, apply = {v[f'apply{clock}_copies']:.2f}")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
