"""One rank's training run: set up, (resume,) train and validate every epoch, log, checkpoint.

:func:`run` is what every process executes, whatever started it (this process, ``--gpus``/``--cpu-procs``,
``torchrun`` or SLURM). The device is a parameter: the CPU and the GPU take the same path.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from dali_cutmix.errors import UserError, first_line
from dali_cutmix.helpers.host import usable_cores
from dali_cutmix.helpers.progress import Progress
from dali_cutmix.helpers.text import plural
from dali_cutmix.imagecheck import BadFileError
from dali_cutmix.loss import soft_target_cross_entropy
from dali_cutmix.shard_reader import is_s3

from . import checkpoint as checkpoints
from . import distributed
from .accuracy import topk_correct
from .checkpoint import BEST, Checkpoint, read_checkpoint
from .config import TrainConfig
from .datalists import SKIPPED_FILE, record_failure, skipped_records
from .distributed import RankInfo
from .ema import build_ema
from .loaders import build_rank_data
from .metrics import MetricsLog
from .model import build_model, to_model_input
from .optim import LRSchedule, build_optimizer
from .plan import RunPlan
from .preempt import CheckpointClock, Preempted, StopRequest, agree
from .run_record import RANKS_FILE, RUN_FILE, epoch_line, gpu_memory, state_digest, write_json
from .runstate import Position, RunState


def _say(info: RankInfo, text: str) -> None:
    if info.is_main:
        print(text, flush=True)


def select_device(use_gpu: bool, info: RankInfo):
    """The rank's CUDA device (:func:`dali_cutmix.train.distributed.gpu_index` of its local rank and the GPUs it
    sees), made the current device, or the CPU."""
    import torch

    if use_gpu:
        device = torch.device("cuda", distributed.gpu_index(info.local_rank, torch.cuda.device_count()))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def cpu_threads(info: RankInfo, env: Mapping[str, str] = os.environ) -> int:
    """The torch threads of a rank on the CPU: ``OMP_NUM_THREADS`` when set (``torchrun`` sets 1 when it starts
    several processes and the variable is not set), else the node's usable cores split over its ranks (at least 1).

    The count shapes how the CPU kernels split their sums, so the weights are bit-identical only between runs whose
    ranks have the same count (``ranks.json`` records it as ``cpu_threads``).

    Raises:
        UserError: ``OMP_NUM_THREADS`` is not a positive integer.
    """
    value = env.get("OMP_NUM_THREADS", "").strip()
    if not value:
        return max(1, usable_cores() // info.local_world_size)
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"the environment variable OMP_NUM_THREADS must be a positive integer (the CPU threads of "
                        f"each rank), got {value!r}")
    return int(value)


def configure_torch(cfg: TrainConfig, info: RankInfo, device) -> None:
    """Threads and determinism. CPU: :func:`cpu_threads` threads, deterministic algorithms (so runs with one seed
    and one thread count give identical weights). GPU: cuDNN autotuning and TF32 unless ``--deterministic``, which
    asks for deterministic kernels and no TF32. Ops that have no deterministic kernel (e.g. the backward of a
    non-1x1 adaptive pooling in VGG and AlexNet) run anyway, with PyTorch's warning naming them, on both devices."""
    import torch

    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(info))
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def amp_dtype(amp: str, device):
    """The autocast dtype for ``--amp`` on ``device`` (None = full precision). ``auto``: bf16 on GPU, off on CPU."""
    import torch

    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def _logits(output):
    """The logits of a torchvision model's output (GoogLeNet / Inception return a named tuple when training)."""
    return output.logits if hasattr(output, "logits") else output


def mixed_count(targets, one_hot_on: float):
    """How many rows of ``targets`` are mixed: their largest weight is below ``one_hot_on`` (the weight of the
    class in a smoothed one-hot, ``1 - eps + eps / C``), so they hold a second class. A sample mixed with a
    partner of its own class, or whose CutMix box came out empty, counts as unmixed. A 0-d tensor, no sync."""
    return (targets.float().amax(dim=-1) < one_hot_on - 1e-4).sum()


