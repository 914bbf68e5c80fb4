"""Issue 19: mid-epoch checkpoints (--checkpoint-steps), SIGKILL / SIGTERM mid-epoch then --resume auto ending with
the weights of an uninterrupted run, bit for bit, on the CPU; signals sent to the launcher of --cpu-procs 2 (once:
checkpoint and exit 75; twice: every rank killed at once); a full disk while a checkpoint is written, with one rank
and with two; a damaged last.pt falling back to previous.pt; the new flags' checks."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from cli_runs import TINY, assert_one_line_error, cli_command, cli_env, load_state, read_records, run_cli
from conftest import trainer_flags
from faults import FAULT_COMMAND, FAULT_SCRIPT, fault_env
from short_writes import no_space, short_open

from dali_cutmix.train.plan import free_port

ARGS = ["--epochs", "2", "--batch-size", "16", "--log-every", "1", *TINY]  # 8 steps per epoch


def on(device: str, ranks: int = 1) -> list:
    """The flags that run ``ranks`` ranks on ``device`` (:func:`conftest.trainer_flags`: skipped on a GPU machine
    with fewer GPUs), with deterministic kernels on the GPU, where the tests compare weights bit for bit."""
    return trainer_flags(device, ranks) + (["--deterministic"] if device == "gpu" else [])


_REFERENCES: dict = {}


def uninterrupted(tiny_imagenet, tmp_path_factory, device: str, ranks: int = 1):
    """The output folder of an uninterrupted run of ``ARGS`` with ``ranks`` ranks on ``device``, run once per
    module and kept (the runs the interrupted ones must match)."""
    key = (device, ranks)
    if key not in _REFERENCES:
        tmp = tmp_path_factory.mktemp(f"ref-{device}-{ranks}")
        result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(tmp / "ref"), *ARGS,
                          *on(device, ranks)], tmp)
        assert result.returncode == 0, result.stderr
        _REFERENCES[key] = tmp / "ref"
    return _REFERENCES[key]


def stop_at(args, tmp_path, *, line: str, sig) -> subprocess.Popen:
    """Run ``dali-cutmix ARGS``, send ``sig`` once a progress line matches ``line``; returns the finished process
    (its stderr read)."""
    return signal_at(args, tmp_path, [(line, sig)])


def signal_at(args, tmp_path, events, *, env=None, command=None) -> subprocess.Popen:
    """Run ``command ARGS`` (default :func:`cli_command`: ``dali-cutmix ARGS``; in ``env``, default :func:`cli_env`)
    and send it each of ``events`` (``(line, sig)``: ``sig`` once a line of its stderr matches the regex ``line``,
    in order; ``sig`` may be a function of the process that acts instead); returns the finished process (its
    stderr and stdout read)."""
    proc = subprocess.Popen((command or cli_command()) + list(args), cwd=tmp_path, env=env or cli_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    pending, rest = list(events), []
    try:
        for text in proc.stderr:
            rest.append(text)
            if pending and re.match(pending[0][0], text):
                action = pending.pop(0)[1]
                action(proc) if callable(action) else os.kill(proc.pid, action)
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
    proc.stderr_text, proc.stdout_text = "".join(rest), proc.stdout.read()
    assert not pending, proc.stderr_text
    return proc


def assert_same_run(out, ref):
    got, want = load_state(out / "last.pt"), load_state(ref / "last.pt")
    assert got["epoch"] == want["epoch"] == 2 and got["step"] == 0
    for name, tensor in want["model"].items():
        assert got["model"][name].equal(tensor), name
    assert got["dali"] == want["dali"]
    assert json.loads((out / "ranks.json").read_text())[0]["state_digest"] == \
        json.loads((ref / "ranks.json").read_text())[0]["state_digest"]
    assert [r["epoch"] for r in read_records(out)] == [1, 2]
    for a, b in zip(read_records(out), read_records(ref)):  # whole-epoch metrics, not only the resumed part
        assert (a["train_loss"], a["train_images"], a["mixed_targets"]) == \
            (b["train_loss"], b["train_images"], b["mixed_targets"])


@pytest.fixture
def reference(tiny_imagenet, tmp_path_factory, device):
    """The uninterrupted one-rank run on the test's device."""
    return uninterrupted(tiny_imagenet, tmp_path_factory, device)


