"""Shared fixtures: small JPEG trees made by the tests themselves (nothing is downloaded), the ``device``
every test that builds a pipeline or runs the stage is parametrized over: "cpu" always, "gpu" (marker ``gpu``,
``pytest -m gpu`` selects it) where DALI sees a CUDA GPU, skipped with its reason elsewhere; a local
S3-compatible server (moto) for the ``s3://`` tests. Collection checks that every test that builds a DALI
pipeline takes ``device`` (tests/both_devices.py)."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

#: The two halves of the suite: the GPU half carries the ``gpu`` marker (registered in pyproject.toml).
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


def pytest_configure(config):
    """The check, at collection, that every test that builds a DALI pipeline runs on both devices
    (tests/both_devices.py)."""
    from both_devices import BothDevices

    config.pluginmanager.register(BothDevices(Path(__file__).parent), "both-devices")


@functools.cache
def gpu_missing() -> str | None:
    """Why this machine runs no GPU test (a sentence naming the GPU), or None when DALI sees a CUDA GPU."""
    from nvidia.dali import backend

    try:
        count = backend.GetCUDADeviceCount()
    except RuntimeError as e:  # a driver DALI cannot talk to
        return f"no GPU: DALI cannot count CUDA GPUs here ({e})"
    if count == 0:
        return "no GPU: DALI sees no CUDA GPU on this machine (nvidia.dali.backend.GetCUDADeviceCount() is 0)"
    return None


def skip_without_gpu(device: str) -> None:
    """Skip the running test, with the reason, when ``device`` is "gpu" and DALI sees no GPU."""
    if device == "gpu" and gpu_missing() is not None:
        pytest.skip(gpu_missing())


def skip_where_roi_decoding_is_off(device: str) -> None:
    """Skip the running test, with the reason, when it would decode crop regions on the GPU in a process that keeps
    off the GPU's ROI decoding (``DALI_CUTMIX_DECODE=full``: benchmarks/gpu_run.sh sets it when its ROI-decode
    smoke test fails)."""
    import os

    from dali_cutmix.builder import DECODE_ENV

    if device == "gpu" and os.environ.get(DECODE_ENV) == "full":
        pytest.skip(f"{DECODE_ENV}=full: this process keeps off the GPU's ROI decoding")


@pytest.fixture(params=DEVICES)
def device(request):
    """"cpu", then "gpu" (skipped with its reason where DALI sees no GPU): where the test's pipeline runs."""
    skip_without_gpu(request.param)
    return request.param


@pytest.fixture
def gpu_only():
    """"gpu", for tests that mean something only on a GPU (mark them ``gpu``); skipped, with the reason, where
    DALI sees no GPU."""
    skip_without_gpu("gpu")
    return "gpu"


def gpu_count() -> int:
    """CUDA GPUs DALI sees here (0 without a GPU or a driver it can talk to)."""
    from nvidia.dali import backend

    return 0 if gpu_missing() is not None else int(backend.GetCUDADeviceCount())


def trainer_flags(device: str, ranks: int = 1) -> list[str]:
    """The ``dali-cutmix train`` flags that run ``ranks`` ranks on ``device``: ``--gpus RANKS`` on the GPU (the
    test skipped, with the reason, where DALI sees fewer GPUs), ``--gpus 0 --cpu-procs RANKS`` on the CPU."""
    if device == "gpu":
        skip_without_gpu(device)
        if gpu_count() < ranks:
            pytest.skip(f"needs {ranks} GPUs (one per rank): DALI sees {gpu_count()} on this machine")
        return ["--gpus", str(ranks)]
    return ["--gpus", "0", "--cpu-procs", str(ranks)]


def device_id(device: str) -> int | None:
    """The ``device_id`` of a pipeline on ``device``: 0 on the GPU, None (no CUDA at all) on the CPU."""
    return 0 if device == "gpu" else None


def decoder_device(device: str) -> str:
    """The ``device`` of DALI's image decoders for a pipeline on ``device``: "mixed" (nvJPEG) on the GPU."""
    return "mixed" if device == "gpu" else "cpu"


def to_numpy(batch) -> np.ndarray:
    """A DALI TensorList (CPU or GPU) of uniform shape as one host NumPy array, its samples stacked."""
    from nvidia.dali.backend import TensorListGPU

    if isinstance(batch, TensorListGPU):
        batch = batch.as_cpu()
    return np.array(batch.as_tensor())


