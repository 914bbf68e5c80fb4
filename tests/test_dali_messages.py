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
from conftest import decoder_device, device_id


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


def _dali_error(paths, *, decode=True, dont_use_mmap=False, device="cpu"):
    """The RuntimeError DALI raises for a pipeline on ``device`` reading ``paths`` (and decoding them: on the CPU,
    or with the "mixed" decoder on the GPU)."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=len(paths), num_threads=1, device_id=device_id(device))
    def pipe():
        jpegs, labels = fn.readers.file(files=[str(p) for p in paths], labels=list(range(len(paths))), name="Reader",
                                        dont_use_mmap=dont_use_mmap)
        return (fn.decoders.image(jpegs, device=decoder_device(device)) if decode else jpegs), labels

    p = pipe()
    p.build()
    with pytest.raises(RuntimeError) as info:
        p.run()
    return info.value


def _encountered(error) -> str:
    """DALI's own line: the first after "encountered:"."""
    return str(error).split("encountered:", 1)[1].strip().splitlines()[0]


def test_a_truncated_jpeg_is_named_by_the_decoder(files, device):
    """The CPU decoder's text is pinned; on the GPU (nvJPEG, another text) the loader must still name the file,
    from DALI's text or by checking the reader's files."""
    from dali_cutmix.folder_reader import ImageList
    from dali_cutmix.loader import bad_file_error

    error = _dali_error([files / "good.jpg", files / "truncated.jpg"], device=device)
    if device == "cpu":
        assert _encountered(error) == f"Failed to decode sample #1 : {files / 'truncated.jpg'}"
        bad = bad_file_error(error)
    else:
        bad = bad_file_error(error, ImageList(root=files, files=("good.jpg", "truncated.jpg"), labels=(0, 1)))
    assert bad is not None, f"the loader cannot name the file from DALI's text: {error}"
    assert bad.path == files / "truncated.jpg" and "no JPEG end marker" in bad.reason


@pytest.mark.parametrize("name, status, what", [("garbage.jpg", 3, "a bad code stream"),
                                                ("text.jpg", 4, "a format it does not support")])
def test_nvimagecodec_names_a_status_not_the_file(files, name, status, what, device):
    """The CPU text is pinned; on the GPU the loader must still find the file among the reader's."""
    from dali_cutmix.folder_reader import ImageList
    from dali_cutmix.loader import CODEC_DATA_STATUSES, bad_file_error

    error = _dali_error([files / "good.jpg", files / name], device=device)
    if device == "cpu":
        assert _encountered(error) == f"nvImageCodec failure: '#{status}'"
    assert CODEC_DATA_STATUSES[status] == what
    source = ImageList(root=files, files=("good.jpg", name), labels=(0, 1))
    bad = bad_file_error(error, source)  # the loader finds the file among the reader's
    assert bad.path == files / name and str(bad).startswith(f"cannot read image file {str(files / name)!r}: ")


@pytest.mark.one_device("DALI's file reader alone (no decoder): a reader runs on the CPU on every machine")
@pytest.mark.parametrize("name", ["missing.jpg", "empty.jpg"])
def test_the_file_reader_names_a_missing_or_empty_file(files, name):
    from dali_cutmix.loader import bad_file_error

    error = _dali_error([files / "good.jpg", files / name], decode=False)
    assert _encountered(error) == f"File mapping failed: {files / name}"
    bad = bad_file_error(error)
    assert bad.path == files / name
    assert bad.reason == ("it is missing (moved or deleted after the file list was made)" if name == "missing.jpg"
                          else "empty file (0 bytes)")


@pytest.mark.one_device("DALI's file reader alone (no decoder): a reader runs on the CPU on every machine")
def test_without_mmap_the_file_reader_says_could_not_open(files):
    from dali_cutmix.loader import bad_file_error

    error = _dali_error([files / "good.jpg", files / "missing.jpg"], decode=False, dont_use_mmap=True)
    assert _encountered(error).endswith(f"Could not open file {files / 'missing.jpg'}: No such file or directory")
    bad = bad_file_error(error)
    assert bad.path == files / "missing.jpg" and "it is missing" in bad.reason


def test_the_webdataset_reader_names_a_sample_by_tar_offset_and_key(files, tmp_path, device):
    """The CPU decoder's text is pinned; on the GPU ("mixed" decoder) the loader must name the same sample."""
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

    @pipeline_def(batch_size=2, num_threads=1, device_id=device_id(device))
    def pipe():
        jpegs, labels = fn.readers.webdataset(paths=[str(tar)], ext=["jpg", "cls"], name="Reader")
        return fn.decoders.image(jpegs, device=decoder_device(device)), labels

    p = pipe()
    p.build()
    with pytest.raises(RuntimeError) as info:
        p.run()
    with tarfile.open(tar) as t:
        offset = t.getmember("001.jpg").offset_data  # DALI names the sample by where its image's bytes start
    if device == "cpu":
        assert _encountered(info.value) == f"Failed to decode sample #1 : {tar}:{offset}:001.jpg"
    bad = bad_file_error(info.value)
    assert bad is not None, f"the loader cannot name the sample from DALI's text: {info.value}"
    assert bad.shard and str(bad) == f"cannot decode sample '001.jpg' of {str(tar)!r} (byte {offset}): {SHARD_FIX}"
    assert not os.path.exists(str(tar) + ".idx")


