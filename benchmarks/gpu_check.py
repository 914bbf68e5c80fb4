"""One-call check of the GPU product path, made to be run once on a borrowed GPU machine and lose nothing.

    python benchmarks/gpu_check.py --out gpu_check.json            # on a GPU machine
    python benchmarks/gpu_check.py --device cpu --batch 8 ...       # the same sections on the CPU (the tests)

Four sections run in this order; each is independent: one that raises is recorded (status "failed", its error's
first line and traceback) and the next one still runs. The JSON (``--out``) is rewritten atomically before and
after each section, so a crash or a kill leaves every finished section's results and names the one that was
running. One line is printed per finished section, a short table last. Exit code: 0 when every section passed,
1 otherwise.

1. ``smoke_roi_decode``: in a subprocess (a crash of the decoder cannot take this script with it), one batch of
   the builder's ROI decode (``decoders.image_random_crop``, "mixed" on the GPU) over the data. If it fails,
   the later sections decode whole images (``build_cutmix_pipeline(decode="full")``) and say so.
2. ``invariants``: the stage (:func:`dali_cutmix.stage.mix_stage`) on decoded crops on the device, its pixels,
   labels and parameters against ``tests/reference.py`` for CutMix only, CutMix + MixUp, ``prob`` < 1, and pair
   mode with an odd batch. CutMix and unmixed samples must be exact; MixUp samples may differ by
   :data:`MIXUP_PIXEL_TOLERANCE` (DALI's GPU cast rounds ties to even, the reference away from zero); soft labels
   within :data:`LABEL_TOLERANCE`.
3. ``pipeline_throughput``: images/s of the whole ``build_cutmix_pipeline`` (asynchronous, the builder's
   prefetching, float16 output), with the mixing stage and with ``mixing=False``, timed in the same rounds
   (alternating order) in steady state.
4. ``stage_alone``: the stage on a batch that already lives on the device (a GPU tensor handed to
   ``external_source(device="gpu", no_copy=True)``; a host batch on the CPU), followed by flip/normalize, with
   and without the stage, one batch per ``run()``: ms per batch (CUDA events on the GPU, ``perf_counter`` on
   the CPU) and the stage's share of the pipeline's ms per batch from section 3.

JSON: ``schema``, ``status`` ("running", then "passed", "failed" or "interrupted"), ``created``, ``command``,
``settings`` (the flags), ``machine`` and ``sections.<name>``: ``status`` ("running" while it runs), ``started``,
``seconds``, ``result`` (the section's figures; a failed check keeps what it measured), and for a failure
``error`` and ``traceback``. ``benchmarks/README.md`` ("GPU figures: the commands") says which figure is
judged against which target.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gc
import json
import platform
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from dali_cutmix.profiler.timing import synchronize, wait_until_idle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # reference.py: the NumPy reference

SCHEMA = "dali-cutmix/gpu_check/1"
SECTIONS = ("smoke_roi_decode", "invariants", "pipeline_throughput", "stage_alone")
#: Largest pixel difference allowed for a MixUp sample (rounding of ties: to even on the GPU, away from zero in
#: the reference); CutMix and unmixed samples must be exact.
MIXUP_PIXEL_TOLERANCE = 1
#: Largest difference allowed between a soft label and the reference's, and in a soft label's sum from 1.
LABEL_TOLERANCE = 1e-6
#: The invariants' cases: mixing options of :class:`dali_cutmix.MixOptions`. "pair_odd_batch" runs an odd batch.
INVARIANT_CASES = {
    "cutmix": dict(cutmix_alpha=1.0, mixup_alpha=0.0, mode="elem"),
    "cutmix_mixup": dict(cutmix_alpha=1.0, mixup_alpha=0.8, switch_prob=0.5, mode="elem", label_smoothing=0.1),
    "prob_below_1": dict(cutmix_alpha=1.0, mixup_alpha=0.8, switch_prob=0.5, prob=0.5, mode="elem"),
    "pair_odd_batch": dict(cutmix_alpha=1.0, mixup_alpha=0.8, switch_prob=0.5, mode="pair"),
}
#: How long the smoke test's subprocess may take before it is killed and counted as failed.
SMOKE_TIMEOUT_S = 300
#: Python code the smoke test's subprocess runs; ``sys.argv[1]`` is the JSON spec of :func:`smoke_child`.
SMOKE_CHILD_CODE = ("import json, sys; sys.path.insert(0, {here!r}); import gpu_check; "
                    "gpu_check.smoke_child(json.loads(sys.argv[1]))")
SMOKE_RESULT_MARK = "SMOKE_RESULT "
#: JPEGs in the generated data set (the profiler's default, so both share one generated set).
DEFAULT_IMAGES = 1024
#: A section still running after this long gets every thread's traceback dumped to stderr (it keeps running).
HANG_REPORT_S = 240


# ----------------------------------------------------------------------------------------------------------------
# Running sections


class CheckFailed(AssertionError):
    """A section's check failed; ``result`` holds what the section measured, kept in the JSON."""

    def __init__(self, message: str, result: Mapping):
        super().__init__(message)
        self.result = dict(result)