def host(tensor) -> np.ndarray:
    """A torch tensor (CPU or CUDA) as a host NumPy array."""
    return tensor.detach().cpu().numpy()


def write_jpeg_tree(root, *, classes=4, per_class=6, sizes=((48, 64), (60, 40), (50, 50)), seed=0):
    """Write ``root/<class>/<i>.jpg`` random-noise JPEGs of varied sizes; returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[(c + i) % len(sizes)]
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="session")
def jpeg_tree(tmp_path_factory):
    """4 classes x 6 noise JPEGs (24 images) of three sizes."""
    return write_jpeg_tree(tmp_path_factory.mktemp("jpegs") / "train")


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    """The trainer tests' data set (tests/cli_runs.py): 4 colour-coded classes, 32 train / 12 val images per class,
    40x40 JPEGs."""
    from cli_runs import TRAIN_PER_CLASS, VAL_PER_CLASS, write_colour_dataset

    return write_colour_dataset(tmp_path_factory.mktemp("tiny") / "tiny", train_per_class=TRAIN_PER_CLASS,
                                val_per_class=VAL_PER_CLASS)


@pytest.fixture(scope="session")
def demo_imagenet(tmp_path_factory):
    """A small demo dataset in ImageNet layout: DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg."""
    from dali_cutmix.pipelines.demo import write_dataset

    return write_dataset(tmp_path_factory.mktemp("demo") / "demo", train_per_class=24, val_per_class=8, size=64,
                         num_classes=4)


@pytest.fixture(autouse=True, scope="session")
def scan_cache_in_tmp(tmp_path_factory):
    """Scans run in this process cache their results in a temporary folder, never in the user's cache folder
    (subprocesses get their own cache folder through DALI_CUTMIX_CACHE)."""
    from dali_cutmix.pipelines import scan

    folder = tmp_path_factory.mktemp("scan-cache")
    original = scan.cache_path
    patch = pytest.MonkeyPatch()
    patch.setattr(scan, "cache_path", lambda root: folder / original(root).name)
    yield folder
    patch.undo()


# ------------------------------------------------------------------------------------------ a local S3 server


class MotoServer:
    """moto's S3-compatible server on ``127.0.0.1:port`` (a free port unless given), run as a subprocess that a
    test can stop and start again on the same port. moto keeps its buckets in memory: each start is empty."""

    def __init__(self, port: int | None = None):
        if port is None:
            from dali_cutmix.train.plan import free_port

            port = free_port()
        self.port = port
        self.proc = None

    @property
    def env(self) -> dict:
        """The AWS environment variables that point DALI (and boto3) at this server."""
        return dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}", AWS_ACCESS_KEY_ID="testing",
                    AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")

    def client(self):
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def start(self) -> "MotoServer":
        """Start the server and wait until it answers (fails the test when it does not start)."""
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        for _ in range(150):
            try:
                client.list_buckets()
                return self
            except Exception:  # noqa: BLE001 - not answering yet, whatever boto3 says
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"moto's server did not start on port {self.port}")

    def freeze(self) -> None:
        """Stop the server's process (SIGSTOP): it keeps accepting connections and answers none."""
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        """Kill the server (an endpoint that went away: connections are refused); its buckets are gone."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None


def skip_without_moto() -> None:
    """Skip the running test, with the reason, when moto's server (the ``test`` extra) or boto3 is missing."""
    pytest.importorskip("moto.server", reason="moto[server] (the test extra) is not installed")
    pytest.importorskip("boto3")


def upload(client, folder, bucket: str, prefix: str) -> None:
    """Upload every file under ``folder`` to ``s3://bucket/prefix/`` (the same relative paths)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


@pytest.fixture(scope="session")
def s3_server():
    """A :class:`MotoServer` started for the whole session and stopped at its end; yields its AWS environment
    variables and a boto3 client. One for the session: DALI makes its S3 client once per process, with the
    ``AWS_ENDPOINT_URL`` of that moment, so every ``s3://`` read of this process must go to the same server
    (tests that stop a server run DALI in subprocesses, on a server of their own)."""
    skip_without_moto()
    server = MotoServer().start()
    try:
        yield server.env, server.client()
    finally:
        server.stop()
