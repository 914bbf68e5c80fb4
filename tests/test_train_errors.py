"""``dali-cutmix train``'s failures and resumes as a user meets them (issue 10): every refusal is one line on stderr
naming the flag as typed, exit code 2, no traceback, and nothing written or left behind; a resumed run continues
the run as it was; the run says what it does in short lines.

Refusals run in this process (``dali_cutmix.cli.main``, no training); runs that train go through a subprocess, on
the tiny data set of tests/cli_runs.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_runs import TINY, assert_one_line_error, cli_env, run_cli
from conftest import trainer_flags
from faults import FAULT_COMMAND, fault_env


def _main(args, capsys):
    from dali_cutmix.cli import main

    code = main(["train", *args])
    captured = capsys.readouterr()
    return code, captured.err


def _tree(folder):
    """Every file under ``folder`` with a hash of its content (None when the folder does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args, capsys, *fragments, unchanged=()):
    """Run ``train ARGS``: exit 2, one ``error:`` line holding ``fragments``; the folders ``unchanged`` (and their
    files) are as they were, a missing one still missing."""
    before = [_tree(f) for f in unchanged]
    code, err = _main(args, capsys)
    assert code == 2, err
    assert_one_line_error(err, *fragments)
    assert [_tree(f) for f in unchanged] == before
    return err


# ----------------------------------------------------------------------------------- refused before anything runs


def test_seed_out_of_range_and_negative_are_one_line(tmp_path, capsys):
    out = tmp_path / "o"
    refused(["--output", str(out), "--seed", "99999999999999999999"], capsys,
            "--seed must be an integer in [0, 4294967295], got 99999999999999999999", unchanged=[out])
    refused(["--output", str(out), "--seed", "-1"], capsys, "--seed must be an integer in [0, 4294967295], got -1",
            unchanged=[out])


def test_output_paths_are_checked_before_the_work_starts(tiny_imagenet, tmp_path, capsys):
    data = ["--data", str(tiny_imagenet)]
    refused([*data, "--output", ""], capsys, "--output must name a folder, got ''")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    refused([*data, "--output", str(a_file)], capsys, "--output", "is a file", unchanged=[tmp_path])
    refused([*data, "--output", str(a_file / "run")], capsys, "cannot be created", "is a file, not a folder",
            unchanged=[tmp_path])
    # a folder of someone else's files: a run would write run.json, last.pt, ... among them
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "run.json").write_text("{}")  # a name a run writes, among others that are not a run's
    (theirs / "paper.pdf").write_bytes(b"%PDF")
    refused([*data, "--output", str(theirs)], capsys, "holds 1 file(s) that are not a run's", "'paper.pdf'",
            "new or empty folder", unchanged=[theirs])
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        refused([*data, "--output", str(locked / "run")], capsys, "is not writable", unchanged=[locked])


def test_batch_too_large_for_the_data_leaves_no_folder(tiny_imagenet, tmp_path, capsys):
    out = tmp_path / "runs" / "big"
    refused(["--data", str(tiny_imagenet), "--output", str(out), "--gpus", "0", "--batch-size", "4096"], capsys,
            "--batch-size 4096 is too large: a step takes 4096 images but there are only 128 training images",
            unchanged=[tmp_path / "runs"])


def test_model_too_small_for_the_crop_is_refused_up_front(tiny_imagenet, tmp_path, capsys):
    """Inception v3 trains on 299 pixels and more (its auxiliary head): found by a dry forward on the meta device,
    before the data is scanned or a folder made."""
    out = tmp_path / "o"
    refused(["--data", str(tiny_imagenet), "--output", str(out), "--gpus", "0", "--arch", "inception_v3",
             "--crop", "32"], capsys, "--arch inception_v3 cannot train at --crop 32: it needs 299 pixels or more",
            unchanged=[out])
    refused(["--data", str(tiny_imagenet), "--output", str(out), "--gpus", "0", "--arch", "alexnet", "--crop", "64",
             "--val-crop", "32", "--val-resize", "40"], capsys, "--arch alexnet cannot validate at --val-crop 32",
            unchanged=[out])


def test_recipe_values_are_named_as_the_recipes(tmp_path, capsys):
    """The deit recipe warms up for 5 epochs: --epochs 1 is refused naming the recipe's value, not a flag the user
    never typed."""
    err = refused(["--output", str(tmp_path / "o"), "--recipe", "deit", "--epochs", "1"], capsys,
                  "the deit recipe's 5 warmup epochs do not fit in --epochs 1", "pass --warmup-epochs N",
                  unchanged=[tmp_path / "o"])
    assert "--warmup-epochs must be" not in err


