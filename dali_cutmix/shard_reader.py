"""Tar shards: a data set as WebDataset tar files, their DALI index files and a manifest (what
``dali-cutmix shard`` writes), found by the manifest, on a local disk or under an ``s3://`` prefix, and read by
DALI's ``fn.readers.webdataset``.

A shard folder holds::

    manifest.json            written last: its presence means the folder is complete
    shard-00000.tar          samples KEY.jpg (the image's bytes as stored; .jpeg/.png/... keep their own
    shard-00000.idx          extension) and KEY.cls (the class index, decimal ASCII digits, zero-padded)
    ...

The index files are DALI's (``wds2idx``'s v1.2 format): ``v1.2 N``, then per sample ``ext offset size name`` per
component, the offset being where the component's data starts in the tar. An ImageNet root becomes ``OUT/train``
and ``OUT/val``, a shard folder each: ``--data OUT`` reads like an ImageNet root.

Labels: the ``.cls`` text is turned into the int32 class id inside the DALI graph (the digits' bytes minus ``"0"``,
times powers of ten, summed: :func:`parse_label`), so the reader's outputs are what the file reader's are.

Object storage: a shard folder may be an ``s3://bucket/prefix`` URI. DALI's wheel links the AWS SDK; its readers
take ``s3://`` paths. DALI reads ``AWS_ENDPOINT_URL`` (an S3-compatible server: MinIO, Ceph, moto...) and
``DALI_S3_NO_VERIFY_SSL``; the SDK takes credentials and region the usual way (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``~/.aws/config`` and ``credentials``, an instance role). The manifest under a prefix is read through DALI too (a one-file ``readers.file`` pipeline), so reading
shards from S3 needs no other package.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import UserError

MANIFEST = "manifest.json"
FORMAT = "dali-cutmix-shards"
FORMAT_VERSION = 1
#: The index file format DALI's webdataset reader reads (``tools/wds2idx.py`` writes it).
INDEX_VERSION = "v1.2"
LABEL_EXT = "cls"
#: Extensions an image component may have (the source file's, lower case), the reader's first output.
IMAGE_EXTS = ("jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp")
#: The webdataset reader's shuffle buffer (samples) when shuffling: see the README's "Tar shards".
DEFAULT_INITIAL_FILL = 4096
S3_PREFIX = "s3://"
#: What to say when an ``s3://`` read fails: where DALI's S3 client takes its settings from.
S3_HINT = ("DALI reads s3:// with the AWS SDK's settings: AWS_ENDPOINT_URL (for a non-AWS server), AWS_ACCESS_KEY_ID, "
           "AWS_SECRET_ACCESS_KEY, AWS_REGION")
#: How DALI 2.4's S3 client says a request got no answer: the AWS SDK's curl error, after its retries (3 attempts,
#: ``AWS_MAX_ATTEMPTS``): ``curlCode: 7, Could not connect to server; Details: ...`` for an endpoint that is down,
#: ``curlCode: 28, Timeout was reached; Details: ...`` for one that accepts connections and stops answering. DALI
#: raises it from a read (``fn.readers.webdataset`` mid-epoch) and from the ``HEAD`` of an object when a reader is
#: built. ``tests/test_dali_messages.py`` pins both texts by making DALI raise them.
S3_NO_ANSWER = re.compile(r"curlCode: (?P<code>\d+), (?P<what>[^;\n]+?)[ \t]*(?:;|$)", re.M)


class S3Unreachable(UserError):
    """DALI's S3 client got no answer from the endpoint while it read ``uri`` (a shard folder or a manifest).

    Attributes: ``uri``; ``endpoint``, what ``AWS_ENDPOINT_URL`` says (None: AWS's own); ``reason``, curl's words
    ("Could not connect to server", "Timeout was reached"); ``dali``, DALI's line from ``curlCode`` on."""

    def __init__(self, message: str, *, uri: str, endpoint: Optional[str], reason: str, dali: str):
        super().__init__(message)
        self.uri, self.endpoint, self.reason, self.dali = uri, endpoint, reason, dali


def s3_unreachable(error: BaseException, uri: str) -> Optional[S3Unreachable]:
    """An :class:`S3Unreachable` for a DALI error (a RuntimeError) that says the S3 endpoint did not answer
    (:data:`S3_NO_ANSWER`) while DALI read ``uri``; None for any other error.

    Its message, one line, names the endpoint (``AWS_ENDPOINT_URL``, DALI's setting) and ``uri``, gives curl's
    reason and says what to do: check the endpoint, then run again (a training run continues from its last
    checkpoint with ``--resume auto``; nothing the reader does writes a file)."""
    text = str(error)
    match = S3_NO_ANSWER.search(text)
    if match is None:
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    where = f"the S3 endpoint {endpoint}" if endpoint else "AWS's S3 endpoint"
    return S3Unreachable(
        f"{where} does not answer (curl: {match.group('what')}) while DALI reads {uri}: check that it is up and that "
        f"AWS_ENDPOINT_URL names it, then run again (`dali-cutmix train` continues from its last checkpoint with "
        f"--resume auto)", uri=uri, endpoint=endpoint, reason=match.group("what"),
        dali=text[match.start():].splitlines()[0].strip())


def is_s3(data) -> bool:
    """Whether ``data`` is an ``s3://`` URI."""
    return isinstance(data, str) and data.startswith(S3_PREFIX)


def join(location: str, name: str) -> str:
    """``location/name`` for a local folder or an ``s3://`` prefix."""
    return f"{location.rstrip('/')}/{name}" if is_s3(location) else str(Path(location) / name)


def shard_names(number: int) -> Tuple[str, str]:
    """The tar and index file names of shard ``number``."""
    return f"shard-{number:05d}.tar", f"shard-{number:05d}.idx"


@dataclass(frozen=True)
class ShardSet:
    """One shard folder (local or ``s3://``): where it is, and its manifest's content."""

    location: str
    classes: Tuple[str, ...]
    tars: Tuple[str, ...]
    indexes: Tuple[str, ...]
    counts: Tuple[int, ...]
    label_digits: int
    manifest: dict

    @property
    def samples(self) -> int:
        """Samples over all shards."""
        return sum(self.counts)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def tar_paths(self) -> List[str]:
        """Full paths (or URIs) of the tar files, in the manifest's order."""
        return [join(self.location, t) for t in self.tars]

    @property
    def index_paths(self) -> List[str]:
        """Full paths (or URIs) of the index files, in the manifest's order."""
        return [join(self.location, i) for i in self.indexes]

    @property
    def skipped(self) -> List[dict]:
        """The source's files left out when the shards were written (``path``, ``reason``)."""
        return list(self.manifest.get("source", {}).get("skipped", []))


def check_manifest(manifest, where: str) -> dict:
    """``manifest`` if it is one of ours in a version this code reads; raises UserError naming ``where``."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{where} is not a dali-cutmix shard manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{where} has shard format version {manifest.get('version')!r}; this dali-cutmix reads "
                         f"version {FORMAT_VERSION}: write the shards again with `dali-cutmix shard`")
    try:
        shards = manifest["shards"]
        classes = manifest["classes"]
        digits = manifest["label_digits"]
        if not shards or not classes or any(s["samples"] < 1 for s in shards) or digits < 1:
            raise ValueError
        for s in shards:
            s["tar"], s["index"]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{where} is malformed (classes, shards and label_digits are needed)") from None
    return manifest


def _read_s3_bytes(uri: str) -> bytes:
    """The content of one object, read through DALI's S3 client (a one-file ``readers.file`` pipeline)."""
    import numpy as np
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, exec_pipelined=False, exec_async=False,
                  prefetch_queue_depth=1)
    def one_file():
        data, _ = fn.readers.file(files=[uri], labels=[0])
        return data

    try:
        pipe = one_file()
        pipe.build()
        (out,) = pipe.run()
    except RuntimeError as e:
        from .errors import first_line

        unreachable = s3_unreachable(e, uri)
        if unreachable is not None:
            raise unreachable from None
        text = str(e)
        lines = [ln.strip() for ln in text.split("encountered:", 1)[-1].splitlines() if ln.strip()]
        reason = (lines[0] if lines else first_line(e)).rstrip(": ")
        raise UserError(f"cannot read {uri}: {reason} ({S3_HINT})") from None
    return np.asarray(out[0]).tobytes()