def first_line(error: BaseException) -> str:
    """``Type: first line of the message`` of ``error``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def jsonable(value):
    """``value`` with NumPy scalars and arrays, tuples and Paths turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_report(report: Mapping, out: Optional[Path]) -> None:
    """Write ``report`` as JSON to ``out`` atomically (readers see the old file or the new one, never half of
    one); nothing without ``out``. A failed write is reported on stderr and does not stop the run."""
    if out is None:
        return
    from dali_cutmix.helpers.atomic import atomic_path

    try:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(jsonable(report), indent=2) + "\n")
    except OSError as e:
        print(f"warning: could not write {out}: {e}", file=sys.stderr, flush=True)


def start_hang_report() -> bool:
    """Have every thread's traceback dumped to stderr if the running section takes over :data:`HANG_REPORT_S`;
    False where stderr has no file descriptor (then nothing is dumped)."""
    try:
        faulthandler.dump_traceback_later(HANG_REPORT_S, exit=False)
        return True
    except (AttributeError, OSError, ValueError):
        return False


def section_name(section: Callable) -> str:
    """The name a section is recorded under: its function's name."""
    return getattr(section, "__name__", None) or type(section).__name__


def run_sections(sections: Sequence[Callable[[Mapping], Mapping]], out: Optional[Path],
                 report: Optional[dict] = None, *, echo: Callable[[str], None] = print) -> dict:
    """Run ``sections`` in order and return the report (``report`` with ``status`` and ``sections`` filled in).

    Each section is called with the report so far (read it; later sections use earlier results) and returns a
    dict of results. A section that raises is recorded as "failed" with its error's first line and traceback
    (and the ``result`` of a :class:`CheckFailed`), and the next section runs. ``out`` is written before each
    section (it shows as "running") and after it. One line per finished section goes to ``echo``. An interrupt
    (``KeyboardInterrupt``, ``SystemExit``) is recorded on the running section, written, and raised again.

    Raises:
        ValueError: two sections have the same name.
    """
    names = [section_name(s) for s in sections]
    if len(set(names)) != len(names):
        raise ValueError(f"section names must be unique, got {names}")
    report = {} if report is None else report
    report["status"] = "running"
    report.setdefault("sections", {})
    for name, section in zip(names, sections):
        started = time.perf_counter()
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report["sections"][name] = {"status": "running", "started": stamp}
        write_report(report, out)
        hang_report = start_hang_report()
        entry = {"status": "passed", "started": stamp}
        try:
            entry["result"] = dict(section(report) or {})
        except BaseException as e:  # noqa: B902 - recorded, then interrupts are raised again below
            entry = {"status": "failed", "started": stamp, "error": first_line(e),
                     "traceback": traceback.format_exc()}
            if isinstance(e, CheckFailed):
                entry["result"] = e.result
            if not isinstance(e, Exception):
                entry["status"] = "interrupted"
                entry["seconds"] = time.perf_counter() - started
                report["sections"][name] = entry
                report["status"] = "interrupted"
                write_report(report, out)
                raise
        finally:
            if hang_report:
                faulthandler.cancel_dump_traceback_later()
        entry["seconds"] = round(time.perf_counter() - started, 3)
        report["sections"][name] = entry
        write_report(report, out)
        summary = entry.get("error") if entry["status"] != "passed" else (entry["result"].get("summary") or "")
        echo(f"{entry['status']:6s} {name} ({entry['seconds']:.1f} s){': ' + summary if summary else ''}")
    statuses = [report["sections"][n]["status"] for n in names]
    report["status"] = "passed" if all(s == "passed" for s in statuses) else "failed"
    write_report(report, out)
    return report


def exit_code(report: Mapping) -> int:
    """0 when the report's every section passed, 1 otherwise."""
    return 0 if report.get("status") == "passed" else 1


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def to_numpy(out) -> np.ndarray:
    """A DALI output batch of one shape as one NumPy array (copied from the GPU if needed)."""
    out = out.as_cpu() if hasattr(out, "as_cpu") else out
    return np.array(out.as_tensor())


