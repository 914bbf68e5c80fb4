"""The training graph on each device (the CPU always, the GPU where DALI sees one): the ImageNet train pipeline
read through CutMixLoader (its handoff of DALI's outputs to torch tensors on the pipeline's device), checkpoint and
restore mid-epoch with the gate and ``mix_off_epoch``, and the trainer itself for a few steps under
``--decode roi`` and ``--decode full``. The stage's own pixels are checked in ``test_stage``/``test_mix``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import host, skip_without_gpu, to_numpy

from dali_cutmix import CutMixLoader, build_cutmix_pipeline
from dali_cutmix.pipelines.imagenet import build_imagenet_train_pipeline

ROOT = Path(__file__).resolve().parents[1]
MIXING = dict(mode="elem", mixup_alpha=0.5, switch_prob=0.5, label_smoothing=0.1)


def test_the_loader_hands_over_the_pipelines_own_outputs(jpeg_tree, device):
    """CutMixLoader's handoff: exactly what the same pipeline's ``run()`` gives, in its shape and dtype; images
    and soft labels on the pipeline's device (CUDA tensors on GPU 0 for a GPU pipeline), the params on the host."""
    options = dict(batch_size=4, device=device, num_threads=2, crop=32, seed=5, return_params=True,
                   mix_options=MIXING)
    raw = build_cutmix_pipeline(jpeg_tree, **options)
    raw.build()
    loader = CutMixLoader(build_cutmix_pipeline(jpeg_tree, **options))
    on = torch.device("cuda", 0) if device == "gpu" else torch.device("cpu")
    count = 0
    for batch in loader:
        expected = [to_numpy(o) for o in raw.run()]
        assert len(batch) == len(expected) == 7
        assert batch[0].device == batch[1].device == on
        assert all(t.device.type == "cpu" for t in batch[2:]), "perm, box, lam, method, class id: CPU outputs"
        assert batch[0].dtype == torch.float32 and tuple(batch[0].shape) == (4, 3, 32, 32)
        for got, want in zip(batch, expected):
            got = host(got)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        count += 1
    assert count == len(loader) == 6


def test_the_imagenet_train_pipeline_resumes_mid_epoch_with_its_gate(demo_imagenet, device):
    """The trainer's pipeline (checkpointing on, a shuffle every epoch, the gate closed by ``mix_off_epoch``):
    restored from a checkpoint taken inside epoch 0, it gives the same batches, bit for bit, on either device, and
    stays unmixed from the off epoch on."""
    skip_without_gpu(device)
    options = dict(batch_size=16, num_classes=4, crop=32, device=device, num_threads=2, seed=7,
                   mix_options=MIXING, mix_off_epoch=1, return_params=True)
    loader = CutMixLoader(build_imagenet_train_pipeline(demo_imagenet / "train", **options))
    it = iter(loader)
    first = next(it)
    assert first[0].device.type == ("cuda" if device == "gpu" else "cpu")
    assert (first[5] != 0).any(), "epoch 0 mixes"
    state = loader.checkpoint()
    expected = list(it) + list(loader)  # the rest of epoch 0, then epoch 1 (gated off)
    assert all((b[5] == 0).all() and (b[4] == 1).all() for b in expected[len(loader) - 1:]), "epoch 1 is gated off"
    resumed = CutMixLoader(build_imagenet_train_pipeline(demo_imagenet / "train", checkpoint=state, **options))
    got = list(resumed) + list(resumed)
    assert len(got) == len(expected) == 2 * len(loader) - 1
    for a, b in zip(expected, got):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def train_command(data, out, device, decode):
    """``python3 -m dali_cutmix.cli train`` for one short epoch of the demo set on ``device``."""
    gpus = ["--gpus", "1"] if device == "gpu" else ["--gpus", "0", "--cpu-procs", "1"]
    return [sys.executable, "-m", "dali_cutmix.cli", "train", "--data", str(data), "--output", str(out),
            "--epochs", "1", "--batch-size", "16", "--arch", "resnet18", "--crop", "32", "--workers", "1",
            "--seed", "3", "--warmup-epochs", "0", "--decode", decode, *gpus]


@pytest.mark.parametrize("decode", ["roi", "full"])
def test_the_trainer_runs_a_few_steps(demo_imagenet, tmp_path, device, decode):
    """``dali-cutmix train --gpus 1 --decode roi|full`` (``--gpus 0`` on the CPU): one epoch of 6 steps ends
    with its metrics and checkpoint. ``--decode full`` is the way around a ROI decoder that fails (nvImageCodec
    issue #55). Needs the trainer's ``--decode`` flag (issue 18.3)."""
    out = tmp_path / "run"
    env = {**os.environ, "DALI_CUTMIX_CACHE": os.environ.get("DALI_CUTMIX_CACHE", str(tmp_path / "cache")),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(train_command(demo_imagenet, out, device, decode), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["epoch"] for r in records if "epoch" in r][-1:] == [1]
    assert np.isfinite(records[-1]["train_loss"]) and records[-1]["train_images"] == 4 * 24
    assert (out / "last.pt").exists()


@pytest.mark.gpu
@pytest.mark.sanitizer
def test_the_stage_at_crop_176_is_clean_under_compute_sanitizer(jpeg_tree, gpu_only, tmp_path):
    """Issue 18.5: DALI's GPU paste kernel's first loop has no bounds guard, and widths with 3*W mod 256 in
    [1, 31] (176 among them) may read past its table. compute-sanitizer's memcheck runs the GPU stage at crop 176
    (CutMix per sample, then switching) and must report no error."""
    sanitizer = shutil.which("compute-sanitizer")
    if sanitizer is None:
        pytest.skip("compute-sanitizer is not on the PATH (it ships with the CUDA toolkit)")
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / 'tests')!r})
from stage_pipelines import run, stage_pipeline
from dali_cutmix import mix
for options in (dict(cutmix_alpha=1.0, mixup_alpha=0.0), dict(cutmix_alpha=1.0, mixup_alpha=0.8, switch_prob=0.5)):
    pipe = stage_pipeline({str(jpeg_tree)!r}, device="gpu", stage=mix, batch_size=8, mode="elem",
                          size=(176, 176), num_classes=4, **options)
    for _ in range(3):
        run(pipe)
print("STAGE_RAN")
"""
    # Plain cudaMalloc for every buffer (DALI's pools would hide a read past one allocation inside the next); a
    # read past the table that stays inside the kernel's own scratch buffer still cannot be seen.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "DALI_USE_DEVICE_MEM_POOL": "0", "DALI_USE_VMM": "0", "DALI_USE_PINNED_MEM_POOL": "0"}
    result = subprocess.run([sanitizer, "--tool", "memcheck", "--error-exitcode", "99", "--print-limit", "20",
                             sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env,
                            cwd=tmp_path)
    report = (result.stdout + result.stderr)[-6000:]
    assert "STAGE_RAN" in result.stdout, report
    assert result.returncode == 0 and "ERROR SUMMARY: 0 errors" in report, report
