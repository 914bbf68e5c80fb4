"""``dali-cutmix`` run as a user runs it (a subprocess of this Python, in a cache folder of its own), its outputs
read back, and the trainer tests' tiny colour data set: shared by the tests of the trainer and of what it reads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

# Small and fast: ResNet-18 at 32x32 on 4 colour-coded classes, SGD that learns them in a few dozen steps.
TINY = ["--arch", "resnet18", "--zero-init-residual", "--crop", "32", "--workers", "1", "--seed", "3",
        "--lr", "0.02", "--schedule", "cosine", "--warmup-epochs", "0", "--weight-decay", "5e-4",
        "--min-area", "0.35"]
PALETTE = ((200, 40, 40), (40, 170, 60), (50, 70, 210), (210, 190, 40))
TRAIN_PER_CLASS, VAL_PER_CLASS = 32, 12


def cli_command() -> list[str]:
    """The command that runs ``dali-cutmix`` (its script beside this Python, else ``python -m dali_cutmix.cli``)."""
    exe = Path(sys.executable).parent / "dali-cutmix"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dali_cutmix.cli"]


def seed_native(cache):
    """Put this process's build of the native operators into the cache folder ``cache`` (where a subprocess would
    otherwise compile them again: ~10 s each, and a progress line on its stderr)."""
    import shutil

    from dali_cutmix import native

    target = native.library_path(cache)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(native.build(), target)


def cli_env(tmp_path) -> dict:
    """This process's environment for a started ``dali-cutmix``: its own cache folder under ``tmp_path`` (the native
    operators seeded there), no rank variables."""
    env = dict(os.environ)
    env["DALI_CUTMIX_CACHE"] = str(tmp_path / "cache")  # never touch the user's cache
    seed_native(tmp_path / "cache")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("SLURM_PROCID", None)
    return env


def run_cli(args, tmp_path, timeout=240):
    """Run ``dali-cutmix ARGS`` in a subprocess; returns the CompletedProcess (text)."""
    return subprocess.run(cli_command() + list(args), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True,
                          text=True, timeout=timeout)


def kill_in_epoch_2(args, tmp_path):
    """Run ``dali-cutmix ARGS`` (with ``--log-every 1``, 3 epochs) and SIGKILL it two steps into epoch 2, after
    epoch 1's checkpoint."""
    proc = subprocess.Popen(cli_command() + list(args), cwd=tmp_path, env=cli_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(180, proc.kill)
    watchdog.start()
    killed = False
    try:
        for line in proc.stderr:
            if re.match(r"epoch 2/3 step 2/", line):
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
    finally:
        watchdog.cancel()
        proc.wait(timeout=60)
    assert killed and proc.returncode == -signal.SIGKILL


def read_records(output):
    from dali_cutmix.train.metrics import read_metrics

    return read_metrics(Path(output) / "metrics.jsonl")


def load_state(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


#: A progress line of long work on a stream that is not a terminal (``helpers.progress.Progress``: every 30 s):
#: what a slow machine prints before a failure, not part of it.
PROGRESS_LINE = re.compile(r"^\S.* step \d+/\d+ ")


def assert_one_line_error(stderr, *fragments):
    """The CLI's failure contract: one ``error: ...`` line on stderr, no traceback (the progress lines a slow
    machine printed before it aside)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_colour_dataset(root, *, train_per_class, val_per_class, size=40, seed=0):
    """ImageNet layout ``root/{train,val}/class<c>/*.jpg``: class c is a colour of :data:`PALETTE`, with random
    brightness, a random faint wave and noise on top (learnable in a few steps, not trivially constant)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c, colour in enumerate(PALETTE):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                yy, xx = np.mgrid[0:size, 0:size] / size
                wave = np.sin(2 * np.pi * rng.uniform(1, 4) * (xx * rng.uniform(-1, 1) + yy) + rng.uniform(0, 6.3))
                img = (np.array(colour) * rng.uniform(0.6, 1.1) + 40 * wave[..., None]
                       + rng.normal(0, 20, (size, size, 3)))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.jpg", quality=90)
    return root