def summarize(values: Sequence[float]) -> Dict[str, object]:
    """``median``, ``q1``, ``q3``, ``min``, ``max``, ``n`` and the ``samples`` of ``values``."""
    values = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return dict(median=float(median), q1=float(q1), q3=float(q3), min=float(values.min()),
                max=float(values.max()), n=int(values.size), samples=[float(v) for v in values])


def machine_info(device: str) -> Dict[str, object]:
    """Versions and hardware the figures come from; an item that cannot be read holds ``error: ...``."""
    import importlib.metadata as metadata

    from dali_cutmix.helpers.host import usable_cores

    def dali_version():
        import nvidia.dali as dali

        return dali.__version__

    def torch_versions():
        import torch

        return {"torch": torch.__version__, "cuda": torch.version.cuda,
                "cuda_available": torch.cuda.is_available()}

    def gpu():
        import torch

        props = torch.cuda.get_device_properties(0)
        return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                "count": torch.cuda.device_count()}

    def nvimgcodec():
        return {d.metadata["Name"]: d.version for d in metadata.distributions()
                if "nvimgcodec" in (d.metadata["Name"] or "").lower()}

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_cores_usable": usable_cores()}
    getters = dict(dali=dali_version, torch=torch_versions, nvimgcodec=nvimgcodec)
    if device == "gpu":
        getters["gpu"] = gpu
    for key, getter in getters.items():
        try:
            info[key] = getter()
        except Exception as e:  # the report says what could not be read; the checks go on
            info[key] = f"error: {first_line(e)}"
    return info


# ----------------------------------------------------------------------------------------------------------------
# Section 1: the ROI decode, in a subprocess


def smoke_child(spec: Mapping) -> None:
    """The smoke test's subprocess: build and run one batch of the builder's ROI decode (``reader`` ->
    ``decode_random_crop(decode="roi")``) on ``spec["device"]``; print one line ``SMOKE_RESULT {json}`` with
    the batch's shape, dtype and blank samples. Exits non-zero on an error (or dies with the decoder)."""
    faulthandler.enable()  # a crash prints the Python traceback to stderr, which the parent keeps
    import nvidia.dali.fn  # noqa: F401 - import errors surface here, before the pipeline
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import decode_random_crop, rank_seed, reader

    device, crop = spec["device"], spec["crop"]

    @pipeline_def(enable_conditionals=False)
    def roi_decode():
        jpegs, labels = reader(spec["data"], seed=spec["seed"])
        return decode_random_crop(jpegs, device=device, crop=(crop, crop), decode="roi"), labels

    started = time.perf_counter()
    pipe = roi_decode(batch_size=spec["batch"], num_threads=spec["threads"],
                      device_id=0 if device == "gpu" else None, seed=rank_seed(spec["seed"]), exec_dynamic=True)
    pipe.build()
    images, _ = pipe.run()
    on_device = type(images).__name__
    images = to_numpy(images)
    blank = int(sum(float(image.std()) == 0.0 for image in images))
    result = dict(output_type=on_device, shape=list(images.shape), dtype=str(images.dtype), blank_samples=blank,
                  mean_pixel=float(images.mean()), seconds=time.perf_counter() - started)
    print(SMOKE_RESULT_MARK + json.dumps(result), flush=True)


def smoke_command(spec: Mapping) -> List[str]:
    """The smoke test's subprocess command: this Python running :data:`SMOKE_CHILD_CODE` on ``spec``."""
    return [sys.executable, "-c", SMOKE_CHILD_CODE.format(here=str(HERE)), json.dumps(jsonable(spec))]


def run_smoke(spec: Mapping, timeout_s: float = SMOKE_TIMEOUT_S) -> Dict[str, object]:
    """Run :func:`smoke_child` in a subprocess and judge it: ``passed`` when it exited 0 and printed a batch of
    ``spec``'s shape, uint8, with no blank sample. Also ``returncode``, ``signal`` (the name of the signal that
    killed it), ``timed_out``, ``batch`` (what the child printed) and ``stderr_tail``."""
    started = time.perf_counter()
    timed_out = False
    try:
        proc = subprocess.run(smoke_command(spec), capture_output=True, text=True, timeout=timeout_s)
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        timed_out, returncode = True, None
        stdout, stderr = (s.decode(errors="replace") if isinstance(s, bytes) else (s or "")
                          for s in (e.stdout, e.stderr))
    batch = None
    for line in stdout.splitlines():
        if line.startswith(SMOKE_RESULT_MARK):
            batch = json.loads(line[len(SMOKE_RESULT_MARK):])
    killed_by = None
    if returncode is not None and returncode < 0:
        try:
            killed_by = signal.Signals(-returncode).name
        except ValueError:
            killed_by = str(-returncode)
    expected = [spec["batch"], spec["crop"], spec["crop"], 3]
    problems = []
    if timed_out:
        problems.append(f"no result within {timeout_s} s")
    elif returncode != 0:
        last = (stderr.strip().splitlines() or [""])[-1].strip()
        problems.append(f"the subprocess {'died of ' + killed_by if killed_by else f'exited {returncode}'}"
                        + (f" ({last})" if last else ""))
    if batch is None:
        problems.append("no batch came out")
    else:
        if batch["shape"] != expected or batch["dtype"] != "uint8":
            problems.append(f"batch {batch['shape']} {batch['dtype']}, expected {expected} uint8")
        if batch["blank_samples"]:
            problems.append(f"{batch['blank_samples']} blank sample(s)")
    return dict(passed=not problems, problems=problems, returncode=returncode, signal=killed_by,
                timed_out=timed_out, seconds=time.perf_counter() - started, batch=batch,
                stderr_tail="\n".join(stderr.strip().splitlines()[-25:]))