#: A child process that reads ``count`` one-sample batches of a tar on S3 with DALI's webdataset reader: it reads
#: one, says so, waits for a line on stdin (the test stops the server meanwhile), reads on and prints DALI's error
#: as JSON (null when none came). A child: DALI makes its S3 client once per process, for one endpoint.
_S3_READ_AFTER_A_STOP = r"""
import json, sys
import nvidia.dali.fn as fn
from nvidia.dali import pipeline_def

@pipeline_def(batch_size=1, num_threads=1, device_id=None, exec_pipelined=False, exec_async=False,
              prefetch_queue_depth=1)
def pipe():
    return tuple(fn.readers.webdataset(paths=[sys.argv[1]], ext=["jpg", "cls"], name="Reader"))

p = pipe()
p.build()
p.run()
print("read", flush=True)
sys.stdin.readline()
try:
    for _ in range(int(sys.argv[2])):
        p.run()
except RuntimeError as e:
    print(json.dumps(str(e)), flush=True)
else:
    print(json.dumps(None), flush=True)
"""


def _s3_error_after(files, tmp_path, stop, **env):
    """DALI's error text when the S3 endpoint stops (``stop(server)``) in the middle of a webdataset read, and
    the server's endpoint URL."""
    import json
    import subprocess
    import sys

    from conftest import MotoServer, skip_without_moto

    skip_without_moto()
    samples = 40
    tar = tmp_path / "s.tar"
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
        for i in range(samples):
            for ext, payload in (("jpg", (files / "good.jpg").read_bytes()), ("cls", b"0")):
                info = tarfile.TarInfo(f"{i:03d}.{ext}")
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
    server = MotoServer().start()
    try:
        client = server.client()
        client.create_bucket(Bucket="msg")
        client.upload_file(str(tar), "msg", "s.tar")
        child = subprocess.Popen([sys.executable, "-c", _S3_READ_AFTER_A_STOP, "s3://msg/s.tar", str(samples)],
                                 env={**os.environ, **server.env, **env}, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline() == "read\n"
            stop(server)
            child.stdin.write("go\n")
            child.stdin.flush()
            text = json.loads(child.stdout.readline())
        finally:
            child.kill()
            child.wait(timeout=30)
    finally:
        server.stop()
    assert text is not None, "DALI read on after the S3 server stopped"
    return text, server.env["AWS_ENDPOINT_URL"]


def test_an_s3_endpoint_that_went_away_is_curls_could_not_connect(files, tmp_path, monkeypatch):
    from dali_cutmix.shard_reader import s3_unreachable

    text, endpoint = _s3_error_after(files, tmp_path, lambda server: server.stop())
    port = endpoint.rsplit(":", 1)[1]
    line = _encountered(RuntimeError(text))
    assert line.startswith(f": curlCode: 7, Could not connect to server; Details: Failed to connect to "
                           f"127.0.0.1:{port} after "), line
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    error = s3_unreachable(RuntimeError(text), "s3://msg")
    assert str(error) == (f"the S3 endpoint {endpoint} does not answer (curl: Could not connect to server) while "
                          f"DALI reads s3://msg: check that it is up and that AWS_ENDPOINT_URL names it, then run "
                          f"again (`dali-cutmix train` continues from its last checkpoint with --resume auto)")
    assert (error.endpoint, error.reason, error.uri) == (endpoint, "Could not connect to server", "s3://msg")
    assert error.dali == line.lstrip(": ")


def test_an_s3_endpoint_that_stopped_answering_is_curls_timeout(files, tmp_path, monkeypatch):
    from dali_cutmix.shard_reader import s3_unreachable

    # One attempt (the AWS SDK's AWS_MAX_ATTEMPTS; 3 by default): DALI gives up after the SDK's 3 s request timeout.
    text, endpoint = _s3_error_after(files, tmp_path, lambda server: server.freeze(), AWS_MAX_ATTEMPTS="1")
    line = _encountered(RuntimeError(text))
    assert line.startswith(": curlCode: 28, Timeout was reached; Details: "), line
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    error = s3_unreachable(RuntimeError(text), "s3://msg")
    assert str(error).startswith("AWS's S3 endpoint does not answer (curl: Timeout was reached) while DALI reads "
                                 "s3://msg: check that it is up")
    assert error.endpoint is None and error.reason == "Timeout was reached"
    # An object that is not there is no outage (DALI's get_stats text; the endpoint answered).
    assert s3_unreachable(RuntimeError("S3 Object not found. bucket=msg object=gone.tar:\nNoSuchKey: The specified "
                                       "key does not exist."), "s3://msg") is None