def test_checkpoint_steps_then_sigkill_resumes_bit_identically(tiny_imagenet, reference, tmp_path, device):
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), *ARGS, *on(device), "--checkpoint-steps",
            "3"]
    proc = stop_at(args, tmp_path, line=r"epoch 2/2 step 5/", sig=signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    state = load_state(out / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 3)  # epoch 2's step 3: the last multiple of 3 before the kill
    assert load_state(out / "previous.pt")["epoch"] == 1  # the one it replaced: epoch 1's end

    result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(out), "--resume", "auto"], tmp_path)
    assert result.returncode == 0, result.stderr
    # the run's first line (after the launcher's CPU-fallback and scan lines) says where it continues
    assert [line for line in result.stdout.splitlines() if line.startswith("resuming")] == [
        line for line in result.stdout.splitlines() if line.startswith("resuming epoch 2 of 2 at step 4: ")]
    assert "resuming epoch 2 of 2 at step 4: " in result.stdout, result.stdout
    run = json.loads((out / "run.json").read_text())
    assert (run["resumed_epoch"], run["resumed_step"]) == (1, 3)
    assert_same_run(out, reference)


def test_the_model_ema_resumes_bit_identically_after_a_mid_epoch_kill(tiny_imagenet, tmp_path, device):
    """--model-ema (torchvision's rule: the adjusted decay, a copy through the warmup epoch, every 3rd step): killed
    in epoch 2 after the checkpoint of step 3, --resume auto ends with the uninterrupted run's model AND EMA
    weights, bit for bit; each epoch's metrics line holds the EMA's accuracy, and best.pt says which weights
    scored best."""
    ema = ["--model-ema", "0.9999", "--model-ema-steps", "3", "--model-ema-adjust", "--warmup-epochs", "1"]
    ref = tmp_path / "ref"
    result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(ref), *ARGS, *on(device), *ema],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    decay = 1.0 - min(1.0, (1.0 - 0.9999) * 16 * 3 / 2)  # torchvision: alpha = (1 - decay) x batch x steps / epochs
    assert f"EMA decay {decay:.6g} every 3 steps" in result.stdout

    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), *ARGS, *on(device), *ema,
            "--checkpoint-steps", "3"]
    proc = stop_at(args, tmp_path, line=r"epoch 2/2 step 5/", sig=signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert (load_state(out / "last.pt")["epoch"], load_state(out / "last.pt")["step"]) == (1, 3)
    result = run_cli(["train", "--output", str(out), "--resume", "auto"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming epoch 2 of 2 at step 4: " in result.stdout

    got, want = load_state(out / "last.pt"), load_state(ref / "last.pt")
    for name, tensor in want["model"].items():
        assert got["model"][name].equal(tensor), name
    assert want["ema"]["updates"] == got["ema"]["updates"] == 3  # epoch 2: steps 1, 4, 7
    for name, tensor in want["ema"]["weights"].items():
        assert got["ema"]["weights"][name].equal(tensor), name
    assert any(not tensor.equal(want["model"][name]) for name, tensor in want["ema"]["weights"].items()
               if tensor.is_floating_point())  # an average, not a copy of the model
    run = json.loads((out / "run.json").read_text())
    assert run["model_ema"] == dict(decay=decay, every=3, copy_through=1.0)
    records, reference = read_records(out), read_records(ref)
    assert [r["ema_val_top1"] for r in records] == [r["ema_val_top1"] for r in reference]
    assert all(0 <= r["ema_val_top1"] <= 100 and r["best_weights"] in ("model", "ema") for r in records)
    best = load_state(out / "best.pt")
    top = max((r for r in records), key=lambda r: max(r["val_top1"], r["ema_val_top1"]))
    assert best["best_weights"] == ("ema" if top["ema_val_top1"] > top["val_top1"] else "model")
    assert best["best_top1"] == max(top["val_top1"], top["ema_val_top1"])


def test_sigterm_finishes_the_step_checkpoints_and_exits_75(tiny_imagenet, reference, tmp_path, device):
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), *ARGS, *on(device)]
    proc = stop_at(args, tmp_path, line=r"epoch 2/2 step 2/", sig=signal.SIGTERM)
    assert proc.returncode == 75, proc.stderr_text
    last = proc.stderr_text.strip().splitlines()[-1]
    state = load_state(out / "last.pt")
    assert state["epoch"] == 1 and state["step"] >= 2
    assert last == (f"stopped by SIGTERM at epoch 2 step {state['step']}/8: checkpoint {out / 'last.pt'}; "
                    f"continue with: dali-cutmix train --output {out} --resume auto"), last
    result = run_cli(["train", "--output", str(out), "--resume", "auto"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "run.json").read_text())["resumed_step"] == state["step"] > 0
    assert_same_run(out, reference)


def test_bad_checkpoint_flags_are_one_line_and_write_nothing(tiny_imagenet, tmp_path):
    for flags, fragment in ((["--checkpoint-steps", "0"], "--checkpoint-steps must be an integer >= 1"),
                            (["--checkpoint-steps", "-2"], "--checkpoint-steps must be an integer >= 1"),
                            (["--checkpoint-minutes", "0"], "--checkpoint-minutes must be > 0"),
                            (["--checkpoint-minutes", "-1.5"], "--checkpoint-minutes must be > 0")):
        out = tmp_path / "never"
        result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(out), *ARGS, *flags], tmp_path)
        assert result.returncode == 2, result.stderr
        assert_one_line_error(result.stderr, fragment)
        assert not out.exists()


