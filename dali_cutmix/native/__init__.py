"""Build (once) and load the native DALI operators of ``mix_ops.cc``.

The operators are compiled on first use against the installed DALI's headers (``nvidia.dali.sysconfig``) with
the system C++ compiler (``$CXX`` or ``g++``) into a cache folder keyed by the DALI version and the source's
hash, so a new DALI or a changed source builds again and every process of a multi-GPU job shares one build
(a file lock keeps concurrent first uses from compiling twice). It builds once per machine and DALI version.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..host import cache_dir

SOURCE = Path(__file__).with_name("mix_ops.cc")
LIBRARY_NAME = "libdali_cutmix_ops.so"
_loaded = None


class NativeBuildError(RuntimeError):
    """The native operators could not be compiled (no compiler, no CUDA headers, ...)."""


def native_cache_dir() -> Path:
    """Where compiled operators live: ``native/`` in :func:`dali_cutmix.host.cache_dir`."""
    return cache_dir() / "native"


def _cuda_include_dirs():
    """Folders holding ``cuda_runtime_api.h`` (DALI's headers include it; only declarations are used)."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    dirs = [os.path.join(c, "include") for c in candidates if c]
    for entry in sys.path:  # CUDA runtime headers shipped in wheels (nvidia-cuda-runtime, triton)
        dirs += glob.glob(os.path.join(entry, "nvidia", "*", "include"))
        dirs += glob.glob(os.path.join(entry, "nvidia", "cuda_runtime", "include"))
        dirs += glob.glob(os.path.join(entry, "triton", "backends", "nvidia", "include"))
    found = [d for d in dirs if os.path.isfile(os.path.join(d, "cuda_runtime_api.h"))]
    return found[:1]


def _build_command(output: Path):
    import nvidia.dali.sysconfig as sysconfig

    compiler = os.environ.get("CXX", "g++")
    if shutil.which(shlex.split(compiler)[0]) is None:
        raise NativeBuildError(
            f"dali-cutmix needs a C++ compiler to build its DALI operators once; {compiler!r} was not found "
            "(install g++ or set CXX)")
    cuda = _cuda_include_dirs()
    if not cuda:
        raise NativeBuildError(
            "dali-cutmix's DALI operators need cuda_runtime_api.h to compile (DALI's headers include it); "
            "install the CUDA toolkit headers or set CUDA_HOME")
    return (shlex.split(compiler) + ["-std=c++20", "-O3", "-shared", "-fPIC", "-w"]
            + [f"-I{d}" for d in cuda] + sysconfig.get_compile_flags()
            + [str(SOURCE), "-o", str(output)] + sysconfig.get_link_flags())


def library_path() -> Path:
    """Where the compiled library for this DALI version and source lives (it may not exist yet)."""
    import nvidia.dali as dali

    digest = hashlib.sha256(SOURCE.read_bytes() + dali.__version__.encode()).hexdigest()[:16]
    return native_cache_dir() / f"dali{dali.__version__}-{digest}" / LIBRARY_NAME


def build(force: bool = False) -> Path:
    """Compile the operators if needed (atomically, under a lock); returns the library's path.

    Raises:
        NativeBuildError: no compiler or headers, or the compiler failed (its output's tail is included).
    """
    target = library_path()
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and not force:
            return target
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            result = subprocess.run(_build_command(Path(tmp)), capture_output=True, text=True)
            if result.returncode != 0:
                tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
                raise NativeBuildError(f"building dali-cutmix's DALI operators failed:\n{tail}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def load() -> Path:
    """Build if needed and load the operators into DALI (once per process): ``fn.dali_cutmix_params`` and
    ``fn.dali_cutmix_apply`` exist afterwards. Returns the library's path."""
    global _loaded
    if _loaded is None:
        import nvidia.dali.plugin_manager as plugin_manager

        path = build()
        plugin_manager.load_library(str(path))
        _loaded = path
    return _loaded
