"""Build (once) and load the native DALI operators of ``mix_ops.cc``.

The operators are compiled on first use against the installed DALI's headers (``nvidia.dali.sysconfig``) with
the system C++ compiler (``$CXX`` or ``g++``) into a cache folder keyed by :func:`cache_key`: the machine's
architecture, its C library, the DALI version and the source's hash, so a new DALI, a changed source or another
kind of machine sharing the home folder (x86-64 login nodes, aarch64 GH200 nodes) builds again, and every
process of a multi-GPU job shares one build (a file lock keeps concurrent first uses from compiling twice). A
library in the cache built for another architecture (its ELF header says so) is reported, not loaded.

The cache folder is :func:`dali_cutmix.helpers.host.cache_dir` (``$DALI_CUTMIX_CACHE``, else ``~/.cache/dali-cutmix``);
every function here also takes an explicit ``cache`` folder, so a machine with a compiler can build for machines
without one (``dali-cutmix doctor --build --cache DIR``; those then set ``DALI_CUTMIX_CACHE=DIR``).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dali_cutmix.helpers.host import cache_dir

from ..errors import UserError

SOURCE = Path(__file__).with_name("mix_ops.cc")
LIBRARY_NAME = "libdali_cutmix_ops.so"
_loaded = None
#: Progress of a first build (one INFO line); the CLI shows it on stderr (``cli.params.show_progress``).
log = logging.getLogger(__name__)


class NativeBuildError(UserError):
    """The native operators could not be compiled (no compiler, no CUDA headers, ...): the machine's set-up, so a
    :class:`~dali_cutmix.errors.UserError` (the CLI says it in one line, exit code 2).

    ``str()`` is one line naming the compiler and what to do. ``missing`` names what this machine lacks:
    ``"compiler"``, ``"headers"``, ``"cache"`` (a cache folder it cannot write, from :func:`load`),
    ``"architecture"`` (a cached library built for another machine, from :func:`load`), or None when
    the compiler ran and failed; ``output`` is then the tail of the
    compiler's output ("" when it printed nothing) and ``log`` the file holding all of it (or None).
    """

    def __init__(self, message: str, missing: str | None = None, output: str = "", log: str | None = None):
        super().__init__(message)
        self.missing = missing
        self.output = output
        self.log = log


def native_cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where compiled operators live: ``native/`` in ``cache``, or in :func:`dali_cutmix.helpers.host.cache_dir` when
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


def _compiler() -> str:
    """The C++ compiler command: ``$CXX``, else ``g++``."""
    return os.environ.get("CXX", "").strip() or "g++"


def build_command(output: Path, source: Path = SOURCE) -> list:
    """The compiler command that builds ``source`` (default: the stage's ``mix_ops.cc``) into the shared library
    ``output``: ``$CXX`` (else ``g++``) with ``-std=c++20 -O3``, the CUDA runtime headers and DALI's compile and link
    flags.

    Raises:
        NativeBuildError: no compiler, or no CUDA runtime headers (``missing`` says which).
    """
    import nvidia.dali.sysconfig as sysconfig

    compiler = _compiler()
    try:
        program = shlex.split(compiler)[0]
    except (ValueError, IndexError):
        program = None
    if program is None or shutil.which(program) is None:
        raise NativeBuildError(
            f"dali-cutmix needs a C++ compiler to build its DALI operators once; {compiler!r} was not found "
            "(install g++ or set CXX to a C++ compiler; `dali-cutmix doctor` checks the set-up)",
            missing="compiler")
    cuda = _cuda_include_dirs()
    if not cuda:
        raise NativeBuildError(
            "dali-cutmix's DALI operators need cuda_runtime_api.h to compile (DALI's headers include it); "
            "install the CUDA toolkit headers or set CUDA_HOME", missing="headers")
    return (shlex.split(compiler) + ["-std=c++20", "-O3", "-shared", "-fPIC", "-w"]
            + [f"-I{d}" for d in cuda] + sysconfig.get_compile_flags()
            + [str(source), "-o", str(output)] + sysconfig.get_link_flags())


def cache_key(machine: str | None = None, libc: tuple[str, str] | None = None, dali_version: str | None = None
              ) -> str:
    """The name of the cache folder of one build: ``<machine>-<libc><version>-dali<version>-<hash>``, e.g.
    ``x86_64-glibc2.35-dali2.4.0-0123456789abcdef``, from ``platform.machine()``, ``platform.libc_ver()`` and the
    installed DALI's version (or the values given), plus 16 hex digits of the SHA-256 of the source and all three.
    Only ``[A-Za-z0-9._-]`` appear in it."""
    if machine is None:
        machine = platform.machine()
    if libc is None:
        libc = platform.libc_ver()
    if dali_version is None:
        import nvidia.dali as dali

        dali_version = dali.__version__
    parts = [machine or "machine-unknown", "".join(libc) or "libc-unknown", f"dali{dali_version}"]
    digest = hashlib.sha256(SOURCE.read_bytes() + "\0".join(parts).encode()).hexdigest()[:16]
    return re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts + [digest]))


#: ELF ``e_machine`` values of the architectures ``platform.machine()`` names, and the names of those values.
ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "ppc64le": 21, "ppc64": 21, "i386": 3,
                "i686": 3, "s390x": 22, "riscv64": 243}
ELF_MACHINE_NAMES = {62: "x86_64", 183: "aarch64", 21: "ppc64", 3: "i386", 22: "s390x", 243: "riscv64"}


def elf_machine(path: str | os.PathLike) -> int | None:
    """The ``e_machine`` field of the ELF file at ``path`` (an int, in the file's byte order), or None when it is
    not an ELF file (shorter than a header, or without the ELF magic). Raises OSError when it cannot be read."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def check_architecture(path: str | os.PathLike, machine: str | None = None) -> None:
    """Raise :class:`NativeBuildError` (``missing`` "architecture"; one line naming ``path``, both architectures
    and what to do) when the library at ``path`` is an ELF file built for another architecture than this
    machine's (``platform.machine()``, or ``machine``). A file that is not ELF, or an architecture this module
    does not know, is not judged."""
    machine = machine or platform.machine()
    found, ours = elf_machine(path), ELF_MACHINES.get(machine.lower())
    if found is None or ours is None or found == ours:
        return
    theirs = ELF_MACHINE_NAMES.get(found, f"ELF machine {found}")
    raise NativeBuildError(
        f"dali-cutmix's DALI operators in {str(path)!r} were built for {theirs}, and this machine is {machine}: "
        "delete that file (it rebuilds) or set DALI_CUTMIX_CACHE to a cache folder of this machine's own",
        missing="architecture")


def library_path(cache: str | os.PathLike | None = None) -> Path:
    """Where the compiled library for this machine, C library, DALI version and source lives in ``cache``
    (default: the cache folder of :func:`native_cache_dir`), in the folder :func:`cache_key` names; it may not
    exist yet."""
    return native_cache_dir(cache) / cache_key() / LIBRARY_NAME


def build(force: bool = False, cache: str | os.PathLike | None = None) -> Path:
    """Compile the operators into ``cache`` (default: :func:`dali_cutmix.helpers.host.cache_dir`) if they are not there,
    or always with ``force`` (atomically, under a lock); returns the library's path.

    Raises:
        NativeBuildError: no compiler or headers, or the compiler failed (one line: the compiler, its exit code,
            its first error; the output's tail in ``output``, all of it in ``log``).
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
            command = build_command(Path(tmp))
            log.info(f"compiling dali-cutmix's DALI operators with {_compiler()} (once per machine and DALI "
                     f"version, about 10 s) into {target.parent}")
            try:
                result = subprocess.run(command, capture_output=True, text=True)
            except OSError as e:  # found on PATH but cannot run (no exec permission, bad interpreter, ...)
                raise NativeBuildError(
                    f"building dali-cutmix's DALI operators failed: the compiler {_compiler()!r} cannot run "
                    f"({e.strerror or e}); install g++ or set CXX to a working C++ compiler", missing="compiler"
                ) from None
            if result.returncode != 0:
                raise _compiler_failed(result, target.parent / "build.log")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def _compiler_failed(result: subprocess.CompletedProcess, log_path: Path) -> NativeBuildError:
    """The one-line error of a compiler run that failed: the compiler, its exit code, its first error line (or
    "no output"), and where its whole output was kept (``log_path``, when it can be written)."""
    output = "\n".join(part for part in (result.stdout.strip(), result.stderr.strip()) if part)
    lines = output.splitlines()
    errors = [line for line in lines if " error" in line or line.startswith("error")]
    said = (errors or lines or [""])[0].strip()
    log_name = None
    if output:
        try:
            log_path.write_text(" ".join(shlex.quote(str(a)) for a in result.args) + "\n\n" + output + "\n")
            log_name = str(log_path)
        except OSError:
            pass
    what = f": {said[:200]}" if said else " and printed nothing"
    where = f"; its whole output is in {log_name}" if log_name else ""
    return NativeBuildError(
        f"building dali-cutmix's DALI operators failed: the compiler {_compiler()!r} exited with code "
        f"{result.returncode}{what}{where} (fix it, or set CXX to a working C++ compiler; "
        "`dali-cutmix doctor` checks the set-up)",
        output="\n".join(lines[-15:]), log=log_name)


def load(cache: str | os.PathLike | None = None) -> Path:
    """Build if needed and load the operators into DALI (once per process): ``fn.dali_cutmix_params``,
    ``fn.dali_cutmix_apply`` and ``fn.dali_cutmix_color_map`` exist afterwards. Returns the path of the library
    that was loaded: the one in ``cache`` (default: :func:`dali_cutmix.helpers.host.cache_dir`), or the one an earlier call of this process loaded.

    Raises:
        NativeBuildError: :func:`build`'s; the cache folder cannot be written (``missing`` "cache"); the cached
            library was built for another architecture (``missing`` "architecture", :func:`check_architecture`)."""
    global _loaded
    if _loaded is None:
        import nvidia.dali.plugin_manager as plugin_manager

        try:
            path = build(cache=cache)
        except OSError as e:  # the cache folder: the machine's set-up too, one line
            raise NativeBuildError(
                f"dali-cutmix cannot write its DALI operators' cache folder {str(native_cache_dir(cache))!r}: "
                f"{e.strerror or e} (set DALI_CUTMIX_CACHE to a writable folder)", missing="cache") from None
        check_architecture(path)
        plugin_manager.load_library(str(path))
        _loaded = path
    return _loaded
