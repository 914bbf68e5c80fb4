"""The DALI error texts the loader reads to name a bad file, pinned by making DALI 2.4 raise each one for real.

:class:`dali_cutmix.CutMixLoader` recognises the mixing stage's own errors by their ``[dali-cutmix]`` prefix
(``tests/test_stage.py``). For a data file DALI cannot read it has only DALI's message to go on; if a DALI release
rewords one, a test here fails first.
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("dali-messages")
    good = root / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (root / "truncated.jpg").write_bytes(data[:len(data) // 2])
    (root / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 2)
    (root / "text.jpg").write_bytes(b"not an image at all " * 20)
    (root / "empty.jpg").write_bytes(b"")
    return root


def _dali_error(paths, *, decode=True, dont_use_mmap=False):
    """The RuntimeError DALI raises for a CPU pipeline reading ``paths`` (and decoding them)."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=len(paths), num_threads=1, device_id=None)
    def pipe():
        jpegs, labels = fn.readers.file(files=[str(p) for p in paths], labels=list(range(len(paths))), name="Reader",
                                        dont_use_mmap=dont_use_mmap)
        return (fn.decoders.image(jpegs) if decode else jpegs), labels

    p = pipe()
    p.build()
    with pytest.raises(RuntimeError) as info:
        p.run()
    return info.value


def _encountered(error) -> str:
    """DALI's own line: the first after "encountered:"."""
    return str(error).split("encountered:", 1)[1].strip().splitlines()[0]


def test_a_truncated_jpeg_is_named_by_the_decoder(files):
    from dali_cutmix.loader import bad_file_error

    error = _dali_error([files / "good.jpg", files / "truncated.jpg"])
    assert _encountered(error) == f"Failed to decode sample #1 : {files / 'truncated.jpg'}"
    bad = bad_file_error(error)
    assert bad.path == files / "truncated.jpg" and "no JPEG end marker" in bad.reason


@pytest.mark.parametrize("name, status, what", [("garbage.jpg", 3, "a bad code stream"),
                                                ("text.jpg", 4, "a format it does not support")])
def test_nvimagecodec_names_a_status_not_the_file(files, name, status, what):
    from dali_cutmix.folder_reader import ImageList
    from dali_cutmix.loader import CODEC_DATA_STATUSES, bad_file_error

    error = _dali_error([files / "good.jpg", files / name])
    assert _encountered(error) == f"nvImageCodec failure: '#{status}'"
    assert CODEC_DATA_STATUSES[status] == what
    source = ImageList(root=files, files=("good.jpg", name), labels=(0, 1))
    bad = bad_file_error(error, source)  # the loader finds the file among the reader's
    assert bad.path == files / name and str(bad).startswith(f"cannot read image file {str(files / name)!r}: ")


@pytest.mark.parametrize("name", ["missing.jpg", "empty.jpg"])
def test_the_file_reader_names_a_missing_or_empty_file(files, name):
    from dali_cutmix.loader import bad_file_error

    error = _dali_error([files / "good.jpg", files / name], decode=False)
    assert _encountered(error) == f"File mapping failed: {files / name}"
    bad = bad_file_error(error)
    assert bad.path == files / name
    assert bad.reason == ("it is missing (moved or deleted after the file list was made)" if name == "missing.jpg"
                          else "empty file (0 bytes)")


def test_without_mmap_the_file_reader_says_could_not_open(files):
    from dali_cutmix.loader import bad_file_error

    error = _dali_error([files / "good.jpg", files / "missing.jpg"], decode=False, dont_use_mmap=True)
    assert _encountered(error).endswith(f"Could not open file {files / 'missing.jpg'}: No such file or directory")
    bad = bad_file_error(error)
    assert bad.path == files / "missing.jpg" and "it is missing" in bad.reason


def test_the_webdataset_reader_names_a_sample_by_tar_offset_and_key(files, tmp_path):
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from dali_cutmix.loader import SHARD_FIX, bad_file_error

    good = (files / "good.jpg").read_bytes()
    tar = tmp_path / "s.tar"
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
        for key, data in (("000", good), ("001", (files / "truncated.jpg").read_bytes())):
            for ext, payload in (("jpg", data), ("cls", b"0")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        jpegs, labels = fn.readers.webdataset(paths=[str(tar)], ext=["jpg", "cls"], name="Reader")
        return fn.decoders.image(jpegs), labels

    p = pipe()
    p.build()
    with pytest.raises(RuntimeError) as info:
        p.run()
    with tarfile.open(tar) as t:
        offset = t.getmember("001.jpg").offset_data  # DALI names the sample by where its image's bytes start
    assert _encountered(info.value) == f"Failed to decode sample #1 : {tar}:{offset}:001.jpg"
    bad = bad_file_error(info.value)
    assert bad.shard and str(bad) == f"cannot decode sample '001.jpg' of {str(tar)!r} (byte {offset}): {SHARD_FIX}"
    assert not os.path.exists(str(tar) + ".idx")