def make_train_step(*, model, optimizer, scaler, device, dtype, nhwc: bool):
    """``step(images, targets) -> loss``: one optimizer step of ``model`` on a batch of images, (N, H, W, C) when
    ``nhwc`` else (N, C, H, W), and soft targets (forward under autocast ``dtype``,
    :func:`dali_cutmix.soft_target_cross_entropy`, backward through ``scaler``, update). The loss comes back
    detached, on ``device``, not synchronized."""
    import torch

    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    def step(images, targets):
        images = to_model_input(images, nhwc=nhwc)
        with autocast:
            logits = _logits(model(images))
        loss = soft_target_cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return step


def train_one_epoch(*, step, batches, schedule, device, progress: Progress, one_hot_on: float = 1.0,
                    steps: int, done: int = 0, partial: Optional[Dict[str, float]] = None,
                    after_step: Optional[Callable[[int, Callable[[], Dict[str, float]]], bool]] = None
                    ) -> Dict[str, float]:
    """Train over one epoch's ``batches`` with ``step`` (:func:`make_train_step`), setting the lr from
    ``schedule`` before each step; returns this rank's sums: ``loss_sum`` (sum of per-sample losses),
    ``samples``, ``mixed`` (samples whose target is mixed, see :func:`mixed_count`), ``wait_s`` (time blocked on
    the next batch), ``time_s`` (the whole epoch), ``lr`` (last), and ``stopped`` (True when ``after_step`` ended
    the epoch early).

    ``steps``: the epoch's steps; ``done``: those a resumed run already took (``batches`` yields the rest) and
    ``partial`` their sums (what ``sums()`` gave then), which the returned sums include. ``after_step(index,
    sums)``: called after step ``index`` (1-based, counting ``done``) with a function giving the running sums (one
    sync); returning True ends the epoch there."""
    import torch

    partial = partial or dict(loss_sum=0.0, samples=0, mixed=0, wait_s=0.0, time_s=0.0, lr=0.0)
    loss_sum = torch.full((), partial["loss_sum"], device=device)  # float32: a float round-trips it exactly
    mixed = torch.full((), int(partial["mixed"]), device=device, dtype=torch.int64)
    samples, wait, lr = int(partial["samples"]), float(partial["wait_s"]), float(partial["lr"])
    start = tick = time.perf_counter()
    elapsed = float(partial["time_s"])

    def sums() -> Dict[str, float]:
        return dict(loss_sum=float(loss_sum.item()), samples=samples, mixed=int(mixed.item()), wait_s=wait,
                    time_s=elapsed + time.perf_counter() - start, lr=lr)

    index, stopped = done, False
    for index, (images, targets) in enumerate(batches, done + 1):
        wait += time.perf_counter() - tick
        lr = schedule.apply()
        loss = step(images, targets)
        schedule.advance()
        n = images.shape[0]
        loss_sum += loss * n
        mixed += mixed_count(targets.detach(), one_hot_on)
        samples += n
        progress.update(index, lambda: f"loss {loss_sum.item() / samples:.4f}  "
                                       f"{(samples - partial['samples']) / (time.perf_counter() - start):.0f} "
                                       f"img/s/rank")
        if after_step is not None and after_step(index, sums):
            stopped = True
            break
        tick = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    progress.close()
    if samples == 0:
        raise RuntimeError("the training loader yielded no batch in this epoch")
    if not stopped and index != steps:
        raise RuntimeError(f"the training loader yielded {index - done} batches after step {done}, expected "
                           f"{steps - done}")
    return dict(sums(), stopped=stopped)