def test_checkpoints_that_are_not_ones_say_so(tmp_path, capsys):
    import pickle

    import torch

    out = tmp_path / "o"
    text = tmp_path / "notes.pt"
    text.write_text("hello\n" * 20)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    objects = tmp_path / "objects.pt"
    torch.save({"x": pickle.PicklingError("an object")}, objects)
    weights = tmp_path / "weights.pt"
    torch.save({"x": torch.zeros(2)}, weights)
    whole = torch.load(weights, weights_only=True)
    assert whole["x"].shape == (2,)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(weights.read_bytes()[:200])
    for path, fragment in ((text, "not a dali-cutmix checkpoint (not a PyTorch file)"),
                           (empty, "the file is empty (0 bytes), not a dali-cutmix checkpoint"),
                           (objects, "a PyTorch file but not a dali-cutmix checkpoint"),
                           (weights, "a PyTorch file but not a dali-cutmix training checkpoint"),
                           (cut, "truncated or damaged")):
        err = refused(["--output", str(out), "--resume", str(path)], capsys, f"cannot read checkpoint '{path}'",
                      fragment, unchanged=[out, tmp_path])
        for wrong in ("weights_only", "101", "EOFError", "KeyError"):
            assert wrong not in err, (path, err)
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    refused(["--resume", str(folder)], capsys, f"--resume '{folder}' is a folder without last.pt",
            unchanged=[folder])
    refused(["--resume", str(tmp_path / "gone.pt")], capsys, "no such checkpoint file or run folder")


def test_settings_that_do_nothing_in_this_run_are_noted():
    """Milestones or a mix-off epoch past the last epoch are allowed (a resume with more --epochs makes them count)
    but said, in one line each, naming the flag or the recipe's value; the run itself prints them (see
    test_resume_continues_the_run_as_it_was)."""
    from dali_cutmix.train.checkpoint import resolve_run

    assert resolve_run({"data": "/imagenet", "epochs": 2})[1] == [
        "note: the paper recipe's milestones 75,150,225 lie at or past the last epoch (2): the lr does not drop there "
        "in this run"]
    assert resolve_run({"data": "/imagenet", "epochs": 100})[1] == [
        "note: the paper recipe's milestones 150,225 lie at or past the last epoch (100): the lr does not drop there "
        "in this run"]
    assert resolve_run({"epochs": 2, "mix_off_epoch": 5})[1] == [
        "note: --mix-off-epoch 5 turns mixing off from epoch 6, after this run's 2 epochs: every epoch of it is mixed"]
    assert resolve_run({"milestones": (2,)})[1] == [
        "note: --milestones only count with --schedule step (this run's schedule is cosine)"]
    assert resolve_run({})[1] == [] and resolve_run({"data": "/imagenet"})[1] == []


def test_resume_auto_starts_afresh_a_run_that_never_wrote_a_checkpoint(tmp_path):
    """Killed between its first metrics line and its first checkpoint: --resume auto starts it again; a fresh run
    without --resume is still refused."""
    from dali_cutmix.train.plan import LaunchError, check_run_folder

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "run.json").write_text("{}")
    check_run_folder(run, None, auto=True)
    with pytest.raises(LaunchError, match="already holds a run: pass --resume auto"):
        check_run_folder(run, None)


# ----------------------------------------------------------------------------------------------- runs that train