#: The ``s3://`` manifests this process has read, by URI.
_S3_MANIFESTS: Dict[str, str] = {}


def read_manifest_text(location: str) -> Optional[str]:
    """The text of ``location``'s manifest, None when a local folder has none. For ``s3://``, a failed read
    raises UserError (one line: DALI's reason and where DALI takes its S3 settings), :class:`S3Unreachable` when
    the endpoint does not answer."""
    if is_s3(location):
        uri = join(location, MANIFEST)
        if uri not in _S3_MANIFESTS:  # read once per process: a manifest is written last and never changed
            _S3_MANIFESTS[uri] = _read_s3_bytes(uri).decode()
        return _S3_MANIFESTS[uri]
    path = Path(location) / MANIFEST
    if not path.is_file():
        return None
    return path.read_text()


def load_shards(location) -> Optional[ShardSet]:
    """The :class:`ShardSet` of the shard folder ``location`` (a path or an ``s3://`` prefix), None when a local
    ``location`` is not one (no manifest).

    Raises:
        UserError: a manifest that is not ours, of another version or malformed; an ``s3://``
            manifest that cannot be read.
    """
    location = str(location)
    if not is_s3(location):
        location = str(Path(location).expanduser())
    text = read_manifest_text(location)
    if text is None:
        return None
    where = join(location, MANIFEST)
    try:
        manifest = json.loads(text)
    except ValueError:
        raise UserError(f"{where} is not valid JSON") from None
    check_manifest(manifest, where)
    shards = manifest["shards"]
    return ShardSet(location=location, classes=tuple(manifest["classes"]), tars=tuple(s["tar"] for s in shards),
                    indexes=tuple(s["index"] for s in shards), counts=tuple(int(s["samples"]) for s in shards),
                    label_digits=int(manifest["label_digits"]), manifest=manifest)