def fake_full_disk(monkeypatch):
    """From now on, writing a temporary ``*.tmp`` file writes 100 bytes and fails with ENOSPC (as a full disk)."""
    import builtins

    monkeypatch.setattr(builtins, "open", short_open(
        builtins.open, lambda file, mode: "w" in mode and str(file).endswith(".tmp"), no_space))


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    import torch

    from dali_cutmix.train.checkpoint import PREVIOUS, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(dict(epoch=1, w=torch.ones(3)), path)
    before = path.read_bytes()
    fake_full_disk(monkeypatch)
    with pytest.raises(OSError) as caught:
        save_checkpoint(dict(epoch=2, w=torch.zeros(3)), path, keep_previous=True)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before  # intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file, no previous.pt
    assert not (tmp_path / PREVIOUS).exists()


def test_a_damaged_last_pt_falls_back_to_previous_pt_in_one_line(tmp_path):
    import torch

    from dali_cutmix.train.checkpoint import DAMAGED, FORMAT, LAST, PREVIOUS, read_checkpoint, save_checkpoint

    good = dict(format=FORMAT, epoch=1, step=3, partial=[{}], model={}, optimizer={}, scaler={}, schedule={},
                dali=["str:x"], torch_rng=[torch.zeros(1, dtype=torch.uint8)], best_top1=1.0, config={},
                world_size=1, classes=["a"])
    save_checkpoint(good, tmp_path / LAST)
    save_checkpoint(dict(good, step=5), tmp_path / LAST, keep_previous=True)
    data = (tmp_path / LAST).read_bytes()
    (tmp_path / LAST).write_bytes(data[: len(data) // 2])  # truncated by something outside the trainer

    checkpoint = read_checkpoint(tmp_path / LAST, auto=True)
    state, path, notes = checkpoint.state, checkpoint.path, checkpoint.notes
    assert path == tmp_path / PREVIOUS and (state["epoch"], state["step"]) == (1, 3)
    assert notes == [f"note: cannot read checkpoint {str(tmp_path / LAST)!r}: the file is truncated or damaged "
                     f"(not a complete PyTorch zip archive); resuming from {tmp_path / PREVIOUS} (epoch 2 step 3) "
                     f"instead, and {LAST} is set aside as {DAMAGED}"]
    from dali_cutmix.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="truncated or damaged"):  # a named file: no fallback
        read_checkpoint(tmp_path / LAST, auto=False)


# ------------------------------------------------------------------ several ranks: torchrun restarts, two nodes

def _two_rank_args(data, out, device):
    """The trainer's arguments for each of two ranks started by torchrun (or as two nodes) on ``device``: under
    torchrun ``--gpus`` only says on or off, each rank drives the GPU of its local rank (the GPU case is skipped
    where DALI sees fewer than 2)."""
    trainer_flags(device, ranks=2)  # only to skip the GPU case without 2 GPUs
    gpu = ["--gpus", "1", "--deterministic"] if device == "gpu" else ["--gpus", "0"]
    return ["train", "--data", str(data), "--output", str(out), *ARGS, *gpu]


def _torchrun(tmp_path, args, env, *extra, fault: bool = False):
    """torchrun's two ranks of ``dali-cutmix ARGS`` (``fault``: of :data:`faults.FAULT_SCRIPT`, with the fault
    ``env`` names)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    program = [str(FAULT_SCRIPT)] if fault else ["-m", "dali_cutmix.cli"]
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(free_port()), *extra, *program, *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def _dying_rank_env(tmp_path):
    """An environment in which rank 1 of torchrun's first attempt dies (``os._exit(1)``) after step 5 of epoch 2
    (a fault); a restarted attempt (``TORCHELASTIC_RESTART_COUNT`` > 0) runs normally."""
    return fault_env(cli_env(tmp_path), tmp_path, """
        import os
        if os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0" and os.environ.get("RANK") == "1":
            import dali_cutmix.train.loop as loop

            real = loop.train_one_epoch

            def train_one_epoch(**kwargs):
                after = kwargs["after_step"]

                def after_step(index, sums):
                    stop = after(index, sums)
                    if index == 5 and kwargs["progress"].prefix.startswith("epoch 2/"):
                        os._exit(1)
                    return stop

                kwargs["after_step"] = after_step
                return real(**kwargs)

            loop.train_one_epoch = train_one_epoch
    """)


_TORCHRUN_REFERENCES: dict = {}


@pytest.fixture
def two_rank_reference(tiny_imagenet, tmp_path_factory, device):
    """torchrun's uninterrupted two-rank run on the test's device, run once per module."""
    if device not in _TORCHRUN_REFERENCES:
        tmp = tmp_path_factory.mktemp(f"ref2-{device}")
        result = _torchrun(tmp, _two_rank_args(tiny_imagenet, tmp / "ref", device), cli_env(tmp))
        assert result.returncode == 0, result.stderr
        _TORCHRUN_REFERENCES[device] = tmp / "ref"
    return _TORCHRUN_REFERENCES[device]


def _digests(out):
    return [r["state_digest"] for r in json.loads((out / "ranks.json").read_text())]


def test_a_rank_killed_under_torchrun_max_restarts_resumes_to_the_same_weights(tiny_imagenet, two_rank_reference,
                                                                               tmp_path, device):
    out = tmp_path / "run"
    env = _dying_rank_env(tmp_path)
    result = _torchrun(tmp_path, _two_rank_args(tiny_imagenet, out, device) + ["--checkpoint-steps", "4", "--resume",
                                                                      "auto"], env, "--max-restarts", "1", fault=True)
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "run.json").read_text())
    assert (run["resumed_epoch"], run["resumed_step"]) == (1, 4)  # the restart continued epoch 2 at step 4
    assert _digests(out) == _digests(two_rank_reference)
    assert [r["train_loss"] for r in read_records(out)] == [r["train_loss"] for r in read_records(two_rank_reference)]


def test_two_nodes_on_one_machine_train_and_checkpoint_as_two_ranks(tiny_imagenet, two_rank_reference, tmp_path,
                                                                    device):
    """Two nodes of one rank each: the same weights as torchrun's two ranks on one node, bit for bit, given the
    same CPU threads per rank (torchrun sets OMP_NUM_THREADS=1; a node of one rank would take all its cores). On
    the GPU each node sees one GPU of its own (CUDA_VISIBLE_DEVICES), as a node of a cluster does."""
    out, port = tmp_path / "nodes", str(free_port())
    address = "127.0.1.1"  # this machine (all of 127/8 is), not a name the trainer refuses for several nodes
    ranks_per_node = ["--gpus", "1"] if device == "gpu" else ["--cpu-procs", "1"]
    node = cli_command() + _two_rank_args(tiny_imagenet, out, device) + [
        "--nnodes", "2", "--master-addr", address, "--master-port", port, *ranks_per_node]
    env = dict(cli_env(tmp_path), OMP_NUM_THREADS="1")
    own_gpu = (lambda rank: dict(CUDA_VISIBLE_DEVICES=str(rank))) if device == "gpu" else (lambda rank: {})
    procs = [subprocess.Popen(node + ["--node-rank", str(rank)], cwd=tmp_path, env={**env, **own_gpu(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    ranks = json.loads((out / "ranks.json").read_text())
    assert [r["reader"]["shard_id"] for r in ranks] == [0, 1]
    assert [r["cpu_threads"] for r in ranks] == [1, 1]
    assert [r["cpu_threads"] for r in json.loads((two_rank_reference / "ranks.json").read_text())] == [1, 1]
    assert _digests(out) == _digests(two_rank_reference)  # one model, the one torchrun's two ranks train
    assert [r["epoch"] for r in read_records(out)] == [1, 2]
    state = load_state(out / "last.pt")
    assert (state["epoch"], state["world_size"], len(state["dali"])) == (2, 2, 2)  # node 0 wrote both ranks' state


def test_a_full_disk_during_a_mid_epoch_checkpoint_is_one_line_naming_last_pt(tmp_path, monkeypatch):
    """The trainer's side: write_checkpoint turns the failed write into a CheckpointError (a UserError: one line,
    exit 2) naming last.pt and the step, and the previous last.pt stays as it was."""
    from types import SimpleNamespace

    import torch

    from dali_cutmix.train import checkpoint
    from dali_cutmix.train.checkpoint import CheckpointError, write_checkpoint
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.runstate import Position, RunState

    layer = torch.nn.Linear(2, 2)
    with_state = SimpleNamespace(state_dict=dict)
    training = SimpleNamespace(raw=layer, optimizer=with_state, scaler=with_state, schedule=with_state)
    data = SimpleNamespace(train=SimpleNamespace(checkpoint=lambda: b"dali"))
    cfg = resolve_config({"arch": "resnet18"})
    (tmp_path / "last.pt").write_bytes(b"the checkpoint before")

    real_save = checkpoint.save_checkpoint

    def save(state, path, **kwargs):
        fake_full_disk(monkeypatch)
        try:
            return real_save(state, path, **kwargs)
        finally:
            monkeypatch.undo()

    monkeypatch.setattr("dali_cutmix.train.checkpoint.save_checkpoint", save)
    position = Position(epoch=1, step=3, partial=dict(loss_sum=0.0, samples=0, mixed=0, wait_s=0.0, time_s=0.0,
                                                      lr=0.0))
    with pytest.raises(CheckpointError) as caught:
        write_checkpoint(RunState(cfg=cfg, training=training, data=data, position=position, info=RankInfo(),
                                  classes=["a", "b"]), output=tmp_path)
    assert str(caught.value) == (
        f"cannot write the checkpoint of epoch 2 step 3 to {tmp_path / 'last.pt'}: No space left on device "
        f"({tmp_path / 'last.pt'} still holds the checkpoint before; nothing half-written remains)")
    assert (tmp_path / "last.pt").read_bytes() == b"the checkpoint before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_several_ranks_agree_only_on_shared_steps(monkeypatch):
    """With several ranks the stop/checkpoint agreement (an all-reduce read back on the host) happens every
    AGREE_EVERY steps and every --checkpoint-steps step, the same steps on every rank; one rank never talks."""
    from dali_cutmix.train import preempt

    calls = []
    monkeypatch.setattr(preempt.distributed, "all_reduce_max", lambda flags: calls.append(flags.tolist()))
    clock = preempt.CheckpointClock(steps=7, minutes=None)
    assert preempt.AGREE_EVERY == 20
    assert [s for s in range(1, 50) if clock.shared(s)] == [7, 14, 20, 21, 28, 35, 40, 42, 49]
    assert preempt.agree(due=True, stop=True, is_main=True, world_size=2, device="cpu", shared=False) == (False, False)
    assert calls == []
    assert preempt.agree(due=False, stop=True, is_main=False, world_size=2, device="cpu", shared=True) == (True, True)
    assert calls == [[0.0, 1.0]]
    assert preempt.agree(due=True, stop=False, is_main=True, world_size=1, device="cpu", shared=False) == (True, False)
    assert calls == [[0.0, 1.0]]


# ------------------------------------------------ several ranks started by this command (--cpu-procs 2): signals
# sent to the launcher itself (as sbatch --signal=B:... does) and a full disk


#: A fault: in rank 0, the ``N_WRITE``-th write of a temporary ``.last.pt.*.tmp`` file writes 100 bytes, then
#: ``ACTION`` (a statement: ``raise OSError(...)`` or a hang); ``real_open`` stays the real one.
CHECKPOINT_WRITE_HOOK = """
    import builtins, errno, os, sys, time
    from pathlib import Path

    from short_writes import short_open  # beside the fault's script

    real_open, writes = builtins.open, []

    def cut(file, mode):
        name = Path(str(file)).name
        if os.environ.get("RANK") == "0" and "w" in mode and name.startswith(".last.pt.") and name.endswith(".tmp"):
            writes.append(name)
            return len(writes) == N_WRITE
        return False

    def then():
        ACTION

    builtins.open = short_open(real_open, cut, then)
