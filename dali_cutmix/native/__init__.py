"""Build (once) and load the native DALI operators of ``mix_ops.cc``.

The operators are compiled on first use against the installed DALI's headers (``nvidia.dali.sysconfig``) with
the system C++ compiler (``$CXX`` or ``g++``) into a cache folder keyed by the DALI version and the source's
hash, so a new DALI or a changed source builds again and every process of a multi-GPU job shares one build
(a file lock keeps concurrent first uses from compiling twice). It builds once per machine and DALI version.

The cache folder is :func:`dali_cutmix.host.cache_dir` (``$DALI_CUTMIX_CACHE``, else ``~/.cache/dali-cutmix``);
every function here also takes an explicit ``cache`` folder, so a machine with a compiler can build for machines
without one (``dali-cutmix doctor --build --cache DIR``; those then set ``DALI_CUTMIX_CACHE=DIR``).
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
    """The native operators could not be compiled (no compiler, no CUDA headers, ...).

    ``missing`` names what this machine lacks: ``"compiler"``, ``"headers"``, or None when the compiler ran and
    failed.
    """

    def __init__(self, message: str, missing: str | None = None):
        super().__init__(message)
        self.missing = missing


def native_cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where compiled operators live: ``native/`` in ``cache``, or in :func:`dali_cutmix.host.cache_dir` when
    ``cache`` is None."""
    return Path(cache if cache is not None else cache_dir()) / "native"


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
            "(install g++ or set CXX)", missing="compiler")
    cuda = _cuda_include_dirs()
    if not cuda:
        raise NativeBuildError(
            "dali-cutmix's DALI operators need cuda_runtime_api.h to compile (DALI's headers include it); "
            "install the CUDA toolkit headers or set CUDA_HOME", missing="headers")
    return (shlex.split(compiler) + ["-std=c++20", "-O3", "-shared", "-fPIC", "-w"]
            + [f"-I{d}" for d in cuda] + sysconfig.get_compile_flags()
            + [str(SOURCE), "-o", str(output)] + sysconfig.get_link_flags())


def library_path(cache: str | os.PathLike | None = None) -> Path:
    """Where the compiled library for this DALI version and source lives in ``cache`` (default: the cache folder
    of :func:`native_cache_dir`); it may not exist yet."""
    import nvidia.dali as dali

    digest = hashlib.sha256(SOURCE.read_bytes() + dali.__version__.encode()).hexdigest()[:16]
    return native_cache_dir(cache) / f"dali{dali.__version__}-{digest}" / LIBRARY_NAME


def build(force: bool = False, cache: str | os.PathLike | None = None) -> Path:
    """Compile the operators into ``cache`` (default: :func:`dali_cutmix.host.cache_dir`) if they are not there,
    or always with ``force`` (atomically, under a lock); returns the library's path.

    Raises:
        NativeBuildError: no compiler or headers, or the compiler failed (its output's tail is included).
        OSError: the cache folder cannot be created or written.
    """
    target = library_path(cache)
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


def load(cache: str | os.PathLike | None = None) -> Path:
    """Build if needed and load the operators into DALI (once per process): ``fn.dali_cutmix_params`` and
    ``fn.dali_cutmix_apply`` exist afterwards. Returns the path of the library that was loaded: the one in
    ``cache`` (default: :func:`dali_cutmix.host.cache_dir`), or the one an earlier call of this process loaded."""
    global _loaded
    if _loaded is None:
        import nvidia.dali.plugin_manager as plugin_manager

        path = build(cache=cache)
        plugin_manager.load_library(str(path))
        _loaded = path
    return _loaded