# ----------------------------------------------------------------------------------------------------------------
# Section 2: invariants against the NumPy reference


def compare_batch(source, mixed, targets, labels, perm, box, lam, method, *, num_classes: int, options,
                  pair: bool) -> Dict[str, object]:
    """One mixed batch against the reference (``tests/reference.py``) from its own params.

    Returns ``max_pixel_error_exact`` (CutMix and unmixed samples), ``max_pixel_error_mixup``, ``mixup_pixels_off``
    (pixels that differ), ``max_label_error``, ``methods`` (counts of 0 none, 1 CutMix, 2 MixUp) and
    ``violations``: one line per broken rule (pixels, labels, label sums, boxes and lam, pair symmetry).
    """
    import reference as ref

    labels = labels.reshape(-1)
    perm, lam, method = perm.reshape(-1), lam.reshape(-1), method.reshape(-1)
    box = box.reshape(-1, 4)
    n, height, width = source.shape[:3]
    violations = []
    if mixed.shape != source.shape or mixed.dtype != source.dtype:
        violations.append(f"mixed images are {mixed.shape} {mixed.dtype}, the input {source.shape} {source.dtype}")
        return dict(violations=violations)
    expected = ref.mix_pixels(source, perm, box, method, lam)
    diff = np.abs(mixed.astype(np.int32) - expected.astype(np.int32)).reshape(n, -1)
    exact, blended = method != 2, method == 2
    max_exact = int(diff[exact].max()) if exact.any() else 0
    max_mixup = int(diff[blended].max()) if blended.any() else 0
    if max_exact != 0:
        bad = np.flatnonzero(exact & (diff.max(1) > 0))
        violations.append(f"CutMix/unmixed pixels differ by up to {max_exact} (samples {bad[:8].tolist()})")
    if max_mixup > MIXUP_PIXEL_TOLERANCE:
        bad = np.flatnonzero(blended & (diff.max(1) > MIXUP_PIXEL_TOLERANCE))
        violations.append(f"MixUp pixels differ by up to {max_mixup} (samples {bad[:8].tolist()})")
    reference_labels = ref.soft_labels(labels, perm, lam, num_classes, options.label_smoothing)
    label_error = float(np.abs(targets.astype(np.float64) - reference_labels).max())
    if label_error > LABEL_TOLERANCE:
        violations.append(f"soft labels differ from the reference by {label_error:.3g}")
    sums = float(np.abs(targets.astype(np.float64).sum(1) - 1).max())
    if sums > LABEL_TOLERANCE:
        violations.append(f"soft labels sum to 1 within {sums:.3g} only")
    if (box[method != 1] != 0).any():
        violations.append("a sample that is not CutMix'ed has a non-zero box")
    if (lam[method == 0] != 1).any():
        violations.append("an unmixed sample has lam != 1")
    cut = method == 1
    if options.correct_lam and cut.any():
        area = (box[cut, 2] - box[cut, 0]) * (box[cut, 3] - box[cut, 1])
        if np.abs(lam[cut] - (1 - area / (height * width))).max() > LABEL_TOLERANCE:
            violations.append("a CutMix lam is not the kept share of own pixels")
    if pair:
        if not (perm[perm] == np.arange(n)).all():
            violations.append("pair mode: the partners are not an involution")
        fixed = np.flatnonzero(perm == np.arange(n))
        if n % 2 and (len(fixed) != 1 or method[fixed].any()):
            violations.append(f"pair mode, odd batch: expected one unmixed odd one out, got {fixed.tolist()}")
        partner = perm
        if ((method != method[partner]) | (lam != lam[partner]) | (box != box[partner]).any(1)).any():
            violations.append("pair mode: partners do not share method, lam and box")
    counts = np.bincount(method.astype(np.int64), minlength=3)
    return dict(max_pixel_error_exact=max_exact, max_pixel_error_mixup=max_mixup,
                mixup_pixels_off=int((diff[blended] > 0).sum()), max_label_error=label_error,
                methods={"none": int(counts[0]), "cutmix": int(counts[1]), "mixup": int(counts[2])},
                violations=violations)