def test_resume_continues_the_run_as_it_was(tiny_imagenet, tmp_path, device):
    """A run trained for 1 epoch; ``--resume RUN --epochs 2`` (no other flag) continues it with its own settings;
    a locked setting given again differently, a decay changed, the run resumed into a folder of another run, or
    fewer --epochs than done are refused in one line, touching nothing. The run speaks in short lines, counts
    "1 epoch", and shows validation's progress."""
    run = tmp_path / "run"
    first = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(run), "--epochs", "1",
                     "--batch-size", "16", "--log-every", "1", *trainer_flags(device), *TINY, "--schedule", "step",
                     "--milestones", "3", "--mix-off-epoch", "3"], tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    start = lines.index("training 1 epoch: resnet18, 4 classes, 128 train images from " + str(tiny_imagenet))
    where = "cuda" if device == "gpu" else "cpu"  # torch's name of the rank's device
    assert lines[start + 1:start + 4] == [f"  1 rank on {where}, batch 16, sgd lr 0.02, step at 3, seed 3",
                                          "  mixing: CutMix 1, prob 1 per batch, mixed through epoch 3, off from epoch 4",
                                          f"  output: {run}"], lines
    assert "note: --milestones 3 lie at or past the last epoch (1): the lr does not drop there in this run" in lines
    assert ("note: --mix-off-epoch 3 turns mixing off from epoch 4, after this run's 1 epoch: every epoch of it is "
            "mixed") in lines
    assert "validation 1/1 step 1/" in first.stderr  # --log-every 1: a line per validation step too
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["data"] == str(tiny_imagenet) and config["seed"] == 3

    # another run in the same tmp: its folder must not be touched by the refused resumes below
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text('{"epoch": 1}\n')
    for args, fragments in (
            (["--resume", str(run), "--epochs", "2", "--arch", "resnet34"],
             ["--arch resnet34: the run in", "was trained with --arch resnet18", "leave --arch out"]),
            (["--resume", str(run), "--epochs", "2", "--weight-decay", "0.1"],
             ["--weight-decay 0.1", "was trained with --weight-decay 0.0005"]),
            (["--resume", str(run), "--epochs", "2", "--seed", "4"], ["--seed 4", "--seed 3"]),
            (["--resume", str(run), "--epochs", "2", "--no-mixing"], ["--no-mixing", "--mixing"]),
            (["--resume", str(run), "--epochs", "2", "--data", str(tmp_path)], ["--data", "was trained with --data"]),
            (["--resume", str(run / "last.pt"), "--output", str(other)], ["already holds another run"])):
        before = _tree(run), _tree(other)
        result = run_cli(["train", *args], tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert_one_line_error(result.stderr, *fragments)
        assert (_tree(run), _tree(other)) == before, args
    before = _tree(run)

    resumed = run_cli(["train", "--resume", str(run), "--epochs", "2", "--log-every", "1"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1 of 2: resnet18, 4 classes" in resumed.stdout
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    again = json.loads((run / "run.json").read_text())["config"]
    changed = {k for k in config if config[k] != again[k]}
    assert changed == {"epochs", "resume"}, changed  # every other setting is the run's own
    assert again["resume"] == str(run / "last.pt") and again["output"] == str(run)
    assert before["metrics.jsonl"] != _tree(run)["metrics.jsonl"]

    fewer = run_cli(["train", "--resume", str(run), "--epochs", "1"], tmp_path)
    assert fewer.returncode == 2
    assert_one_line_error(fewer.stderr, "--epochs 1: the run in", "has already finished 2 epochs",
                          "pass --epochs 3 or more")


def test_a_diverging_run_is_one_line_and_leaves_no_folder(tiny_imagenet, tmp_path, device):
    out = tmp_path / "runs" / "hot"
    result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(out), "--epochs", "1",
                      "--batch-size", "16", *trainer_flags(device), *TINY, "--lr", "1e12"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "training diverged in epoch 1", "lower --lr (now 1e+12)",
                          "no epoch finished")
    assert not out.exists() and not (tmp_path / "runs").exists()


def _crashing_env(tmp_path, rank):
    """An environment in which :data:`faults.FAULT_COMMAND` crashes in training (``rank``: only that rank)."""
    env = fault_env(cli_env(tmp_path), tmp_path, f"""
        import os
        import dali_cutmix.train.loop as loop

        real = loop.train_one_epoch

        def train_one_epoch(**kwargs):
            if os.environ.get("RANK", "0") == "{rank}":  # a spawned rank learns its RANK after start-up
                raise RuntimeError("boom in the test")
            return real(**kwargs)

        loop.train_one_epoch = train_one_epoch
    """)
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return env


def test_a_crash_in_epoch_1_leaves_no_debris(tiny_imagenet, tmp_path, device):
    """A crash (a bug, not the user's) keeps its traceback and exits 1, and the run folder it made goes."""
    out = tmp_path / "crash"
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), "--epochs", "1", "--batch-size", "16",
            *trainer_flags(device), *TINY]
    env = _crashing_env(tmp_path, 0)
    result = subprocess.run(FAULT_COMMAND + args, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 1 and "RuntimeError: boom in the test" in result.stderr
    assert "Traceback" in result.stderr and "bug: dali-cutmix stopped on an unexpected RuntimeError" in result.stderr
    assert not out.exists()


def test_a_crash_in_one_of_two_ranks_leaves_no_debris(tiny_imagenet, tmp_path, device):
    """Two ranks (two GPUs on the GPU: skipped where DALI sees fewer), rank 1 crashing, where the launcher does not
    turn it into a one-line error: the CLI's bug report shows rank 1's own traceback, saves it, and the folder goes
    (no run.json, no log left in it)."""
    out = tmp_path / "crash"
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), "--epochs", "1", "--batch-size", "16",
            *trainer_flags(device, ranks=2), *TINY]
    result = subprocess.run(FAULT_COMMAND + args, cwd=tmp_path, env=_crashing_env(tmp_path, 1),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "RankFailed: rank 1 failed: RuntimeError: boom in the test; its traceback:" in result.stderr
    assert 'raise RuntimeError("boom in the test")' in result.stderr  # the rank's own frame
    assert lines[-1].startswith("bug: dali-cutmix stopped on an unexpected RankFailed, not on a problem with your "
                                "input; the traceback above is saved in ")
    saved = Path(lines[-1].split("saved in ")[1].split(". Please")[0])
    assert "boom in the test" in saved.read_text() and 'raise RuntimeError("boom in the test")' in saved.read_text()
    assert not out.exists()


def test_rank_failure_tells_user_errors_bugs_and_stops_apart(tmp_path):
    """The launcher's verdict on its ranks' failures, read from their torch elastic error files (what ``@record``
    writes to TORCHELASTIC_ERROR_FILE and ChildFailedError.failures points to): a UserError wins (one line,
    LaunchError), then a bug (RankFailed with the rank's traceback), then a stop on a signal (rank 0's Preempted
    line); a rank that died without a report is one line with its signal."""
    from types import SimpleNamespace

    from dali_cutmix.errors import UserError
    from dali_cutmix.train.launch import RankFailed, rank_failure
    from dali_cutmix.train.preempt import Preempted

    def reports(*items):
        attempt = tmp_path / f"r{len(list(tmp_path.iterdir()))}" / "attempt_0"
        failures = {}
        for t, (rank, user, preempted, message) in enumerate(items):
            (attempt / str(rank)).mkdir(parents=True)
            kind, _, line = message.partition(": ") if not (user or preempted) else ("X", "", message)
            error_file = attempt / str(rank) / "error.json"
            error_file.write_text(json.dumps({"message": {"message": message, "extraInfo": dict(
                py_callstack=f"Traceback (most recent call last):\n  rank {rank} frame\n{message}\n",
                timestamp=str(t), time=float(t), rank=rank, type=kind, user_error=user, preempted=preempted,
                line=line)}}))
            failures[rank] = SimpleNamespace(error_file=str(error_file), exitcode=1)
        return SimpleNamespace(failures=dict(list(failures.items())[:1]))  # the launcher names one failure

    stop = "stopped by SIGTERM at epoch 1 step 3/8"
    got = rank_failure(reports((1, False, True, stop + " (rank 1)"), (0, False, True, stop)))
    assert isinstance(got, Preempted) and got.line == stop
    got = rank_failure(reports((0, False, True, stop), (1, False, False, "RuntimeError: boom")))
    assert isinstance(got, RankFailed) and not isinstance(got, UserError)
    assert str(got) == ("rank 1 failed: RuntimeError: boom; its traceback:\nTraceback (most recent call last):\n"
                        "  rank 1 frame\nRuntimeError: boom")
    got = rank_failure(reports((1, False, False, "RuntimeError: boom"), (0, True, False, "--data: no such folder")))
    assert isinstance(got, UserError) and str(got) == "--data: no such folder"
    died = SimpleNamespace(failures={1: SimpleNamespace(exitcode=-9, error_file="<N/A>")})
    got = rank_failure(died)
    assert isinstance(got, UserError) and str(got) == (
        "local rank 1 was killed by signal 9 without reporting an error (out of memory?)")


def test_the_epoch_line_shows_top5_only_where_5_is_below_the_class_count():
    from dali_cutmix.train.run_record import epoch_line

    record = dict(epoch=2, train_loss=1.23456, val_top1=50.0, val_top5=100.0, images_per_s=99.6, data_wait=0.25,
                  lr=0.1, epoch_time_s=3.21)
    assert epoch_line(record, 3, 4) == ("epoch 2/3  train loss 1.2346  val top-1 50.00%  100 img/s  data wait 25%  "
                                        "lr 0.1  3.2s")
    assert epoch_line(record, 3, 5) == epoch_line(record, 3, 4)
    assert epoch_line(record, 3, 6) == ("epoch 2/3  train loss 1.2346  val top-1 50.00%  top-5 100.00%  100 img/s  "
                                        "data wait 25%  lr 0.1  3.2s")


def test_a_slurm_task_that_sees_one_gpu_uses_cuda_0_whatever_its_local_rank(monkeypatch):
    """SLURM with --gpus-per-task=1: task 3 of a node sees one GPU, its own, as cuda:0. With several visible GPUs
    a rank takes the one of its local rank; one without a GPU is one line."""
    import torch

    from dali_cutmix.errors import UserError
    from dali_cutmix.train import loop
    from dali_cutmix.train.distributed import gpu_index, rank_info

    env = {"SLURM_PROCID": "7", "SLURM_NTASKS": "8", "SLURM_LOCALID": "3", "SLURM_NTASKS_PER_NODE": "4",
           "SLURM_JOB_ID": "1", "SLURM_STEP_ID": "0", "SLURM_NODELIST": "gpu[01-02]"}
    info = rank_info(env)
    assert (info.rank, info.world_size, info.local_rank) == (7, 8, 3)
    current = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert loop.select_device(True, info) == torch.device("cuda", 0) and current == [torch.device("cuda", 0)]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert loop.select_device(True, info) == torch.device("cuda", 3)
    assert loop.select_device(False, info) == torch.device("cpu")
    assert [gpu_index(r, 4) for r in range(4)] == [0, 1, 2, 3] and gpu_index(5, 1) == 0
    with pytest.raises(UserError) as err:
        gpu_index(3, 2)
    assert str(err.value) == ("local rank 3 has no GPU: 2 GPU(s) visible to this process (give each task one GPU, "
                              "or start one process per visible GPU)")
    with pytest.raises(UserError, match="local rank 0 has no GPU: 0 GPU"):
        gpu_index(0, 0)


def test_a_small_data_set_without_recipe_says_which_recipe_it_takes(tiny_imagenet, tmp_path):
    """128 training images and no --recipe: before the paper recipe's batch of 256 is refused, the run says which
    recipe it took and how to pick another; with --recipe given nothing is said."""
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.plan import LaunchError, prepare

    cfg = resolve_config({"data": str(tiny_imagenet), "output": str(tmp_path / "o"), "gpus": 0})
    lines = []
    with pytest.raises(LaunchError, match="--batch-size 256 is too large: a step takes 256 images but there are "
                                          "only 128 training images"):
        prepare(cfg, say=lines.append, recipe_given=False)
    assert lines[-1] == ("note: 128 training images and no --recipe: this run takes the 'paper' recipe (resnet50, "
                         "batch 256, crop 224, 300 epochs), made for ImageNet; pick another with --recipe (paper, "
                         "deit, torchvision-v2, demo) or set --arch / --batch-size / --crop / --epochs")
    quiet = []
    prepare(resolve_config({"data": str(tiny_imagenet), "output": str(tmp_path / "p"), "gpus": 0, "batch_size": 16}),
            say=quiet.append)
    assert not any("--recipe" in line for line in quiet)


def test_gpu_memory_is_what_torch_reserves_and_what_the_device_has_in_use():
    import torch

    from dali_cutmix.train.run_record import gpu_memory

    class FakeCuda:
        def mem_get_info(self, device):
            assert device == torch.device("cuda", 1)
            return 30 * 2**30, 80 * 2**30

        def memory_reserved(self, device):
            return 2 * 2**30

    assert gpu_memory(torch.device("cuda", 1), FakeCuda()) == dict(reserved=2 * 2**30, used=50 * 2**30,
                                                                   total=80 * 2**30)
    assert gpu_memory(torch.device("cpu")) is None


def test_ctrl_c_ends_with_the_command_that_continues_the_run(tiny_imagenet, tmp_path, capsys, monkeypatch):
    """Ctrl-C in a run that holds a checkpoint: the last line names it and the exact --resume command, exit 130;
    before the first checkpoint: nothing kept, the folder gone."""
    from dali_cutmix.cli import main
    from dali_cutmix.train import loop

    def interrupted(cfg, plan, info=None, **kwargs):  # kwargs: the checkpoint it resumes
        if "kept" in plan.output:
            (Path(plan.output) / "last.pt").write_bytes(b"a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run", interrupted)
    for name, last in (("kept", "interrupted: checkpoint {out}/last.pt is kept; continue with: dali-cutmix train "
                                "--output {out} --resume auto"),
                       ("lost", "interrupted before the first checkpoint: nothing was kept")):
        out = tmp_path / name
        code = main(["train", "--data", str(tiny_imagenet), "--output", str(out), "--gpus", "0", "--batch-size", "16",
                     *TINY])
        err = capsys.readouterr().err
        assert code == 130 and err.strip().splitlines()[-1] == last.format(out=out), err
        assert out.exists() == (name == "kept")
