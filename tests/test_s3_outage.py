"""The S3 endpoint that stops mid-epoch (issue 19): a run reading ``s3://`` shards ends with one line naming the
endpoint and the shards and saying what to do, exit code 2, the last checkpoint whole; once the endpoint is back,
``--resume auto`` continues from that checkpoint and the run completes.

The server is a local moto server of the test's own (:class:`conftest.MotoServer`), stopped while the trainer, a
subprocess, is in its first epoch. The data set is 32 samples in about as many tar files, so that shards remain
unread when it stops (DALI reads ahead: its shuffle buffer and the pipeline's prefetch)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading

import cli_runs as helpers
import pytest
from conftest import MotoServer, skip_without_moto, upload

STEPS = 8  # 32 training samples, 4 a step
EVERY = 2  # --checkpoint-steps


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory):
    """The trainer tests' colour data set, small (8 training, 2 validation images a class), as about one sample a
    tar file."""
    from dali_cutmix.pipelines.shard_writer import shard_data

    root = tmp_path_factory.mktemp("small-colour")
    data = helpers.write_colour_dataset(root / "data", train_per_class=8, val_per_class=2)
    shard_data(data, root / "shards", shard_size="2KB", jobs=1, show_progress=False)
    return root / "shards"


def _serve(server: MotoServer, shards) -> None:
    server.start()
    client = server.client()
    client.create_bucket(Bucket="data")
    upload(client, shards, "data", "colour")


def _sha(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _run_until_the_server_stops(command, cwd, env, server: MotoServer, at_step: int):
    """Run the trainer ``command``; kill ``server`` when the trainer reports step ``at_step`` of epoch 1. Returns
    the exit code, stderr's lines and stdout."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, proc.kill)
    watchdog.start()
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if line.startswith(f"epoch 1/1 step {at_step}/"):
                server.stop()
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        reader.join(timeout=60)
    return proc.returncode, lines, "".join(out)


def test_an_endpoint_that_stops_mid_epoch_ends_the_run_in_one_line_and_resume_continues(small_shards, tmp_path,
                                                                                       device):
    from dali_cutmix.train.checkpoint import LAST

    skip_without_moto()
    server = MotoServer()
    endpoint = server.env["AWS_ENDPOINT_URL"]
    env = {**helpers.cli_env(tmp_path), **server.env}
    out = tmp_path / "run"
    command = helpers.cli_command() + [
        "train", "--data", "s3://data/colour", "--output", str(out), "--epochs", "1", "--batch-size", "4",
        "--checkpoint-steps", str(EVERY), "--log-every", "1", "--gpus", "1" if device == "gpu" else "0",
        *helpers.TINY]
    fix = ("check that it is up and that AWS_ENDPOINT_URL names it, then run again (`dali-cutmix train` continues "
           "from its last checkpoint with --resume auto)")
    _serve(server, small_shards)
    try:
        # The endpoint goes away after step 3 (the checkpoint of step 2 is written).
        code, lines, stdout = _run_until_the_server_stops(command, tmp_path, env, server, at_step=EVERY + 1)
        assert " train images from s3://data/colour\n" in stdout, stdout  # the URI as given
        assert server.proc is None, "\n".join(lines)  # the server was stopped mid-epoch...
        assert code == 2, "\n".join(lines)
        assert not any("Traceback" in line for line in lines), "\n".join(lines)
        errors = [line for line in lines if line.startswith("error: ")]
        assert errors == [lines[-1]] == [
            f"error: the S3 endpoint {endpoint} does not answer (curl: Could not connect to server) while DALI reads "
            f"s3://data/colour/train: {fix}"]
        steps = [int(m.group(1)) for m in map(re.compile(r"epoch 1/1 step (\d+)/").match, lines) if m]
        assert EVERY + 1 <= steps[-1] < STEPS  # ... and the run stopped in the epoch
        # The checkpoint: the last one written before the stop, whole; nothing half-written beside it.
        state = helpers.load_state(out / LAST)
        assert (state["epoch"], state["step"]) == (0, steps[-1] - steps[-1] % EVERY)
        assert not [p.name for p in out.iterdir() if p.name.startswith(".") or ".tmp" in p.name]
        assert not (out / "metrics.jsonl").exists() or not helpers.read_records(out)
        kept = _sha(out / LAST)

        # While the endpoint is still down, --resume auto stops in one line (the manifest cannot be read either).
        result = subprocess.run(command + ["--resume", "auto"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2
        helpers.assert_one_line_error(
            result.stderr, f"error: the S3 endpoint {endpoint} does not answer (curl: Could not connect to server) "
                           f"while DALI reads s3://data/colour/train/manifest.json: {fix}")
        assert _sha(out / LAST) == kept

        # The endpoint back (on the same port, with the same data): the run continues from the checkpoint.
        _serve(server, small_shards)
        result = subprocess.run(command + ["--resume", "auto"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=180)
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()
    assert f"resuming epoch 1 of 1 at step {state['step'] + 1}" in result.stdout
    record = json.loads((out / "run.json").read_text())
    assert (record["resumed_epoch"], record["resumed_step"]) == (0, state["step"])
    assert [r["epoch"] for r in helpers.read_records(out)] == [1]
    assert helpers.load_state(out / LAST)["epoch"] == 1
