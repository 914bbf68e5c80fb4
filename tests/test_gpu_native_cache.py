"""The native operators' cache for clusters whose machines share a home folder: the cache key names the
architecture, the C library and DALI's version, and a library built for another architecture is reported in one
line (issue 18.3)."""

from __future__ import annotations

import platform
import re
import subprocess
import sys

import pytest

from dali_cutmix import native


def fake_elf(path, e_machine: int, *, little_endian: bool = True):
    """Write a 64-byte ELF header (a shared object) for ``e_machine`` at ``path``; returns ``path``."""
    order = "little" if little_endian else "big"
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1 if little_endian else 2, 1  # 64-bit, byte order, version 1
    header[16:18] = (3).to_bytes(2, order)  # ET_DYN
    header[18:20] = e_machine.to_bytes(2, order)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(header))
    return path


def test_the_cache_key_names_the_machine_the_c_library_and_dali():
    key = native.cache_key("aarch64", ("glibc", "2.35"), "2.4.0")
    assert re.fullmatch(r"aarch64-glibc2\.35-dali2\.4\.0-[0-9a-f]{16}", key), key
    others = {native.cache_key("x86_64", ("glibc", "2.35"), "2.4.0"), native.cache_key("aarch64", ("glibc", "2.39"),
              "2.4.0"), native.cache_key("aarch64", ("glibc", "2.35"), "2.5.0")}
    assert len(others | {key}) == 4, "each part changes the key, hash included"
    assert native.cache_key("aarch64", ("glibc", "2.35"), "2.4.0") == key, "the same machine, the same key"
    assert native.cache_key("", ("", ""), "2.4.0").startswith("machine-unknown-libc-unknown-dali2.4.0-")
    assert native.cache_key("x/86", ("musl libc", "1.2"), "2.4.0").startswith("x_86-musl_libc1.2-dali2.4.0-")


def test_the_library_path_is_keyed_by_this_machine(tmp_path):
    import nvidia.dali as dali

    path = native.library_path(tmp_path)
    expected = native.cache_key(platform.machine(), platform.libc_ver(), dali.__version__)
    assert path == tmp_path / "native" / expected / native.LIBRARY_NAME
    assert path.parent.name.startswith(f"{platform.machine()}-")


@pytest.mark.parametrize("little_endian", [True, False])
def test_elf_machine_reads_the_header(tmp_path, little_endian):
    assert native.elf_machine(fake_elf(tmp_path / "lib.so", 183, little_endian=little_endian)) == 183
    (tmp_path / "text.so").write_text("not an ELF file at all")
    assert native.elf_machine(tmp_path / "text.so") is None
    (tmp_path / "short.so").write_bytes(b"\x7fELF")
    assert native.elf_machine(tmp_path / "short.so") is None


def test_a_library_of_this_architecture_passes(tmp_path):
    native.check_architecture(fake_elf(tmp_path / "x86.so", 62), machine="x86_64")
    native.check_architecture(fake_elf(tmp_path / "arm.so", 183), machine="aarch64")
    native.check_architecture(fake_elf(tmp_path / "odd.so", 62), machine="sparc64")  # unknown here: not judged


def test_a_cached_library_for_another_architecture_is_one_line_user_error(tmp_path):
    """A home folder shared by x86-64 login nodes and aarch64 GH200 nodes: load() names the file and both
    machines, and does not hand the library to DALI (whose dlopen error would be a raw OSError). In a fresh
    process, where nothing is loaded yet."""
    ours = native.ELF_MACHINES[platform.machine().lower()]
    other = 183 if ours != 183 else 62
    target = fake_elf(native.library_path(tmp_path), other)
    code = ("import sys; from dali_cutmix import native; from dali_cutmix.errors import UserError\n"
            "try:\n    native.load(cache=sys.argv[1])\n"
            "except native.NativeBuildError as e:\n    print(e.missing, isinstance(e, UserError)); print(e)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["architecture True", (
        f"dali-cutmix's DALI operators in {str(target)!r} were built for {native.ELF_MACHINE_NAMES[other]}, and "
        f"this machine is {platform.machine()}: delete that file (it rebuilds) or set DALI_CUTMIX_CACHE to a cache "
        "folder of this machine's own")]