def evaluate(*, model, loader, device, dtype, nhwc: bool, progress: Optional[Progress] = None
             ) -> Dict[str, float]:
    """Top-1 / top-5 hits and the sample count of this rank's validation shard (sums, not yet reduced);
    ``progress`` (one step per batch) shows how far it got."""
    import torch

    model.eval()
    counts = torch.zeros(3, device=device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    with torch.no_grad(), autocast:
        for index, (images, labels) in enumerate(loader, 1):
            logits = _logits(model(to_model_input(images, nhwc=nhwc)))
            counts[:2] += topk_correct(logits.float(), labels.to(device, non_blocking=True), ks=(1, 5))
            counts[2] += images.shape[0]
            if progress is not None:
                progress.update(index)
    if progress is not None:
        progress.close()
    return dict(top1=counts[0], top5=counts[1], samples=counts[2])


def _epoch_record(epoch: int, train: Dict[str, float], val: Dict[str, Any], val_time: float, device, *,
                  mixing: bool = True, ema_val: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Reduce this rank's sums over all ranks into the epoch's metrics record; ``mixing``: whether the mixing
    schedule had mixing on in this epoch (see :meth:`dali_cutmix.train.config.TrainConfig.mixing_in_epoch`);
    ``ema_val``: the model EMA's validation sums (the record then holds ``ema_val_top1``, ``ema_val_top5``)."""
    import torch

    ema = ema_val or dict(top1=0.0, top5=0.0)
    sums = torch.tensor([train["loss_sum"], train["samples"], train["wait_s"] / max(train["time_s"], 1e-9), 1.0,
                         float(val["top1"]), float(val["top5"]), float(val["samples"]), float(train["mixed"]),
                         float(ema["top1"]), float(ema["top5"])], dtype=torch.float64, device=device)
    distributed.all_reduce_sum(sums)
    times = torch.tensor([train["time_s"], val_time], dtype=torch.float64, device=device)
    distributed.all_reduce_max(times)
    loss_sum, samples, wait_share_sum, ranks, top1, top5, val_samples, mixed, ema_top1, ema_top5 = sums.tolist()
    train_time, val_time = times.tolist()
    record = dict(
        epoch=epoch,
        train_loss=loss_sum / max(samples, 1),
        mixing=bool(mixing),
        mixed_targets=mixed / max(samples, 1),
        val_top1=100.0 * top1 / max(val_samples, 1),
        val_top5=100.0 * top5 / max(val_samples, 1),
        images_per_s=samples / max(train_time, 1e-9),
        data_wait=wait_share_sum / ranks,
        lr=train["lr"],
        epoch_time_s=train_time,
        val_time_s=val_time,
        train_images=int(samples),
        val_images=int(val_samples),
        time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if ema_val is not None:
        record.update(ema_val_top1=100.0 * ema_top1 / max(val_samples, 1),
                      ema_val_top5=100.0 * ema_top5 / max(val_samples, 1))
    return record


def mixing_summary(cfg: TrainConfig) -> str:
    """One phrase for the start line: what is mixed, how, and until when."""
    mix = cfg.mix
    smoothing = f", label smoothing {mix.label_smoothing:g}" if mix.label_smoothing else ""
    if not cfg.mixing:
        return "no mixing" + smoothing
    cutmix = f"CutMix {mix.cutmix_alpha:g}" if mix.cutmix_minmax is None else "CutMix boxes {:g}-{:g}".format(
        *mix.cutmix_minmax)
    methods = ([cutmix] if mix.cutmix_on else []) + ([f"MixUp {mix.mixup_alpha:g}"] if mix.mixup_on else [])
    text = " / ".join(methods)
    if len(methods) == 2:
        text += f" (CutMix share {mix.switch_prob:g})"
    text += f", prob {mix.prob:g} per {dict(elem='sample').get(mix.mode, mix.mode)}"
    text += "" if mix.correct_lam else ", lam not corrected"
    text += smoothing
    if cfg.mix_off_epoch is not None:
        text += f", mixed through epoch {cfg.mix_off_epoch}, off from epoch {cfg.mix_off_epoch + 1}"
    return text


def ema_phrase(cfg: TrainConfig) -> str:
    """The start line's words on the model EMA: its decay (as the run uses it) and how often it updates; "" when
    off."""
    if cfg.model_ema is None:
        return ""
    from .ema import ema_decay

    decay = ema_decay(cfg)
    every = "every step" if cfg.model_ema_steps == 1 else f"every {cfg.model_ema_steps} steps"
    return f", EMA decay {decay:.6g} {every}"


def start_lines(cfg: TrainConfig, *, start_epoch: int, start_step: int = 0, classes: int, train_images: int, root,
                world_size: int, device: str, output) -> List[str]:
    """The run's opening summary: a few short lines (what, on what, how, mixed how, where); a resumed run's first
    line says where it continues (after ``start_epoch`` epochs and ``start_step`` steps of the next)."""
    if start_step:
        what = f"resuming epoch {start_epoch + 1} of {cfg.epochs} at step {start_step + 1}"
    elif start_epoch:
        what = f"resuming after epoch {start_epoch} of {cfg.epochs}"
    else:
        what = f"training {plural(cfg.epochs, 'epoch')}"
    data = "the demo dataset" if cfg.data is None else str(cfg.data) if is_s3(cfg.data) else str(root)
    per_rank = cfg.batch_size // world_size
    split = f" ({per_rank} per rank)" if world_size > 1 else ""
    schedule = cfg.schedule if cfg.schedule == "cosine" else f"step at {','.join(map(str, cfg.milestones)) or '-'}"
    warmup = f", warmup {cfg.warmup_epochs:g}" if cfg.warmup_epochs else ""
    return [f"{what}: {cfg.arch}, {plural(classes, 'class', 'classes')}, "
            f"{plural(train_images, 'train image')} from {data}",
            f"  {plural(world_size, 'rank')} on {device}, batch {cfg.batch_size}{split}, {cfg.optimizer} lr "
            f"{cfg.base_lr:g}, {schedule}{warmup}, seed {cfg.seed}{ema_phrase(cfg)}",
            f"  mixing: {mixing_summary(cfg)}",
            f"  output: {output}"]


class TrainingDiverged(UserError):
    """The loss stopped being finite: a setting's fault (--lr), told in one line."""


class DataFileFailed(UserError):
    """A data file failed while the run read it (after the scan passed it); the message says which and what to
    do, in one line."""


def file_failure(error: BadFileError, *, output: Path, data_root: Path, epoch: int) -> DataFileFailed:
    """The one-line error of a run that stops on a file DALI failed on in ``epoch``: the file joins the run's skip
    list (:func:`dali_cutmix.train.datalists.record_failure`), so ``--resume auto`` continues without it from the
    last checkpoint. A failure DALI names no file for points to ``--scan full``."""
    kept = f"last.pt holds epoch {epoch - 1}" if epoch > 1 else "no checkpoint yet: a new start"
    if error.shard:
        return DataFileFailed(f"epoch {epoch} stopped: {first_line(error)} (checkpoints intact: {kept})")
    if error.path is None:
        return DataFileFailed(
            f"epoch {epoch} stopped: {first_line(error)}; run again with --scan full --resume auto to find and skip "
            f"it (checkpoints intact: {kept})")
    shown = record_failure(output, data_root, error.path, error.reason, epoch)
    return DataFileFailed(
        f"epoch {epoch} stopped: DALI cannot read {shown} ({error.reason}); it is now on this run's skip list "
        f"({output / SKIPPED_FILE}): continue without it with --resume auto (checkpoints intact: {kept})")


def run(cfg: TrainConfig, plan: RunPlan, info: Optional[RankInfo] = None, *, checkpoint: Optional[Checkpoint] = None,
        notice: Optional[Path] = None) -> Dict[str, Any]:
    """Train on this rank as ``cfg`` says, where ``plan`` (:func:`dali_cutmix.train.plan.prepare`'s) says,
    continuing from ``checkpoint`` (the one ``plan.resume_path`` names, read by
    :func:`dali_cutmix.train.checkpoint.resolve_run`; None for a fresh run).
    ``notice``: a file whose appearance asks the run to stop as a SIGTERM would (the launcher's, see
    :class:`~dali_cutmix.train.preempt.LauncherStop`).

    Promises: rank 0 appends one line per finished epoch to ``OUTPUT/metrics.jsonl`` and writes ``OUTPUT/last.pt``
    after it (and ``best.pt`` when val top-1 improves), so a kill at any moment leaves a consistent run that
    ``--resume auto`` continues. Returns rank 0's summary (``best_top1``, ``best_epoch``, ``last``) on every rank.
    """
    info = info or distributed.rank_info()
    device = select_device(plan.use_gpu, info)
    distributed.init(info, device)
    try:
        return _train(cfg, plan, info, device, checkpoint=checkpoint, notice=notice)
    finally:
        distributed.shutdown()


@dataclasses.dataclass
class Training:
    """What one rank trains with: the model (``raw`` unwrapped, ``model`` as trained: DDP / compiled, ``eval_model``
    for validation), its optimizer, lr schedule and fp16 scaler, the step function, the autocast dtype and the
    model EMA (:class:`~dali_cutmix.train.ema.ModelEma`, None without ``--model-ema``)."""

    raw: Any
    model: Any
    eval_model: Any
    optimizer: Any
    schedule: LRSchedule
    scaler: Any
    step: Callable
    dtype: Any
    ema: Any = None


def build_training(cfg: TrainConfig, info: RankInfo, device, *, classes: int, steps_per_epoch: int) -> Training:
    """A fresh model (the same initial weights on every rank: seeded with ``cfg.seed``; then torch's RNG is seeded
    per rank), its optimizer, schedule, scaler and step function, wrapped in DDP over several ranks."""
    import torch

    torch.manual_seed(cfg.seed)
    raw = build_model(cfg.arch, classes, device=device, channels_last=cfg.channels_last,
                      zero_init_residual=cfg.zero_init_residual, image_size=cfg.crop)
    ema = build_ema(cfg, raw)  # a copy of the initial weights, before DDP and torch.compile
    torch.manual_seed(cfg.seed + 1 + info.rank)
    optimizer = build_optimizer(raw, optimizer=cfg.optimizer, lr=cfg.base_lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay,
                                norm_weight_decay=cfg.norm_weight_decay, bias_weight_decay=cfg.bias_weight_decay,
                                transformer_embedding_decay=cfg.transformer_embedding_decay)
    schedule = LRSchedule(optimizer, steps_per_epoch=steps_per_epoch, base_lr=cfg.base_lr, epochs=cfg.epochs,
                          schedule=cfg.schedule, milestones=cfg.milestones, gamma=cfg.lr_gamma,
                          warmup_epochs=cfg.warmup_epochs)
    dtype = amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    model = raw
    if info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None,
                                        gradient_as_bucket_view=True)
    eval_model = raw
    if cfg.compile:
        model, eval_model = torch.compile(model), torch.compile(raw)
    step = make_train_step(model=model, optimizer=optimizer, scaler=scaler, device=device, dtype=dtype,
                           nhwc=cfg.channels_last)
    return Training(raw=raw, model=model, eval_model=eval_model, optimizer=optimizer, schedule=schedule,
                    scaler=scaler, step=step, dtype=dtype, ema=ema)


def stopped(stop: StopRequest, where: str, path: Path, output: Path) -> Preempted:
    """The :class:`~dali_cutmix.train.preempt.Preempted` of a run that stopped ``where`` (e.g. "at epoch 2 step
    3/8") with its checkpoint written to ``path``: one line naming the signal (this rank's, or another rank's),
    the checkpoint and the command that continues the run in ``output``."""
    return Preempted(f"stopped by {stop.requested() or 'a stop signal on another rank'} {where}: checkpoint {path}; "
                     f"continue with: {resume_command(output)}")


def resume_command(output: Path) -> str:
    """The command that continues the run in ``output`` (its settings come from its checkpoint)."""
    return f"dali-cutmix train --output {output} --resume auto"


def _train(cfg: TrainConfig, plan: RunPlan, info: RankInfo, device, *, checkpoint: Optional[Checkpoint] = None,
           notice: Optional[Path] = None) -> Dict[str, Any]:
    configure_torch(cfg, info, device)
    # Rank 0's view decides where the run lives, what it resumes (ranks may have computed other defaults) and what
    # it reads (the file lists rank 0's plan wrote).
    output, resume_path, lists, skipped = distributed.broadcast_object(
        (plan.output, plan.resume_path, (plan.train_list, plan.val_list), plan.skipped))
    output = Path(output)
    root = Path(plan.data_root)
    classes = list(plan.classes)
    if resume_path is None:
        checkpoint = None
    elif checkpoint is None or str(checkpoint.path) != resume_path:  # this rank resolved another one
        checkpoint = read_checkpoint(Path(resume_path), auto=False)

    data = build_rank_data(cfg, train_dir=lists[0] or root / "train", val_dir=lists[1] or root / "val",
                           num_classes=len(classes),
                           info=info, device="gpu" if device.type == "cuda" else "cpu",
                           device_id=device.index if device.type == "cuda" else None,
                           dali_checkpoint=RunState.dali_checkpoint(checkpoint and checkpoint.state, info.rank))
    memory = distributed.all_gather_objects(gpu_memory(device))  # each rank's, with its pipelines built
    training = build_training(cfg, info, device, classes=len(classes), steps_per_epoch=len(data.train))
    state = RunState(cfg=cfg, training=training, data=data, position=Position(), info=info, classes=classes)
    if checkpoint is not None:
        checkpoints.restore(state, checkpoint)
    position = state.position
    metrics = MetricsLog(output)
    if info.is_main:
        checkpoints.open_run_folder(output, checkpoint, metrics, position)
        plan_record = {k: v for k, v in dataclasses.asdict(plan).items() if k != "skipped"}
        write_json(output / RUN_FILE, dict(
            config=cfg.to_dict(), plan=plan_record, world_size=info.world_size, device=device.type,
            classes=len(classes), train_images=data.reader_meta["epoch_size"],
            val_images=data.val.pipeline.reader_meta("Reader")["epoch_size"], skipped=skipped_records(skipped),
            started=datetime.now(timezone.utc).isoformat(),
            resumed_from=str(resume_path) if resume_path else None, resumed_epoch=position.epoch,
            resumed_step=position.step, gpu_memory=memory,
            model_ema=None if training.ema is None else dict(decay=training.ema.decay, every=training.ema.every,
                                                             copy_through=training.ema.copy_through)))

    for line in start_lines(cfg, start_epoch=position.epoch, start_step=position.step, classes=len(classes),
                            train_images=data.reader_meta["epoch_size"], root=root, world_size=info.world_size,
                            device=device.type, output=output):
        _say(info, line)
    one_hot_on = 1.0 - cfg.mix.label_smoothing + cfg.mix.label_smoothing / len(classes)
    stop, trained = StopRequest(notice).install(), False
    try:
        for epoch in range(position.epoch + 1, cfg.epochs + 1):
            record = run_epoch(state, epoch=epoch, device=device, output=output, root=root, one_hot_on=one_hot_on,
                               stop=stop)
            copies = ([output / BEST] if record["epoch"] == position.best_epoch else []) + (
                [output / f"epoch_{epoch:04d}.pt"] if cfg.save_every and epoch % cfg.save_every == 0 else [])
            # the metrics line first: a kill before the checkpoint rewinds it on resume
            path = checkpoints.write_checkpoint(state, output=output, metrics=metrics, copies=copies)
            _say(info, epoch_line(record, cfg.epochs, len(classes)))
            trained = True
            if epoch < cfg.epochs:  # a signal during the epoch's last steps or its validation stops it here
                _, halt = agree(due=False, stop=stop.requested() is not None, is_main=info.is_main,
                                world_size=info.world_size, device=device)
                if halt:
                    raise stopped(stop, f"after epoch {epoch} of {cfg.epochs}", path, output)
    finally:
        stop.uninstall()
    return finish(state, device=device, output=output, trained=trained)


def run_epoch(state: RunState, *, epoch: int, device, output: Path, root: Path, one_hot_on: float,
              stop: StopRequest) -> Dict[str, Any]:
    """Train and validate epoch ``epoch`` of the run ``state`` (continuing at ``state.position.step`` when a
    mid-epoch checkpoint was resumed), writing mid-epoch checkpoints as ``--checkpoint-steps`` /
    ``--checkpoint-minutes`` say; updates the position to the epoch's end and returns its metrics record (over the
    whole epoch, on every rank).

    Raises:
        Preempted: a stop signal came: the checkpoint at the step all ranks agreed on is written.
        DataFileFailed / TrainingDiverged: one line (checkpoints intact).
    """
    import torch

    cfg, training, data, position, info = state.cfg, state.training, state.data, state.position, state.info
    steps = len(data.train)
    clock = CheckpointClock(cfg.checkpoint_steps, cfg.checkpoint_minutes)

    ema = training.ema

    def after_step(index: int, sums) -> bool:
        if ema is not None and ema.due(index):  # after the optimizer step, before any checkpoint of it
            ema.update(training.raw, epoch)
        shared = clock.shared(index)
        asked = stop.requested() is not None if shared or info.world_size == 1 else False
        write, halt = agree(due=clock.due(index, steps), stop=asked, is_main=info.is_main,
                            world_size=info.world_size, device=device, shared=shared)
        if not write:
            return False
        position.step, position.partial = index, sums()
        path = checkpoints.write_checkpoint(state, output=output)
        clock.written()
        if halt:
            raise stopped(stop, f"at epoch {epoch} step {index}/{steps}", path, output)
        return False

    progress = Progress(steps, f"epoch {epoch}/{cfg.epochs}", enabled=info.is_main, every=cfg.log_every)
    training.model.train()
    try:
        stats = train_one_epoch(step=training.step, batches=data.next_train_epoch(), schedule=training.schedule,
                                device=device, progress=progress, one_hot_on=one_hot_on, steps=steps,
                                done=position.step, partial=position.partial, after_step=after_step)
    except BadFileError as e:
        progress.close()
        raise file_failure(e, output=output, data_root=root, epoch=epoch) from None
    except BaseException:
        progress.close()  # whatever ends the epoch (a stop signal, the data source, a bug) starts on its own line
        raise
    if not torch.isfinite(torch.tensor(stats["loss_sum"])):
        kept = (f"last.pt holds epoch {epoch - 1}: --resume {output} --lr LOWER continues from it" if epoch > 1
                else "no epoch finished, so no run is kept")
        raise TrainingDiverged(f"training diverged in epoch {epoch} (the loss is not finite): lower --lr (now "
                               f"{cfg.base_lr:g}); {kept}")
    distributed.average_buffers(training.raw)
    if training.ema is not None:
        distributed.average_buffers(training.ema.module)  # every rank evaluates, and saves, the same EMA
    tick = time.perf_counter()
    models = [("validation", training.eval_model)] + ([] if training.ema is None else [("EMA", training.ema.module)])
    val_stats = []
    try:
        for what, model in models:
            val_progress = Progress(len(data.val), f"{what} {epoch}/{cfg.epochs}", enabled=info.is_main,
                                    every=cfg.log_every)
            val_stats.append(evaluate(model=model, loader=data.val, device=device, dtype=training.dtype,
                                      nhwc=cfg.channels_last, progress=val_progress))
    except BadFileError as e:
        raise file_failure(e, output=output, data_root=root, epoch=epoch) from None
    record = _epoch_record(epoch, stats, val_stats[0], time.perf_counter() - tick, device,
                           mixing=cfg.mixing_in_epoch(epoch), ema_val=val_stats[1] if len(val_stats) > 1 else None)
    top1, weights = record["val_top1"], "model"
    if record.get("ema_val_top1") is not None and record["ema_val_top1"] > top1:
        top1, weights = record["ema_val_top1"], "ema"
    if top1 > position.best_top1:
        position.best_top1, position.best_epoch, position.best_weights = top1, epoch, weights
    record.update(best_top1=position.best_top1, best_epoch=position.best_epoch)
    if training.ema is not None:
        record.update(best_weights=position.best_weights)
    position.epoch, position.step, position.partial, position.record = epoch, 0, None, record
    return record


def finish(state: RunState, *, device, output: Path, trained: bool) -> Dict[str, Any]:
    """Write ``ranks.json`` (each rank's host, device, torch's CPU threads, reader and weights digest) and the
    closing line; returns rank 0's summary (``best_top1``, ``best_epoch``, ``last``: the last epoch's record, None
    when nothing was left to train, ``output``)."""
    import torch

    info, data, position, epochs = state.info, state.data, state.position, state.cfg.epochs
    ranks = distributed.all_gather_objects(dict(
        rank=info.rank, local_rank=info.local_rank, host=socket.gethostname(), device=str(device),
        cpu_threads=torch.get_num_threads(), reader=data.reader_meta, train_steps_per_epoch=len(data.train),
        train_samples_per_epoch=data.train_samples,
        state_digest=state_digest(state.training.raw)))
    if info.is_main:
        write_json(output / RANKS_FILE, ranks)
        if not trained:
            print(f"nothing to do: the checkpoint already holds all {plural(epochs, 'epoch')}", file=sys.stderr)
        weights = ", EMA weights" if position.best_weights == "ema" else ""
        print(f"done: best val top-1 {max(position.best_top1, 0):.2f}% (epoch {position.best_epoch}{weights}); "
              f"checkpoints and metrics in {output}", flush=True)
    return dict(best_top1=position.best_top1, best_epoch=position.best_epoch,
                last=position.record if trained else None, output=str(output))
