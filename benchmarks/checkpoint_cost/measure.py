"""What a mid-epoch checkpoint costs the trainer (issue 19), on the demo dataset, one CPU rank.

    PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py [--steps-before 4] [--out benchmarks/checkpoint_cost]

Trains the demo recipe's model a few steps, then measures: the DALI pipeline's own checkpoint (``checkpoint()``:
time, bytes), the whole ``last.pt`` write (gather, serialize, write, fsync, rename: time, bytes) against a
training step, and how long a pipeline restored at step k takes to yield its first batch against a fresh one
(does DALI restore by fast-forwarding through the epoch's files?). Writes ``checkpoint_cost.json`` beside this
script (or in ``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def first_batch_seconds(cfg, root, classes, info, state) -> float:
    """Seconds from building the training loader (restored from DALI ``state``, or fresh for None) to its first
    batch."""
    from dali_cutmix.train.loaders import build_rank_data

    tick = time.perf_counter()
    data = build_rank_data(cfg, train_dir=root / "train", val_dir=root / "val", num_classes=len(classes),
                           info=info, device="cpu", device_id=None, dali_checkpoint=state)
    next(iter(data.train))
    return time.perf_counter() - tick


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-before", type=int, default=4, help="training steps before the checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)

    import torch

    from dali_cutmix.pipelines.demo import ensure_demo_dataset
    from dali_cutmix.train.checkpoint import decode_dali_state, encode_dali_state
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.loaders import build_rank_data
    from dali_cutmix.train.loop import Position, build_training, configure_torch, write_checkpoint

    root = ensure_demo_dataset()
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    info = RankInfo()
    cfg = resolve_config({})  # the demo's recipe (what `dali-cutmix train` without flags runs)
    device = torch.device("cpu")
    configure_torch(cfg, info, device)
    data = build_rank_data(cfg, train_dir=root / "train", val_dir=root / "val", num_classes=len(classes),
                           info=info, device="cpu", device_id=None)
    training = build_training(cfg, info, device, classes=len(classes), steps_per_epoch=len(data.train))
    batches = iter(data.train)
    step_times, early_state = [], None
    for index in range(args.steps_before):
        if index == 1:
            early_state = encode_dali_state(data.train.checkpoint())  # after 1 step
        images, targets = next(batches)
        tick = time.perf_counter()
        training.schedule.apply()
        training.step(images, targets)
        training.schedule.advance()
        step_times.append(time.perf_counter() - tick)

    dali_times, dali_state = [], None
    for _ in range(args.repeats):
        tick = time.perf_counter()
        dali_state = data.train.checkpoint()
        dali_times.append(time.perf_counter() - tick)
    position = Position(epoch=0, step=args.steps_before, partial=dict(loss_sum=0.0, samples=0, mixed=0, wait_s=0.0,
                                                                      time_s=0.0, lr=0.0))
    write_times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            tick = time.perf_counter()
            path = write_checkpoint(cfg, training, data, position, info=info, output=Path(folder),
                                    classes=classes)
            write_times.append(time.perf_counter() - tick)
        size = path.stat().st_size
    state_text = encode_dali_state(dali_state)
    restored = [first_batch_seconds(cfg, root, classes, info, decode_dali_state(state_text))
                for _ in range(args.repeats)]
    restored_early = [first_batch_seconds(cfg, root, classes, info, decode_dali_state(early_state))
                      for _ in range(args.repeats)]
    fresh = [first_batch_seconds(cfg, root, classes, info, None) for _ in range(args.repeats)]
    step = statistics.median(step_times[1:] or step_times)
    result = dict(
        command="PYTHONPATH=. python benchmarks/checkpoint_cost/measure.py " + " ".join(argv or sys.argv[1:]),
        machine=dict(platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                     threads=torch.get_num_threads()),
        data=dict(root=str(root), train_images=data.reader_meta["epoch_size"], steps_per_epoch=len(data.train),
                  batch_size=cfg.batch_size, arch=cfg.arch, crop=cfg.crop),
        steps_before=args.steps_before,
        train_step_s=step,
        dali_checkpoint_s=statistics.median(dali_times),
        dali_state_bytes=len(dali_state) if isinstance(dali_state, (bytes, bytearray)) else len(str(dali_state)),
        checkpoint_write_s=statistics.median(write_times),
        checkpoint_bytes=size,
        step_stall=statistics.median(write_times) / step,
        first_batch_fresh_s=statistics.median(fresh),
        first_batch_restored_after_1_step_s=statistics.median(restored_early),
        first_batch_restored_s=statistics.median(restored),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "checkpoint_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