def is_shard_folder(data) -> bool:
    """Whether ``data`` is a shard folder: an ``s3://`` URI (always read as shards) or a local folder holding a
    manifest."""
    if isinstance(data, ShardSet) or is_s3(data):
        return True
    if not isinstance(data, (str, os.PathLike)):
        return False
    return (Path(data).expanduser() / MANIFEST).is_file()


def as_shards(data) -> ShardSet:
    """``data`` (a :class:`ShardSet`, a shard folder or an ``s3://`` prefix) as a ShardSet.

    Raises:
        UserError: no manifest there; see :func:`load_shards`.
    """
    if isinstance(data, ShardSet):
        return data
    shards = load_shards(data)
    if shards is None:
        raise UserError(f"{str(data)!r} holds no shard manifest ({MANIFEST})")
    return shards


def resolve_shards(data):
    """``data`` as a :class:`ShardSet` when it is a shard folder (its manifest read now, once), else ``data``
    as it is."""
    return as_shards(data) if is_shard_folder(data) else data


def shard_root_splits(data) -> Optional[Tuple[ShardSet, ShardSet]]:
    """``(train, val)`` shard sets when ``data`` (a folder or an ``s3://`` prefix) holds ``train/`` and ``val/``
    shard folders (what ``dali-cutmix shard`` makes of an ImageNet root); None when a local ``data`` does not.

    Raises:
        UserError: the splits' classes differ, or a manifest is not ours; an ``s3://`` prefix
            without both manifests.
    """
    data = str(data)
    if not is_s3(data):
        data = str(Path(data).expanduser())
        if not all((Path(data) / s / MANIFEST).is_file() for s in ("train", "val")):
            return None
    train, val = as_shards(join(data, "train")), as_shards(join(data, "val"))
    if train.classes != val.classes:
        raise UserError(f"the shard folders {train.location!r} and {val.location!r} hold different classes "
                         f"({len(train.classes)} and {len(val.classes)})")
    return train, val


# ------------------------------------------------------------------------------------------------ reading