def invariant_pipeline(data, *, device: str, decode: str, batch: int, crop: int, num_classes: int, options,
                       threads: int, seed: int):
    """Built: reader -> the builder's decode + random crop (``decode``) -> the stage, on ``device``. Outputs the
    stage's input and output images, soft labels, class ids and its params (:data:`PARAM_NAMES` order)."""
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import decode_random_crop, mix_gate, rank_seed, reader
    from dali_cutmix.stage import PARAM_NAMES, mix_stage

    @pipeline_def(enable_conditionals=False)
    def stage_on_crops():
        jpegs, labels = reader(data, seed=seed)
        images = decode_random_crop(jpegs, device=device, crop=(crop, crop), decode=decode)
        # the gate keeps the reader's padding of a last batch out of the partners, as in the training pipeline
        mixed, targets, params = mix_stage(images, labels, num_classes=num_classes, options=options,
                                           gate=mix_gate())
        return (images, mixed, targets, labels) + tuple(params[k] for k in PARAM_NAMES)

    pipe = stage_on_crops(batch_size=batch, num_threads=threads, device_id=0 if device == "gpu" else None,
                          seed=rank_seed(seed), exec_dynamic=True)
    pipe.build()
    return pipe


# ----------------------------------------------------------------------------------------------------------------
# Section 4: the stage alone


