"""Whether this machine can run dali-cutmix's GPU path, and if not, why not (``dali-cutmix doctor``).

Two halves. :func:`gather` reads the machine into :class:`Facts`: Python, torch and its CUDA build, the installed DALI
distribution and its CUDA build, the NVIDIA driver, the GPUs torch and DALI see, NCCL, the native operators
(built if needed), and a smoke test of DALI's GPU ROI decoding in a subprocess (:func:`smoke_roi_decode`). The
small functions it uses take what was read as arguments (a driver version string, a distribution name, an
architecture list) and read nothing themselves. :func:`diagnose` turns facts into one
:class:`Check` per subject (ok / warn / fail, with the fix in words) and a verdict; it reads nothing either, so
every branch can be tested with made-up facts.

A ``fail`` blocks the GPU path; one whose ``blocks`` is ``"all"`` (no torch, no DALI, no native operators) blocks
the CPU path too. A ``warn`` blocks nothing; a ``skip`` is a check this machine cannot run (it says why).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

from dali_cutmix.errors import first_line
from dali_cutmix.helpers.host import cache_dir

#: The lowest Linux x86-64 driver that runs a build made with each CUDA major version (minor version
#: compatibility). Source: NVIDIA's CUDA Toolkit release notes, table "CUDA Toolkit and Minimum Required Driver
#: Version for CUDA Minor Version Compatibility" (CUDA 11.x >= 450.80.02, CUDA 12.x >= 525.60.13, CUDA 13.x >= 580),
#: and NVIDIA's "CUDA Compatibility" guide, section "Minor Version Compatibility", which gives the same minimums.
MIN_DRIVER = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580,)}

#: PyTorch's index of CUDA 12 builds (cu126 also exists; it keeps kernels for older GPUs, see ``TORCH_OLD_GPUS``).
TORCH_CUDA12_INDEX = "https://download.pytorch.org/whl/cu128"
TORCH_OLD_GPUS_INDEX = "https://download.pytorch.org/whl/cu126"
#: Replace torch with a CUDA 12 build: pip keeps an installed torch of a satisfying version, so uninstall first.
TORCH_CUDA12 = f"pip uninstall -y torch torchvision && pip install torch torchvision --index-url {TORCH_CUDA12_INDEX}"
#: Replace torch with PyPI's build (the CUDA 13.0 one).
TORCH_CUDA13 = "pip uninstall -y torch torchvision && pip install torch torchvision"

#: Distribution names of DALI's wheels: nvidia-dali-cuda120, nvidia-dali-nightly-cuda130, ... (not the TF plugin).
_DALI_DISTRIBUTION = re.compile(r"^nvidia-dali(?:-(?:nightly|weekly))?-cuda(\d+)$")

#: Compute capabilities whose GPUs have the hardware JPEG decoder. Source: the nvJPEG documentation, section
#: "Hardware Acceleration" (nvJPEG 13.2): Ampere A100 and A30 (sm_80), Hopper (sm_90), Ada (sm_89), Blackwell
#: (sm_100, sm_103, sm_110, sm_120, sm_121).
_HW_JPEG_MAJORS = (9, 10, 11, 12)
_HW_JPEG_CAPABILITIES = ((8, 0), (8, 9))
#: The same GPUs by name, for when only nvidia-smi's names are known (torch sees no GPU).
_HW_JPEG_NAMES = re.compile(r"\b(A100|A30|A800|GH200|H100|H200|H800|H20|L4|L40S?|GB\d00|B\d00|RTX PRO \d+ Blackwell)\b",
                            re.I)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

#: How long the ROI-decode smoke test's subprocess may run before it is killed and counted as failed.
ROI_SMOKE_TIMEOUT_S = 45
ROI_SMOKE_MARK = "ROI_DECODE_OK"
#: The ROI-decode smoke test's subprocess: ``decoders.image_random_crop`` (the builder's ROI decode; nvImageCodec
#: issue #55 reports crashes on H100) over JPEGs it makes itself, then a resize, three batches; prints
#: :data:`ROI_SMOKE_MARK` and the output shape. ``sys.argv[1]`` is the device ("gpu": "mixed" decode on GPU 0;
#: "cpu": the same graph on CPU operators). It imports only numpy, PIL and DALI, never dali_cutmix.
ROI_SMOKE_CODE = """
import io, sys
import numpy as np
from PIL import Image
from nvidia.dali import fn, pipeline_def