def parse_label(cls, digits: int, ops=None):
    """Inside a ``pipeline_def``: the int32 class id (shape ``[1]``, as the file reader's labels) of a ``.cls``
    component read as uint8 bytes: ``digits`` zero-padded ASCII digits. Done in the graph with arithmetic on the
    bytes (``sum((byte[i] - 48) * 10**(digits-1-i))``): no Python in the loop, checkpoint-safe. ``ops``: DALI
    Dynamic's module for ``ndd.Batch``es (default ``nvidia.dali.fn``)."""
    import nvidia.dali.types as types

    from .stage import operator_namespace

    fn = operator_namespace(ops)
    codes = fn.cast(cls, dtype=types.INT32)
    byte = (lambda i: codes.slice[i]) if ops is not None else (lambda i: codes[i])  # ndd: per-sample slicing
    value = None
    for i in range(digits):
        term = (byte(i) - 48) * (10 ** (digits - 1 - i))
        value = term if value is None else value + term
    return fn.reshape(fn.cast(value, dtype=types.INT32), shape=[1])


def webdataset_args(shards: ShardSet) -> dict:
    """The source arguments of ``fn.readers.webdataset`` for ``shards``: paths, index paths, the two outputs'
    extensions (any image extension; the class)."""
    return dict(paths=shards.tar_paths, index_paths=shards.index_paths, ext=[";".join(IMAGE_EXTS), LABEL_EXT],
                missing_component_behavior="error")


def shard_reader(data, *, shard_id: int = 0, num_shards: int = 1, shuffle: bool = True, seed: int = 0,
                 initial_fill: int = DEFAULT_INITIAL_FILL, name: str = "Reader"):
    """Inside a ``pipeline_def``: DALI's webdataset reader over the shard folder ``data`` (see :func:`as_shards`);
    returns ``(encoded images, int32 labels [1])`` like the file reader.

    Sharding over ranks is DALI's: the samples (in the manifest's shard order) are cut into ``num_shards``
    contiguous, disjoint ranges. ``pad_last_batch`` as the file reader. With ``shuffle``: every epoch visits the
    tar files in a new order (``shuffle_after_epoch``, the same ``seed`` on every rank) and samples are drawn at
    random from a buffer of ``initial_fill`` samples, at most this rank's part (``random_shuffle``); the samples
    were shuffled across the shards when they were written.
    """
    import nvidia.dali.fn as fn

    shards = as_shards(data)
    images, cls = fn.readers.webdataset(**shard_reader_args(shards, shard_id=shard_id, num_shards=num_shards,
                                                            shuffle=shuffle, seed=seed, initial_fill=initial_fill),
                                        name=name)
    return images, parse_label(cls, shards.label_digits)


def shard_reader_args(shards: ShardSet, *, shard_id: int = 0, num_shards: int = 1, shuffle: bool = True,
                      seed: int = 0, initial_fill: int = DEFAULT_INITIAL_FILL) -> dict:
    """The arguments of DALI's webdataset reader (``fn.readers.webdataset``, ``ndd.readers.Webdataset``) over
    ``shards`` for one rank, as :func:`shard_reader` describes them."""
    # A buffer larger than this rank's part makes DALI read (and on S3, fetch) far more than the part before the
    # first batch; the whole part is the most a buffer can shuffle anyway.
    initial_fill = max(1, min(initial_fill, -(-shards.samples // num_shards)))
    shuffling = dict(random_shuffle=True, initial_fill=initial_fill, shuffle_after_epoch=True,
                     shuffle_after_epoch_seed=seed) if shuffle else {}
    return dict(**webdataset_args(shards), shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, **shuffling)


def first_images(data, count: int) -> List[bytes]:
    """The encoded images of the first ``count`` samples of the shard folder ``data`` (local or ``s3://``), read
    through DALI's webdataset reader (for summaries: file sizes, pixel sizes)."""
    import numpy as np
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    shards = as_shards(data)
    count = max(1, min(int(count), shards.samples))

    @pipeline_def(batch_size=count, num_threads=1, device_id=None, exec_pipelined=False, exec_async=False,
                  prefetch_queue_depth=1)
    def first():
        images, _ = fn.readers.webdataset(**webdataset_args(shards))
        return images

    pipe = first()
    pipe.build()
    (images,) = pipe.run()
    return [np.asarray(images.at(i)).tobytes() for i in range(len(images))]