def stage_alone_pipeline(*, device: str, batch: int, crop: int, num_classes: int, options, with_stage: bool,
                         threads: int, seed: int):
    """Built, one batch per ``run()``: a fixed random uint8 HWC batch already on ``device`` (a CUDA tensor handed
    over with ``no_copy`` on "gpu", a host array on "cpu") -> [the stage ->] flip/normalize to float16; without
    the stage the labels are the builder's one-hots, as with ``mixing=False``."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import flip_normalize, one_hot_labels, rank_seed
    from dali_cutmix.stage import mix_stage

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, crop, crop, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, (batch, 1), dtype=np.int32)
    gpu = device == "gpu"
    if gpu:
        import torch

        images = torch.from_numpy(images).cuda()
        torch.cuda.synchronize()

    @pipeline_def(enable_conditionals=False)
    def stage_tail():
        pixels = fn.external_source(source=lambda: images, batch=True, no_copy=True, layout="HWC", device=device)
        ids = fn.external_source(source=lambda: labels, batch=True, no_copy=True)
        if with_stage:
            pixels, targets, _ = mix_stage(pixels, ids, num_classes=num_classes, options=options)
        else:
            targets = one_hot_labels(ids, num_classes, label_smoothing=options.label_smoothing, device=device)
        return flip_normalize(pixels, fp16=True), targets

    pipe = stage_tail(batch_size=batch, num_threads=threads, device_id=0 if gpu else None, seed=rank_seed(seed),
                      exec_dynamic=True, exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
    pipe.build()
    return pipe


def stage_timer(device: str) -> Callable:
    """``time(pipe, batches) -> ms per batch``: CUDA events around ``batches`` runs whose outputs are bound to one
    stream (on "gpu"), ``perf_counter`` around them (on "cpu")."""
    if device != "gpu":
        def time_cpu(pipe, batches):
            start = time.perf_counter()
            for _ in range(batches):
                pipe.run()
            return (time.perf_counter() - start) * 1e3 / batches

        return time_cpu

    import torch

    stream = torch.cuda.Stream()

    def time_gpu(pipe, batches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record(stream)
        for _ in range(batches):
            pipe.run(stream)
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / batches

    return time_gpu


# ----------------------------------------------------------------------------------------------------------------
# The sections


class GpuCheck:
    """The four sections over one set of settings (parsed flags); call them through :func:`run_sections`.

    ``decode`` is "roi" until ``smoke_roi_decode`` fails, then "full"; the data set is made on first use, so a
    section that needs no data (``stage_alone``) runs even if making it failed.
    """

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = args.device
        self.decode = "roi"
        self._data = None

    def sections(self) -> List[Callable]:
        """The sections, in :data:`SECTIONS` order."""
        return [getattr(self, name) for name in SECTIONS]

    def data(self) -> Path:
        """The data set: ``--data``, or the generated set of ``--images`` JPEGs in the cache folder."""
        if self._data is None:
            if self.args.data is not None:
                self._data = Path(self.args.data)
            else:
                from dali_cutmix.pipelines.profile_data import default_profile_dataset

                self._data = default_profile_dataset(self.args.images or DEFAULT_IMAGES)
        return self._data

    def mix_options(self):
        """The pipeline's mixing options (:class:`dali_cutmix.MixOptions`' defaults) for sections 3 and 4."""
        from dali_cutmix import MixOptions

        return MixOptions()

    def smoke_roi_decode(self, report: Mapping) -> Dict[str, object]:
        """One batch of the ROI decode in a subprocess; on failure (a crash included) the later sections use
        ``decode="full"``. Raises :class:`CheckFailed` when the batch did not come out whole."""
        from dali_cutmix.pipelines.profile_data import dataset_summary

        passed = False
        try:
            args = self.args
            spec = dict(data=str(self.data()), device=self.device, batch=args.batch, crop=args.crop,
                        threads=args.threads, seed=args.seed)
            result = run_smoke(spec)
            passed = result["passed"]
            result["later_sections_decode"] = "roi" if passed else "full"
            try:
                result["dataset"] = dataset_summary(self.data())
            except Exception as e:  # the data's description is not part of the check
                result["dataset"] = f"error: {first_line(e)}"
            summary = (f"ROI decode of {args.batch} images on {self.device}: "
                       + ("ok" if passed else "; ".join(result["problems"]) + "; later sections decode full"))
            result["summary"] = summary
            if not passed:
                raise CheckFailed(summary, result)
            return result
        finally:
            self.decode = "roi" if passed else "full"

    def invariants(self, report: Mapping) -> Dict[str, object]:
        """The stage's outputs against the reference in every case of :data:`INVARIANT_CASES`, on the device.
        Raises :class:`CheckFailed` naming the cases that broke a rule; every case is run and kept."""
        from dali_cutmix import MixOptions
        from dali_cutmix.folder_reader import count_classes

        args = self.args
        num_classes = count_classes(self.data())
        cases, broken = {}, []
        for name, fields in INVARIANT_CASES.items():
            options = MixOptions.coerce(fields)
            pair = options.mode == "pair"
            batch = args.check_batch | 1 if pair else args.check_batch
            case = dict(options=fields, batch=batch, batches=args.check_batches)
            try:
                pipe = invariant_pipeline(self.data(), device=self.device, decode=self.decode, batch=batch,
                                          crop=args.crop, num_classes=num_classes, options=options,
                                          threads=args.threads, seed=args.seed)
                totals = dict(max_pixel_error_exact=0, max_pixel_error_mixup=0, mixup_pixels_off=0,
                              max_label_error=0.0)
                methods = {"none": 0, "cutmix": 0, "mixup": 0}
                violations = []
                for _ in range(args.check_batches):
                    outputs = pipe.run()
                    case["output_types"] = [type(o).__name__ for o in outputs[1:3]]
                    if self.device == "gpu" and case["output_types"] != ["TensorListGPU"] * 2:
                        violations.append(f"mixed images and soft labels are {case['output_types']}, not on the GPU")
                    stats = compare_batch(*(to_numpy(o) for o in outputs), num_classes=num_classes,
                                          options=options, pair=pair)
                    violations += stats.pop("violations")
                    for key in ("max_pixel_error_exact", "max_pixel_error_mixup", "max_label_error"):
                        totals[key] = max(totals[key], stats.get(key, 0))
                    totals["mixup_pixels_off"] += stats.get("mixup_pixels_off", 0)
                    for key, count in stats.get("methods", {}).items():
                        methods[key] += count
                del pipe
                gc.collect()  # the case's pipeline (and its device buffers) goes before the next is built
                case.update(totals, methods=methods, violations=sorted(set(violations)))
            except Exception as e:  # one broken case does not hide the others
                case.update(error=first_line(e), traceback=traceback.format_exc())
                violations = [case["error"]]
            cases[name] = case
            if violations:
                broken.append(name)
        result = dict(decode=self.decode, num_classes=num_classes, crop=args.crop, cases=cases,
                      max_pixel_error_exact=max(c.get("max_pixel_error_exact", 0) for c in cases.values()),
                      max_pixel_error_mixup=max(c.get("max_pixel_error_mixup", 0) for c in cases.values()),
                      max_label_error=max(c.get("max_label_error", 0.0) for c in cases.values()))
        if broken:
            result["summary"] = f"rules broken in {', '.join(broken)}"
            raise CheckFailed(result["summary"], result)
        result["summary"] = (f"{len(cases)} cases: CutMix/unmixed pixels exact, MixUp within "
                             f"{result['max_pixel_error_mixup']}, labels within {result['max_label_error']:.1g} "
                             f"(decode {self.decode})")
        return result

    def pipeline_throughput(self, report: Mapping) -> Dict[str, object]:
        """Images/s of ``build_cutmix_pipeline`` (fp16, asynchronous, default prefetching) with and without the
        mixing stage, timed in the same rounds in alternating order, each arm in steady state: the batches made
        ahead are consumed untimed first, and the other pipeline is idle while one is timed."""
        from dali_cutmix import build_cutmix_pipeline

        args = self.args
        options = self.mix_options()
        arms = {}
        for arm, mixing in (("mixing", True), ("no_mixing", False)):
            arms[arm] = build_cutmix_pipeline(
                self.data(), batch_size=args.batch, num_classes=args.num_classes, crop=args.crop,
                device=self.device, mixing=mixing, mix_options=options, num_threads=args.threads, seed=args.seed,
                fp16=True, decode=self.decode)
            arms[arm].build()
        depth = arms["mixing"].prefetch_queue_depth
        depth = max(depth.values()) if isinstance(depth, dict) else int(depth)
        for pipe in arms.values():  # warm-up: allocations, the decoders' first use, the native operators' load
            for _ in range(depth + 3):
                pipe.run()
        seconds = {arm: [] for arm in arms}
        for r in range(args.rounds):
            for arm in (arms if r % 2 == 0 else reversed(list(arms))):
                pipe = arms[arm]
                wait_until_idle(self.device)
                for _ in range(depth + 2):  # the batches made ahead come at once; then runs wait on production
                    pipe.run()
                synchronize(self.device)
                start = time.perf_counter()
                for _ in range(args.batches):
                    pipe.run()
                synchronize(self.device)
                seconds[arm].append((time.perf_counter() - start) / args.batches)
        del arms, pipe
        gc.collect()
        rates = {arm: [args.batch / s for s in seconds[arm]] for arm in seconds}
        ratio = [m / n for m, n in zip(rates["mixing"], rates["no_mixing"])]
        result = dict(decode=self.decode, batch=args.batch, crop=args.crop, threads=args.threads,
                      num_classes=args.num_classes, fp16=True, prefetch_queue_depth=depth, rounds=args.rounds,
                      batches_per_round=args.batches, mix_options=options.as_dict(),
                      images_per_s={arm: summarize(v) for arm, v in rates.items()},
                      ms_per_batch={arm: summarize([1e3 * s for s in v]) for arm, v in seconds.items()},
                      mixing_to_no_mixing=summarize(ratio))
        ips = result["images_per_s"]
        result["summary"] = (f"{ips['mixing']['median']:,.0f} images/s with the stage, "
                             f"{ips['no_mixing']['median']:,.0f} without (ratio "
                             f"{result['mixing_to_no_mixing']['median']:.3f}, batch {args.batch}, "
                             f"decode {self.decode})")
        return result

    def stage_alone(self, report: Mapping) -> Dict[str, object]:
        """Ms per batch the stage adds on a device-resident batch (paired per round, alternating order), its
        effective bandwidth (one read and one write of the uint8 batch per stage run) and its share of
        ``pipeline_throughput``'s ms per batch with the stage (``null`` when that section did not pass)."""
        args = self.args
        options = self.mix_options()
        arms = {arm: stage_alone_pipeline(device=self.device, batch=args.batch, crop=args.crop,
                                          num_classes=args.num_classes, options=options, with_stage=with_stage,
                                          threads=args.threads, seed=args.seed)
                for arm, with_stage in (("with_stage", True), ("without_stage", False))}
        timer = stage_timer(self.device)
        for pipe in arms.values():
            timer(pipe, 3)
        ms = {arm: [] for arm in arms}
        for r in range(args.rounds):
            for arm in (arms if r % 2 == 0 else reversed(list(arms))):
                ms[arm].append(timer(arms[arm], args.batches))
        del arms
        gc.collect()
        stage_ms = [w - wo for w, wo in zip(ms["with_stage"], ms["without_stage"])]
        stage = summarize(stage_ms)
        batch_bytes = args.batch * args.crop * args.crop * 3
        result = dict(batch=args.batch, crop=args.crop, num_classes=args.num_classes, threads=args.threads,
                      timer="cuda_events" if self.device == "gpu" else "perf_counter", rounds=args.rounds,
                      batches_per_round=args.batches, mix_options=options.as_dict(),
                      ms_per_batch={"with_stage": summarize(ms["with_stage"]),
                                    "without_stage": summarize(ms["without_stage"]), "stage": stage},
                      effective_GBps=(2 * batch_bytes / (stage["median"] * 1e-3) / 1e9
                                      if stage["median"] > 0 else None))
        throughput = report.get("sections", {}).get("pipeline_throughput", {})
        if throughput.get("status") == "passed":
            pipeline_ms = throughput["result"]["ms_per_batch"]["mixing"]["median"]
            result["pipeline_ms_per_batch"] = pipeline_ms
            result["share_of_pipeline"] = {k: stage[k] / pipeline_ms for k in ("median", "q1", "q3")}
            share = f"{100 * stage['median'] / pipeline_ms:.2f}% of the pipeline's {pipeline_ms:.1f} ms/batch"
        else:
            result["pipeline_ms_per_batch"] = result["share_of_pipeline"] = None
            share = "no share: pipeline_throughput did not pass"
        result["summary"] = f"{stage['median']:.3f} ms/batch ({share})"
        return result