gpu = sys.argv[1] == "gpu"
rng = np.random.default_rng(0)
jpegs = []
for h, w in ((480, 640), (375, 500), (1024, 768), (333, 1200)):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    jpegs.append(np.frombuffer(buffer.getvalue(), np.uint8))
batch = [jpegs[i % len(jpegs)] for i in range(16)]

@pipeline_def(batch_size=16, num_threads=2, device_id=0 if gpu else None, seed=1)
def pipe():
    data = fn.external_source(source=lambda: batch, batch=True)
    images = fn.decoders.image_random_crop(data, device="mixed" if gpu else "cpu", num_attempts=100)
    return fn.resize(images, resize_x=224, resize_y=224, antialias=False)

p = pipe()
p.build()
for _ in range(3):
    out = p.run()[0]
out = out.as_cpu() if gpu else out
print("%s %s" % ("ROI_DECODE_OK", tuple(np.array(out.as_tensor()).shape)), flush=True)
"""


@dataclass(frozen=True)
class Gpu:
    """One GPU: its name, and its compute capability when torch could read it."""

    name: str
    capability: Optional[Tuple[int, int]] = None


@dataclass(frozen=True)
class Facts:
    """What :func:`gather` read. Each field is a plain value, so tests can make up any machine."""

    python: str = ""                      # platform.python_version()
    executable: str = ""
    torch: Optional[str] = None           # torch.__version__; None when torch cannot be imported
    torch_error: Optional[str] = None     # why it cannot
    torch_cuda: Optional[str] = None      # torch.version.cuda ("13.0"); None for a CPU-only build
    torch_gpus: int = 0                   # torch.cuda.device_count() when torch.cuda.is_available()
    torch_warning: Optional[str] = None   # what torch warned while looking for GPUs (a driver too old, ...)
    torch_arch: Tuple[str, ...] = ()      # torch.cuda.get_arch_list(): sm_XY / compute_XY the build has kernels for
    gpus: Tuple[Gpu, ...] = ()            # from torch, else the names nvidia-smi lists
    nccl_compiled: bool = False           # torch.distributed.is_nccl_available()
    nccl: Optional[str] = None            # torch.cuda.nccl.version(), "2.30.7"
    dali_distributions: Tuple[Tuple[str, str], ...] = ()  # installed DALI wheels: (name, version)
    dali: Optional[str] = None            # nvidia.dali.__version__; None when DALI cannot be imported
    dali_error: Optional[str] = None
    dali_gpus: Optional[int] = None       # nvidia.dali.backend.GetCUDADeviceCount(); None when it could not be asked
    driver: Optional[str] = None          # "580.65.06"
    driver_source: Optional[str] = None   # "nvidia-smi" or "/proc/driver/nvidia/version"
    driver_error: Optional[str] = None    # why no driver version was read
    visible_devices: Optional[str] = None  # $CUDA_VISIBLE_DEVICES
    native_cache: str = ""                # the cache folder the operators were looked for / built in
    native_path: Optional[str] = None     # the library, when it exists
    native_built_now: bool = False
    native_seconds: Optional[float] = None
    native_error: Optional[str] = None    # NativeBuildError's (or the OSError's) message
    native_missing: Optional[str] = None  # "compiler" / "headers" (NativeBuildError.missing)
    native_load_error: Optional[str] = None  # built, but DALI could not load it
    roi_decode: Optional[str] = None      # the ROI-decode smoke test: "ok", "failed", or None when not run
    roi_decode_detail: Optional[str] = None  # what it printed / how it died / why it did not run


@dataclass(frozen=True)
class Check:
    """One line of the report: a subject, ok / warn / fail, what was found, and what to do about it."""

    name: str
    status: str
    detail: str
    fix: Optional[str] = None
    blocks: str = "gpu"  # what a fail blocks: "gpu" (the GPU path) or "all" (the CPU path too)


@dataclass(frozen=True)
class Diagnosis:
    """The checks and the verdict: ``exit_code`` is 0 when the GPU path can run, else 1."""

    checks: Tuple[Check, ...]
    gpu_path: bool
    cpu_path: bool
    verdict: str

    @property
    def exit_code(self) -> int:
        return 0 if self.gpu_path else 1


# ---- reading: small functions of what was read ----------------------------------------------------------------

def version_tuple(text: str) -> Tuple[int, ...]:
    """``"525.60.13"`` -> ``(525, 60, 13)``; the leading dotted numbers of ``text``. Raises ValueError without any."""
    match = re.match(r"\s*(\d+(?:\.\d+)*)", text or "")
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in match.group(1).split("."))


def shown_version(version: Sequence[int]) -> str:
    """``(525, 60, 13)`` -> ``"525.60.13"``."""
    return ".".join(str(v) for v in version)


def cuda_major(version: Optional[str]) -> Optional[int]:
    """The major version of a CUDA version string (``torch.version.cuda``): ``"13.0"`` -> 13; None for None."""
    return version_tuple(version)[0] if version else None


def dali_distribution_cuda(name: str) -> Optional[int]:
    """The CUDA major version a DALI distribution is built for, from its name (``nvidia-dali-cuda120`` -> 12,
    ``nvidia-dali-cuda130`` -> 13); None when ``name`` is not a DALI wheel."""
    match = _DALI_DISTRIBUTION.match(re.sub(r"[-_.]+", "-", name.lower()))
    return int(match.group(1)) // 10 if match else None


def dali_distributions(distributions: Iterable[Tuple[str, str]]) -> Tuple[Tuple[str, str], ...]:
    """The DALI wheels among ``(name, version)`` pairs of installed distributions, sorted, each once."""
    return tuple(sorted({(n, v) for n, v in distributions if dali_distribution_cuda(n) is not None}))


def parse_smi_output(output: str) -> Tuple[Optional[str], Tuple[str, ...]]:
    """The driver version and the GPU names from ``nvidia-smi --query-gpu=driver_version,name
    --format=csv,noheader`` (one ``"580.65.06, NVIDIA H100 80GB HBM3"`` line per GPU; a line without a comma is a
    driver version alone). ``(None, ())`` when no line holds a version."""
    driver, names = None, []
    for line in output.splitlines():
        version, _, name = (part.strip() for part in line.partition(","))
        if re.fullmatch(r"\d+(?:\.\d+)+", version):
            driver = driver or version
            if name:
                names.append(name)
    return driver, tuple(names)


def parse_proc_driver_version(text: str) -> Optional[str]:
    """The driver version in ``/proc/driver/nvidia/version`` (``NVRM version: NVIDIA UNIX x86_64 Kernel Module
    580.65.06 ...``, or ``... Open Kernel Module for x86_64  580.65.06 ...``); None when there is none."""
    match = re.search(r"Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)?)\s", text + " ")
    return match.group(1) if match else None


def driver_runs(driver: str, cuda: int) -> bool:
    """Whether an NVIDIA driver of version ``driver`` runs builds made with CUDA major version ``cuda``
    (:data:`MIN_DRIVER`; a major version it does not list counts as not run)."""
    return cuda in MIN_DRIVER and version_tuple(driver) >= MIN_DRIVER[cuda]


def best_cuda(driver: Optional[str]) -> Optional[int]:
    """The newest CUDA major version ``driver`` runs, among 12 and 13 (the builds torch and DALI ship); None when it
    runs neither or is unknown."""
    runs = [c for c in (13, 12) if driver and driver_runs(driver, c)]
    return runs[0] if runs else None


def torch_runs_on(capability: Tuple[int, int], arch_list: Sequence[str]) -> bool:
    """Whether a torch build with ``arch_list`` (``torch.cuda.get_arch_list()``) has kernels for a GPU of
    ``capability``: machine code for the same major version and a minor version up to the GPU's, or PTX
    (``compute_XY``) for an older or equal capability."""
    major, minor = capability
    for arch in arch_list:
        match = re.fullmatch(r"(sm|compute)_(\d+)(\d)[af]?", arch)
        if not match:
            continue
        a_major, a_minor = int(match.group(2)), int(match.group(3))
        if match.group(1) == "sm" and a_major == major and a_minor <= minor:
            return True
        if match.group(1) == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def hardware_jpeg_decoder(gpu: Gpu) -> Optional[bool]:
    """Whether ``gpu`` has the hardware JPEG decoder (nvJPEG's documented list): judged by its compute capability
    when known, else by its name; None when neither tells."""
    if gpu.capability is not None:
        return gpu.capability in _HW_JPEG_CAPABILITIES or gpu.capability[0] in _HW_JPEG_MAJORS
    return True if _HW_JPEG_NAMES.search(gpu.name) else None


def dali_install(cuda: int, installed: Iterable[str] = ()) -> str:
    """The pip command that leaves exactly DALI's CUDA ``cuda`` wheel installed. Both wheels write the
    ``nvidia.dali`` package, so every installed one is uninstalled first."""
    install = f"pip install nvidia-dali-cuda{cuda}0"
    installed = sorted(set(installed))
    return f"pip uninstall -y {' '.join(installed)} && {install}" if installed else install


def torch_install(cuda: int) -> str:
    """The pip commands that replace torch with its CUDA ``cuda`` (12 or 13) build."""
    return TORCH_CUDA13 if cuda >= 13 else TORCH_CUDA12


# ---- reading: the machine --------------------------------------------------------------------------------------

def read_driver(proc_version: Path = Path("/proc/driver/nvidia/version"), timeout: float = 15.0):
    """``(driver, source, error, gpu names)`` from nvidia-smi, else from ``proc_version``; error says why neither
    gave a version."""
    errors = []
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=timeout)
        driver, names = parse_smi_output(result.stdout) if result.returncode == 0 else (None, ())
        if driver:
            return driver, "nvidia-smi", None, names
        said = (result.stderr or result.stdout).strip().splitlines()
        errors.append(f"nvidia-smi failed: {said[0] if said else f'exit code {result.returncode}'}")
    except FileNotFoundError:
        errors.append("nvidia-smi: not found")
    except subprocess.TimeoutExpired:
        errors.append(f"nvidia-smi: no answer in {timeout:g} s")
    except OSError as e:
        errors.append(f"nvidia-smi: {e}")
    try:
        driver = parse_proc_driver_version(proc_version.read_text())
        if driver:
            return driver, str(proc_version), None, ()
        errors.append(f"{proc_version}: no version in it")
    except OSError:
        errors.append(f"{proc_version}: absent")
    return None, None, "; ".join(errors), ()


def read_torch() -> dict:
    """torch's facts (the :class:`Facts` fields named ``torch*``, ``gpus``, ``nccl*``)."""
    try:
        import torch
    except Exception as e:  # ImportError, or a broken install's OSError from a shared library
        return {"torch_error": first_line(e)}
    facts = {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
        facts["torch_gpus"] = torch.cuda.device_count() if available else 0
    said = [first_line(w.message) for w in caught]
    facts["torch_warning"] = said[0] if said else None
    if torch.version.cuda:
        facts["torch_arch"] = tuple(torch.cuda.get_arch_list())
    facts["gpus"] = tuple(Gpu(torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
                          for i in range(facts["torch_gpus"]))
    try:
        import torch.distributed as dist

        facts["nccl_compiled"] = bool(dist.is_available() and dist.is_nccl_available())
    except Exception:
        facts["nccl_compiled"] = False
    if facts["nccl_compiled"]:
        try:
            facts["nccl"] = shown_version(torch.cuda.nccl.version())
        except Exception:
            pass
    return facts


def read_dali() -> dict:
    """DALI's facts (the :class:`Facts` fields named ``dali*``)."""
    import importlib.metadata as metadata

    facts = {"dali_distributions": dali_distributions((d.metadata["Name"] or "", d.version)
                                                      for d in metadata.distributions())}
    try:
        import nvidia.dali as dali
    except Exception as e:
        facts["dali_error"] = first_line(e)
        return facts
    facts["dali"] = dali.__version__
    try:
        from nvidia.dali import backend

        facts["dali_gpus"] = int(backend.GetCUDADeviceCount())
    except Exception:
        pass
    return facts


def read_native(cache=None, force: bool = False) -> dict:
    """The native operators' facts: built into ``cache`` (default :func:`dali_cutmix.helpers.host.cache_dir`) if they are
    not there (always with ``force``), then loaded into this process's DALI."""
    from dali_cutmix import native

    folder = Path(cache) if cache is not None else cache_dir()
    facts = {"native_cache": str(folder)}
    try:
        import nvidia.dali  # noqa: F401  (its headers and its version key the build)
    except Exception as e:
        return {**facts, "native_error": f"needs DALI: {first_line(e)}"}
    try:
        existed = native.library_path(folder).exists()
        start = time.perf_counter()
        path = native.build(force=force, cache=folder)
    except native.NativeBuildError as e:  # one line, then the compiler's output's tail (for --json)
        return {**facts, "native_error": "\n".join(part for part in (str(e), e.output) if part),
                "native_missing": e.missing}
    except OSError as e:
        return {**facts, "native_error": f"cannot write the cache folder: {first_line(e)}"}
    facts.update(native_path=str(path), native_built_now=force or not existed)
    if facts["native_built_now"]:
        facts["native_seconds"] = round(time.perf_counter() - start, 1)
    try:
        native.load(cache=folder)
    except Exception as e:
        facts["native_load_error"] = first_line(e)
    return facts


def smoke_roi_decode(device: str = "gpu", timeout: float = ROI_SMOKE_TIMEOUT_S) -> Tuple[str, str]:
    """Run :data:`ROI_SMOKE_CODE` on ``device`` in a subprocess of this Python (a decoder crash cannot take the
    caller with it; its environment is this process's). Returns ``("ok", "decoded 3 batches of 16 to shape ...
    in S s")`` or ``("failed", how it failed)``: killed by a signal (named), its exit code and last line of
    output, or no answer in ``timeout`` seconds."""
    start = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-c", ROI_SMOKE_CODE, device], capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return "failed", f"no answer in {timeout:g} s (killed)"
    seconds = time.perf_counter() - start
    marks = [line for line in result.stdout.splitlines() if line.startswith(ROI_SMOKE_MARK + " ")]
    if result.returncode == 0 and marks:
        shape = marks[-1][len(ROI_SMOKE_MARK) + 1:]
        return "ok", f"decoders.image_random_crop on {'mixed' if device == 'gpu' else 'cpu'}: 3 batches of 16 " \
                     f"decoded and resized to {shape} in {seconds:.1f} s"
    lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    last = lines[-1][:300] if lines else "no output"
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        return "failed", f"the decoding process was killed by {name} (last output: {last})"
    return "failed", f"the decoding process exited with code {result.returncode}: {last}"


def read_roi_decode(dali_gpus: Optional[int], dali_error: Optional[str] = None) -> dict:
    """The ROI-decode smoke test's facts: run on the GPU when DALI sees one (:func:`smoke_roi_decode`), else not
    run, with the reason."""
    if dali_error is not None:
        return {"roi_decode_detail": f"not run: DALI cannot be imported ({dali_error})"}
    if not dali_gpus:
        return {"roi_decode_detail": "not run: no GPU (DALI sees no CUDA GPU on this machine)"}
    status, detail = smoke_roi_decode("gpu")
    return {"roi_decode": status, "roi_decode_detail": detail}


def gather(cache=None, force_build: bool = False) -> Facts:
    """Read this machine into :class:`Facts`; builds the native operators into ``cache`` if needed (always with
    ``force_build``)."""
    driver, source, error, smi_names = read_driver()
    facts = {"python": platform.python_version(), "executable": sys.executable,
             "driver": driver, "driver_source": source, "driver_error": error,
             "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    facts.update(read_torch())
    facts.update(read_dali())
    facts.update(read_native(cache, force=force_build))
    facts.update(read_roi_decode(facts.get("dali_gpus"), facts.get("dali_error")))
    if not facts.get("gpus") and smi_names:
        facts["gpus"] = tuple(Gpu(name) for name in smi_names)
    return Facts(**facts)


# ---- the verdict: a pure function of the facts -----------------------------------------------------------------

def _dali_cuda(facts: Facts) -> Optional[int]:
    """The CUDA major version of the installed DALI wheel (None with none, or with several)."""
    if len(facts.dali_distributions) != 1:
        return None
    return dali_distribution_cuda(facts.dali_distributions[0][0])


def _builds(facts: Facts):
    """``[(what, CUDA major)]`` for torch's and DALI's CUDA builds, those known."""
    builds = []
    if facts.torch and facts.torch_cuda:
        builds.append((f"torch's CUDA {facts.torch_cuda} build", cuda_major(facts.torch_cuda)))
    if _dali_cuda(facts) is not None:
        builds.append((f"DALI's CUDA {_dali_cuda(facts)} build", _dali_cuda(facts)))
    return builds


def _check_python(facts: Facts) -> Check:
    detail = f"{facts.python} ({facts.executable})" if facts.executable else facts.python
    try:
        supported = version_tuple(facts.python) >= (3, 10)
    except ValueError:
        supported = False
    if supported:
        return Check("python", OK, detail)
    return Check("python", FAIL, detail, "dali-cutmix needs Python >= 3.10", blocks="all")


def _check_torch(facts: Facts) -> Check:
    if not facts.torch:
        return Check("torch", FAIL, f"cannot be imported: {facts.torch_error}",
                     "install torch and torchvision for your driver (README, Install)", blocks="all")
    if not facts.torch_cuda:
        cuda = best_cuda(facts.driver) or 12
        return Check("torch", FAIL, f"{facts.torch}: a CPU-only build", f"install a CUDA build: {torch_install(cuda)}")
    return Check("torch", OK, f"{facts.torch}: CUDA {facts.torch_cuda} build")


def _check_dali(facts: Facts) -> Check:
    names = [n for n, _ in facts.dali_distributions]
    cuda = best_cuda(facts.driver) or 12
    if len(names) > 1:
        listed = ", ".join(f"{n} {v}" for n, v in facts.dali_distributions)
        return Check("dali", FAIL, f"several DALI wheels installed ({listed}); they overwrite each other's "
                     "nvidia.dali", f"keep one: {dali_install(cuda, names)}", blocks="all")
    if not facts.dali:
        found = f" ({names[0]} is installed)" if names else ""
        return Check("dali", FAIL, f"cannot be imported{found}: {facts.dali_error}", dali_install(cuda, names),
                     blocks="all")
    if not names:
        return Check("dali", WARN, f"{facts.dali}: installed without a nvidia-dali-cudaXXX distribution, CUDA build "
                     "unknown", f"install DALI's wheel: {dali_install(cuda)}")
    return Check("dali", OK, f"{names[0]} {facts.dali}: CUDA {_dali_cuda(facts)} build")


def _check_driver(facts: Facts) -> Check:
    builds = _builds(facts)
    needed = max((MIN_DRIVER.get(c, MIN_DRIVER[13]) for _, c in builds), default=MIN_DRIVER[12])
    for_what = " and ".join(what for what, _ in builds) or "torch's and DALI's CUDA builds"
    if facts.driver is None:
        return Check("driver", FAIL, f"no NVIDIA driver found ({facts.driver_error or 'not read'})",
                     f"the GPU path needs an NVIDIA GPU with a driver >= {shown_version(needed)} (it runs {for_what})")
    where = f"{facts.driver} ({facts.driver_source})" if facts.driver_source else facts.driver
    try:
        too_old = [(what, cuda) for what, cuda in builds if not driver_runs(facts.driver, cuda)]
    except ValueError:
        return Check("driver", WARN, f"{where}: not a version this check can read")
    if not too_old:
        runs = f": runs {for_what}" if builds else ""
        return Check("driver", OK, where + runs)
    missing = "; ".join(f"{what} needs >= {shown_version(MIN_DRIVER.get(c, MIN_DRIVER[13]))}" for what, c in too_old)
    runnable = best_cuda(facts.driver)
    fixes = []
    if runnable is not None:
        for what, cuda in too_old:
            if what.startswith("torch"):
                fixes.append(f"install torch's CUDA {runnable} build: {torch_install(runnable)}")
            else:
                fixes.append(f"install DALI's CUDA {runnable} build: "
                             f"{dali_install(runnable, [n for n, _ in facts.dali_distributions])}")
    update = f"update the NVIDIA driver to >= {shown_version(needed)}"
    if runnable is None and needed > MIN_DRIVER[12]:
        update += f" (>= {shown_version(MIN_DRIVER[12])} runs CUDA 12 builds of both: README, Install)"
    fixes.append(f"or {update}" if fixes else update)
    return Check("driver", FAIL, f"{where}: too old ({missing})", "; ".join(fixes))


def _gpu_words(gpus: Sequence[Gpu]) -> str:
    def one(gpu):
        return f"{gpu.name}, sm_{gpu.capability[0]}{gpu.capability[1]}" if gpu.capability else gpu.name
    return "; ".join(one(g) for g in gpus)


def _check_gpus(facts: Facts) -> Check:
    if not facts.torch:
        return Check("gpus", FAIL, "unknown: torch cannot be imported")
    dali = "?" if facts.dali_gpus is None else str(facts.dali_gpus)
    detail = f"torch sees {facts.torch_gpus}, DALI sees {dali}"
    if facts.gpus and facts.torch_gpus:
        detail += f" ({_gpu_words(facts.gpus)})"
    if facts.visible_devices is not None:
        detail += f"; CUDA_VISIBLE_DEVICES={facts.visible_devices!r}"
    if facts.torch_warning and not facts.torch_gpus:
        detail += f"; torch said: {facts.torch_warning}"
    dali_gpus = facts.dali_gpus or 0
    if not facts.torch_gpus and not dali_gpus:
        if facts.driver is None:
            fix = "needs an NVIDIA GPU and its driver (line 'driver')"
        elif facts.visible_devices is not None:
            fix = "CUDA_VISIBLE_DEVICES hides the GPUs, or the driver does not answer (run nvidia-smi)"
        else:
            fix = "see the lines 'driver' and 'torch'; nvidia-smi should list the GPUs"
        return Check("gpus", FAIL, detail, fix)
    if not facts.torch_gpus:
        return Check("gpus", FAIL, detail, "torch cannot use this driver or GPU: see the lines 'torch' and 'driver'")
    if not dali_gpus:
        return Check("gpus", FAIL, detail, "DALI cannot use this driver or GPU: see the lines 'dali' and 'driver'")
    unsupported = [g for g in facts.gpus if g.capability and facts.torch_arch
                   and not torch_runs_on(g.capability, facts.torch_arch)]
    if unsupported:
        return Check("gpus", FAIL, f"{detail}; torch's CUDA {facts.torch_cuda} build has no kernels for "
                     f"{_gpu_words(unsupported)} (it has {', '.join(facts.torch_arch)})",
                     "install a torch build with kernels for this GPU, e.g. the CUDA 12.6 one: pip uninstall -y "
                     f"torch torchvision && pip install torch torchvision --index-url {TORCH_OLD_GPUS_INDEX}")
    if facts.dali_gpus is not None and facts.dali_gpus != facts.torch_gpus:
        return Check("gpus", WARN, detail, f"dali-cutmix train uses torch's GPUs; use at most --gpus "
                     f"{min(facts.torch_gpus, facts.dali_gpus)}")
    return Check("gpus", OK, detail)


def _check_jpeg(facts: Facts) -> Check:
    if not facts.gpus:
        return Check("jpeg decoder", WARN, "unknown: no GPU is visible")
    answers = {g.name: hardware_jpeg_decoder(g) for g in facts.gpus}
    if all(answers.values()):
        return Check("jpeg decoder", OK, "hardware JPEG decoder on every GPU (DALI's mixed decoder uses it)")
    unknown = [n for n, a in answers.items() if a is None]
    without = [n for n, a in answers.items() if a is False]
    words = []
    if without:
        words.append(f"none on {', '.join(sorted(set(without)))}")
    if unknown:
        words.append(f"unknown for {', '.join(sorted(set(unknown)))}")
    return Check("jpeg decoder", WARN, "; ".join(words) + ": DALI decodes JPEGs with CUDA cores and the CPU "
                 "(slower, same images)")


def _check_nccl(facts: Facts) -> Check:
    if not facts.torch:
        return Check("nccl", WARN, "unknown: torch cannot be imported")
    if not facts.nccl_compiled:
        return Check("nccl", WARN, "torch was built without NCCL: one GPU trains, --gpus > 1 cannot",
                     "install a Linux CUDA build of torch (README, Install)")
    return Check("nccl", OK, f"NCCL {facts.nccl or '(version unknown)'} in torch")


def _check_native(facts: Facts) -> Check:
    elsewhere = ("or build them on a machine that has one, with the same DALI version: `dali-cutmix doctor --build "
                 "--cache DIR` there, then DALI_CUTMIX_CACHE=DIR here")
    if facts.native_error:
        first = facts.native_error.strip().splitlines()[0]
        if facts.native_missing == "compiler":
            fix = f"install a C++ compiler (apt-get install g++) or set CXX; {elsewhere}"
        elif facts.native_missing == "headers":
            fix = ("install the CUDA runtime headers (the CUDA toolkit, or pip install nvidia-cuda-runtime-cu12) or "
                   f"set CUDA_HOME; {elsewhere}")
        elif first.startswith("needs DALI"):
            fix = "install DALI (line 'dali')"
        elif first.startswith("cannot write"):
            fix = f"set DALI_CUTMIX_CACHE (or --cache) to a writable folder; now {facts.native_cache}"
        else:
            fix = (f"fix the compiler or set CXX to a working C++ compiler (its output's tail is in --json, "
                   f"facts.native_error); {elsewhere}")
        return Check("native ops", FAIL, f"cannot be built: {first}", fix, blocks="all")
    if facts.native_load_error:
        return Check("native ops", FAIL, f"{facts.native_path}: DALI cannot load it: {facts.native_load_error}",
                     "build them on this machine: dali-cutmix doctor --build", blocks="all")
    how = f"built now in {facts.native_seconds:g} s" if facts.native_built_now and facts.native_seconds is not None \
        else "built now" if facts.native_built_now else "already built"
    return Check("native ops", OK, f"{facts.native_path} ({how}, loaded)")


def _check_roi_decode(facts: Facts) -> Check:
    if facts.roi_decode is None:
        return Check("roi decode", SKIP, facts.roi_decode_detail or "not run")
    if facts.roi_decode == OK:
        return Check("roi decode", OK, facts.roi_decode_detail or "")
    return Check("roi decode", WARN, f"DALI's GPU ROI decoding failed: {facts.roi_decode_detail}",
                 "decode whole images: dali-cutmix train --decode full (build_cutmix_pipeline(decode=\"full\")); "
                 "nvImageCodec issue #55 reports such crashes on H100")


def diagnose(facts: Facts) -> Diagnosis:
    """The checks and the verdict for ``facts``; reads nothing."""
    checks = (_check_python(facts), _check_torch(facts), _check_dali(facts), _check_driver(facts),
              _check_gpus(facts), _check_jpeg(facts), _check_nccl(facts), _check_native(facts),
              _check_roi_decode(facts))
    failed = [c for c in checks if c.status == FAIL]
    cpu_path = not any(c.blocks == "all" for c in failed)
    gpu_path = not failed
    if gpu_path:
        count = facts.torch_gpus if facts.dali_gpus is None else min(facts.torch_gpus, facts.dali_gpus)
        verdict = f"the GPU path can run (dali-cutmix train --gpus {count})"
    elif cpu_path:
        verdict = f"only the CPU path can run (failed: {', '.join(c.name for c in failed)})"
    else:
        verdict = (f"neither path can run (failed: {', '.join(c.name for c in failed if c.blocks == 'all')}; "
                   f"the GPU path also: {', '.join(c.name for c in failed if c.blocks != 'all') or 'nothing else'})")
    return Diagnosis(checks, gpu_path, cpu_path, verdict)


def report_text(diagnosis: Diagnosis) -> str:
    """The screen ``dali-cutmix doctor`` prints: one line per check, its fix under it, the verdict last."""
    width = max(len(c.name) for c in diagnosis.checks)
    lines = []
    for c in diagnosis.checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    lines.append(f"verdict: {diagnosis.verdict}; exit code {diagnosis.exit_code}")
    return "\n".join(lines)


def report_json(facts: Facts, diagnosis: Diagnosis) -> dict:
    """The same report for scripts: the verdict, the checks, and every fact read."""
    return {"exit_code": diagnosis.exit_code, "gpu_path": diagnosis.gpu_path, "cpu_path": diagnosis.cpu_path,
            "verdict": diagnosis.verdict, "checks": [dataclasses.asdict(c) for c in diagnosis.checks],
            "facts": dataclasses.asdict(facts)}