"""


def _checkpoint_write_env(tmp_path, n: int, action: str, extra: str = ""):
    source = textwrap.dedent(CHECKPOINT_WRITE_HOOK).replace("ACTION", action).replace("N_WRITE", str(n))
    return fault_env(cli_env(tmp_path), tmp_path, source + textwrap.dedent(extra))


@pytest.fixture
def launched_reference(tiny_imagenet, tmp_path_factory, device):
    """The uninterrupted run of two ranks started by this command (--cpu-procs 2, or --gpus 2) on the test's
    device."""
    return uninterrupted(tiny_imagenet, tmp_path_factory, device, ranks=2)


def test_sigterm_to_the_launcher_stops_its_ranks_at_one_step_and_resumes_bit_identically(
        tiny_imagenet, launched_reference, tmp_path, device):
    """SIGTERM to the process that started the ranks (not to the ranks): they agree on a step, rank 0 writes both
    ranks' checkpoint, the launcher prints one line and exits 75; --resume auto ends on the uninterrupted run's
    weights, on both ranks."""
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), *ARGS, *on(device, 2),
            "--checkpoint-steps", "3"]
    proc = stop_at(args, tmp_path, line=r"epoch 2/2 step 1/", sig=signal.SIGTERM)
    assert proc.returncode == 75, proc.stderr_text
    state = load_state(out / "last.pt")
    # the agreement after the signal: with two ranks every --checkpoint-steps step (3, 6), the epoch's end else
    assert (state["epoch"], state["world_size"], len(state["dali"])) == (1, 2, 2) and state["step"] in (3, 6)
    last = proc.stderr_text.strip().splitlines()[-1]
    assert last == (f"stopped by SIGTERM at epoch 2 step {state['step']}/8: checkpoint {out / 'last.pt'}; "
                    f"continue with: dali-cutmix train --output {out} --resume auto"), proc.stderr_text
    assert "Traceback" not in proc.stderr_text and not list(out.glob(".*.tmp"))

    result = run_cli(["train", "--output", str(out), "--resume", "auto"], tmp_path)  # its settings: 2 processes
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "run.json").read_text())
    assert (run["world_size"], run["resumed_epoch"], run["resumed_step"]) == (2, 1, state["step"])
    assert_same_run(out, launched_reference)
    assert _digests(out) == _digests(launched_reference)


def test_a_second_signal_to_the_launcher_kills_every_rank_at_once_leaving_nothing_half_written(
        tiny_imagenet, tmp_path, device):
    """SIGUSR1 to the launcher, then another one while rank 0 is writing the stop's checkpoint (held there by the
    test): every rank is killed, the launcher dies of the signal, the half-written temporary file is gone and
    last.pt is the checkpoint before, whole."""
    out, temp = tmp_path / "run", tmp_path / "temp"
    temp.mkdir()
    env = _checkpoint_write_env(tmp_path, 4, 'print("test hook: writing", file=sys.stderr, flush=True); '
                                             'time.sleep(600)')
    env["TMPDIR"] = str(temp)  # where the launcher's folder shared with its ranks is
    pids = []

    def second_signal(proc):
        folder, = temp.glob("dali-cutmix-errors-*")
        pids.extend(int(p.read_text()) for p in sorted(folder.glob("rank*.pid")))
        os.kill(proc.pid, signal.SIGUSR1)

    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), *ARGS, *on(device, 2),
            "--checkpoint-steps", "3"]
    # writes of last.pt: epoch 1 steps 3 and 6, epoch 1's end, then the stop's, in epoch 2 (the 4th: held)
    proc = signal_at(args, tmp_path, [(r"epoch 2/2 step 1/", signal.SIGUSR1), (r"test hook: writing", second_signal)],
                     env=env, command=FAULT_COMMAND)
    assert proc.returncode == -signal.SIGUSR1, proc.stderr_text
    assert len(pids) == 2
    for pid in pids:  # killed and reaped by the launcher
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    state = load_state(out / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 0)  # epoch 1's end, whole
    assert load_state(out / "previous.pt")["step"] == 6
    assert not list(out.glob(".*.tmp")), sorted(os.listdir(out))
    assert not list(temp.glob("dali-cutmix-errors-*"))


def test_a_full_disk_with_two_ranks_stops_both_at_once_with_one_line(tiny_imagenet, tmp_path, device):
    """ENOSPC while rank 0 writes a mid-epoch checkpoint: both ranks learn of it from rank 0 and raise the same
    one-line error at once (neither waits at a collective for the other), the run exits 2 with that line, last.pt
    keeps the checkpoint before and nothing half-written remains."""
    out, log = tmp_path / "run", tmp_path / "errors.txt"
    # the ranks' own errors, as each rank raised them (not as the launcher reports them)
    record_errors = f"""
        import dali_cutmix.train.checkpoint as checkpoint

        real_write = checkpoint.write_checkpoint

        def write_checkpoint(*args, **kwargs):
            try:
                return real_write(*args, **kwargs)
            except Exception as e:
                with real_open({str(log)!r}, "a") as f:
                    f.write(f"rank {{os.environ['RANK']}}: {{type(e).__name__}}: {{e}}\\n")
                raise

        checkpoint.write_checkpoint = write_checkpoint
    """
    env = _checkpoint_write_env(tmp_path, 3, 'raise OSError(errno.ENOSPC, "No space left on device")',
                                record_errors)
    # writes of last.pt: epoch 1 step 4, epoch 1's end, then epoch 2 step 4 (the 3rd: the disk is full)
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), *ARGS, *on(device, 2),
            "--checkpoint-steps", "4"]
    result = subprocess.run(FAULT_COMMAND + args, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=200)  # far below the collectives' timeout (30 minutes)
    line = (f"cannot write the checkpoint of epoch 2 step 4 to {out / 'last.pt'}: No space left on device "
            f"({out / 'last.pt'} still holds the checkpoint before; nothing half-written remains)")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1] == f"error: {line}"
    assert sorted(log.read_text().splitlines()) == [f"rank 0: CheckpointError: {line}",
                                                    f"rank 1: CheckpointError: {line}"]
    state = load_state(out / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 0)
    assert load_state(out / "previous.pt")["step"] == 4
    assert not list(out.glob(".*.tmp")), sorted(os.listdir(out))
    assert [r["epoch"] for r in read_records(out)] == [1]


def test_cpu_threads_are_omp_num_threads_when_set_else_the_cores_split_over_the_node_ranks():
    from dali_cutmix.errors import UserError
    from dali_cutmix.helpers.host import usable_cores
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.loop import cpu_threads

    two_local = RankInfo(rank=1, world_size=2, local_rank=1, local_world_size=2)
    assert cpu_threads(two_local, {}) == max(1, usable_cores() // 2)
    assert cpu_threads(RankInfo(), {"OMP_NUM_THREADS": " "}) == usable_cores()
    assert cpu_threads(two_local, {"OMP_NUM_THREADS": "3"}) == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(UserError) as caught:
            cpu_threads(two_local, {"OMP_NUM_THREADS": bad})
        assert str(caught.value) == (f"the environment variable OMP_NUM_THREADS must be a positive integer (the CPU "
                                     f"threads of each rank), got {bad!r}")


def test_a_full_disk_at_an_epoch_end_names_the_metrics_line_and_cuts_it_back(tmp_path):
    """At an epoch's end rank 0 writes the epoch's line in metrics.jsonl before last.pt: when that line cannot be
    written, the error names metrics.jsonl, the file is cut back to the lines it held (no torn line) and last.pt is
    not touched."""
    from types import SimpleNamespace

    import torch

    from dali_cutmix.train.checkpoint import CheckpointError, write_checkpoint
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.runstate import Position, RunState

    with_state = SimpleNamespace(state_dict=dict)
    training = SimpleNamespace(raw=torch.nn.Linear(2, 2), optimizer=with_state, scaler=with_state,
                               schedule=with_state)
    data = SimpleNamespace(train=SimpleNamespace(checkpoint=lambda: b"dali"))
    (tmp_path / "last.pt").write_bytes(b"the checkpoint before")
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n')

    def append(record):
        with open(path, "a") as f:
            f.write('{"epoch": 2, "train_lo')
        raise OSError(errno.ENOSPC, "No space left on device")

    metrics = SimpleNamespace(path=path, append=append)
    position = Position(epoch=2, record=dict(epoch=2))
    with pytest.raises(CheckpointError) as caught:
        write_checkpoint(RunState(cfg=resolve_config({"arch": "resnet18"}), training=training, data=data,
                                  position=position, info=RankInfo(), classes=["a", "b"]),
                         output=tmp_path, metrics=metrics, copies=[tmp_path / "best.pt"])
    assert str(caught.value) == (
        f"cannot write the metrics of epoch 2 to {path}: No space left on device ({tmp_path / 'last.pt'} still "
        f"holds the checkpoint before; nothing half-written remains)")
    assert path.read_text() == '{"epoch": 1}\n'
    assert (tmp_path / "last.pt").read_bytes() == b"the checkpoint before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.jsonl"]


def test_a_rank_reads_the_launchers_notice_as_its_own_first_signal(tmp_path):
    """The notice file stands for a signal the rank did not get: a signal that comes after it is the rank's first
    (noted, not the second that ends it at once)."""
    from dali_cutmix.train.preempt import NOTICE, StopRequest

    stop = StopRequest(tmp_path / NOTICE)
    assert stop.requested() is None
    (tmp_path / NOTICE).write_text("SIGUSR1")
    assert stop.requested() == "SIGUSR1" and stop.signal_name is None
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # the rank's own: noted (the process lives on)
        assert stop.signal_name == "SIGTERM" and stop.requested() == "SIGTERM"
    finally:
        stop.uninstall()