# ----------------------------------------------------------------------------------------------------------------
# The command


def parse_args(argv=None) -> argparse.Namespace:
    """The command's flags, checked (argparse exits with status 2 on a bad one)."""
    from dali_cutmix.helpers.host import usable_cores

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="where the pipelines run [gpu]")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"),
                        help="JSON report, rewritten after every section [gpu_check.json]")
    parser.add_argument("--data", type=Path, default=None,
                        help="class-per-folder JPEG tree [the profiler's generated set of --images JPEGs, made "
                             "once in the cache folder]")
    parser.add_argument("--images", type=int, default=None,
                        help=f"size of the generated set, without --data [{DEFAULT_IMAGES}]")
    parser.add_argument("--batch", type=int, default=256, help="batch of sections 1, 3 and 4 [256]")
    parser.add_argument("--crop", type=int, default=224, help="crop size [224]")
    parser.add_argument("--num-classes", type=int, default=1000,
                        help="soft-label width of sections 3 and 4 (ImageNet's) [1000]")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="DALI CPU threads [usable cores]")
    parser.add_argument("--check-batch", type=int, default=32,
                        help="batch of the invariants (pair mode: made odd, | 1) [32]")
    parser.add_argument("--check-batches", type=int, default=4, help="batches per invariants case [4]")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of sections 3 and 4 [10]")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per arm per round [20]")
    parser.add_argument("--seed", type=int, default=0, help="pipeline seed [0]")
    args = parser.parse_args(argv)
    if args.images is not None and args.images < 1:
        parser.error("--images must be >= 1")
    if args.data is not None and args.images is not None:
        parser.error("--images sizes the generated data set; it cannot be combined with --data")
    for name in ("batch", "crop", "num_classes", "threads", "check_batch", "check_batches", "rounds",
                 "batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def print_table(report: Mapping, echo: Callable[[str], None] = print) -> None:
    """The short table printed last: each section's status and headline."""
    machine = report.get("machine", {})
    gpu = machine.get("gpu")
    gpu_name = gpu.get("name") if isinstance(gpu, dict) else gpu
    settings = report.get("settings", {})
    echo("")
    echo(f"gpu_check: {report['status']} - device {settings.get('device')}"
         + (f" ({gpu_name})" if gpu_name else "") + f", DALI {machine.get('dali')}, batch {settings.get('batch')}")
    for name in SECTIONS:
        entry = report.get("sections", {}).get(name)
        if entry is None:
            continue
        text = entry.get("error") if entry["status"] != "passed" else entry.get("result", {}).get("summary", "")
        echo(f"  {name:20s} {entry['status']:11s} {text}")


def main(argv=None) -> int:
    """Run every section, write ``--out`` after each, print the table; returns the exit code."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        faulthandler.enable()  # a crash in this process prints every thread's traceback
    args = parse_args(argv)
    if hasattr(signal, "SIGTERM") and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # recorded, then exits
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = dict(schema=SCHEMA, status="running", created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  command=" ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
                  settings=settings, machine=machine_info(args.device), sections={})
    gpu = report["machine"].get("gpu")
    print(f"gpu_check on {args.device}" + (f" ({gpu['name']})" if isinstance(gpu, dict) else "")
          + f": sections {', '.join(SECTIONS)}; report {args.out}", flush=True)
    report = run_sections(GpuCheck(args).sections(), args.out, report,
                          echo=lambda line: print(line, flush=True))
    print_table(report)
    return exit_code(report)


if __name__ == "__main__":
    sys.exit(main())
