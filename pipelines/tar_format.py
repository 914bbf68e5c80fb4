"""The bytes of a tar shard as ``dali-cutmix shard`` writes it: WebDataset tar members, the DALI index (v1.2) beside
each tar, and the manifest (read back by :mod:`dali_cutmix.shard_reader`)."""

from __future__ import annotations

from typing import List, Sequence, Tuple

from dali_cutmix.errors import UserError
from dali_cutmix.shard_reader import FORMAT, FORMAT_VERSION, IMAGE_EXTS, INDEX_VERSION, LABEL_EXT

TAR_BLOCK = 512


def padded(size: int) -> int:
    """``size`` rounded up to whole tar blocks."""
    return -(-size // TAR_BLOCK) * TAR_BLOCK


def sample_tar_bytes(image_size: int, label_digits: int) -> int:
    """Bytes one sample takes in a tar: a header and the padded data of each of its two members."""
    return 2 * TAR_BLOCK + padded(image_size) + padded(label_digits)


#: The end of a tar: two zero blocks.
TAR_END = 2 * TAR_BLOCK


def label_text(label: int, digits: int) -> bytes:
    """The ``.cls`` content of ``label``: ``digits`` zero-padded ASCII digits."""
    return f"{int(label):0{digits}d}".encode()


def label_digits(num_classes: int) -> int:
    """Digits of the largest class id (at least 1)."""
    return len(str(max(num_classes - 1, 0)))


def _header(name: str, size: int) -> bytes:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o444
    info.mtime = 0  # the same content gives the same tar
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


class TarIndexWriter:
    """Writes one WebDataset tar and, beside it, its DALI index (``wds2idx``'s v1.2 format) as it goes.

    ``add(key, [(ext, bytes), ...])`` appends a sample; ``close()`` ends the tar and returns the index text.
    """

    def __init__(self, stream):
        self.stream = stream
        self.offset = 0
        self.lines: List[str] = []

    def _write(self, data: bytes) -> None:
        self.stream.write(data)
        self.offset += len(data)

    def add(self, key: str, components: Sequence[Tuple[str, bytes]]) -> None:
        if "." in key or "/" in key:
            raise UserError(f"a WebDataset key holds no '.' or '/', got {key!r}")
        parts = []
        for ext, data in components:
            name = f"{key}.{ext}"
            self._write(_header(name, len(data)))
            parts.append(f"{ext} {self.offset} {len(data)} {name}")
            self._write(data)
            self._write(b"\0" * (padded(len(data)) - len(data)))
        self.lines.append(" ".join(parts))

    def close(self) -> str:
        self._write(b"\0" * TAR_END)
        return f"{INDEX_VERSION} {len(self.lines)}\n" + "".join(line + "\n" for line in self.lines)


def index_entries(text: str) -> List[List[Tuple[str, int, int, str]]]:
    """The samples of a v1.2 index file: per sample, its components ``(ext, data offset, size, name)``."""
    lines = text.splitlines()
    version, count = lines[0].split()
    if version != INDEX_VERSION:
        raise UserError(f"index version {version!r}, expected {INDEX_VERSION}")
    samples = []
    for line in lines[1:1 + int(count)]:
        fields = line.split()
        samples.append([(fields[i], int(fields[i + 1]), int(fields[i + 2]), fields[i + 3])
                        for i in range(0, len(fields), 4)])
    return samples


def manifest_dict(*, classes: Sequence[str], shards: Sequence[dict], digits: int, source: dict, seed: int,
                  shard_size: int, plan: str) -> dict:
    """A manifest (see :data:`FORMAT_VERSION`): the format and version, the classes in label order, the label
    encoding, per shard its tar, index, samples and bytes, the source (folder, split, files, skipped ones), the
    seed and shard size it was written with, and the digest of the plan (which file went where)."""
    return dict(format=FORMAT, version=FORMAT_VERSION, classes=list(classes), samples=sum(s["samples"] for s in shards),
                label_digits=digits, components=dict(image="|".join(IMAGE_EXTS), label=LABEL_EXT),
                shards=list(shards), source=source, seed=seed, shard_size=shard_size, plan=plan)
