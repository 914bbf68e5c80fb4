"""``dali-cutmix train``: train a torchvision classifier (ResNet-50 by default) on ImageNet with CutMix in DALI.

Options left out take the recipe's value: ``--recipe paper`` (the default with ``--data``), ``deit``,
``torchvision-v2``, or ``demo`` (the default without ``--data``: the embedded demo dataset). Each flag's help lists
the recipes' values, made from :data:`dali_cutmix.train.recipe.RECIPES`. The flags' values go as they are to
:func:`dali_cutmix.train.resume.resolve_run`, which applies and checks them (with ``--resume``, over the run's own
settings).
"""

from __future__ import annotations

from typing import Any

import click

from dali_cutmix.builder import DECODES
from dali_cutmix.train.config import AMP_MODES, OPTIMIZERS, SCAN_MODES, SCHEDULES
from dali_cutmix.train.recipe import RECIPES

from .mixing import mixing_options
from .params import SEED, show_progress


def _milestones(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated epochs like 75,150,225, got {value!r}") from None


_UNSET = "none"  # a given "none": train.config.resolve_config makes it None (overriding the recipe's value)


def _optional_float(ctx, param, value):
    """``none`` (any case) for "not set" in flags whose recipe value may be None (it then follows another flag)."""
    if value is None:
        return None
    if str(value).lower() == "none":
        return _UNSET
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected a number or 'none', got {value!r}") from None


def shown(value: Any) -> str:
    """A recipe value as the help shows it: on/off, none, ``75,150,225``, ``1e-4``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(shown(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-")
    return str(value)


def recipe_values(key: str, lead: str = "") -> str:
    """``[paper: V; deit: V; torchvision-v2: V; demo: V]``: each recipe's value of ``key``, for a flag's help."""
    return "[" + lead + "; ".join(f"{name}: {shown(recipe[key])}" for name, recipe in RECIPES.items()) + "]"


@click.command(context_settings={"max_content_width": 110})
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="ImageNet-layout root: DATA/train/<class>/*.JPEG and DATA/val/<class>/*.JPEG (the same class "
                   "folders), or the tar shards `dali-cutmix shard` made of one (local or s3://bucket/prefix). "
                   "Default: the embedded demo dataset (6 classes, generated on first use).")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Run folder: metrics.jsonl, last.pt, best.pt, run.json, ranks.json, the file lists read and "
                   "skipped.txt. [default: runs/<timestamp>]")
@click.option("--scan", type=click.Choice(SCAN_MODES), default=None,
              help="Check the data before the first epoch and train on the usable files only, naming every "
                   "skipped one (on the terminal, in OUTPUT/skipped.txt and run.json): 'quick' reads headers and "
                   "ends at file-system speed, 'full' also decodes every file with DALI, 'off' checks nothing. "
                   "Results are cached per file: a resumed or second run re-reads only changed files. "
                   "[default: quick]")
@click.option("--decode", type=click.Choice(DECODES), default=None,
              help="How training images are decoded: 'roi' decodes only the random crop's region, 'full' decodes "
                   "the whole image and then crops it (more decoding work; a way around a failing ROI decoder). "
                   "Validation always decodes whole images. [default: roi]")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None,
              help="Defaults for every setting below: 'paper' = the CutMix paper's ImageNet ResNet-50 settings, "
                   "'deit' = DeiT's (facebookresearch/deit main.py: ViT-B/16, AdamW, MixUp + CutMix), "
                   "'torchvision-v2' = torchvision's ResNet-50 IMAGENET1K_V2 recipe, 'demo' = small and fast "
                   "(the README's Training section lists each value and its source). [default: paper with --data, "
                   "demo without]")
@click.option("--arch", default=None,
              help="Any torchvision classification model by name. " + recipe_values("arch"))
@click.option("--zero-init-residual/--no-zero-init-residual", default=None,
              help="ResNets: start each residual branch at zero (identity blocks). "
                   + recipe_values("zero_init_residual"))
@click.option("--crop", type=int, default=None, help="Training crop, pixels (and the validation centre crop "
              "unless --val-crop is set). " + recipe_values("crop"))
@click.option("--val-crop", type=int, default=None,
              help="Validation centre crop, pixels (none: = --crop). " + recipe_values("val_crop"))
@click.option("--val-resize", type=int, default=None,
              help="Validation: shorter side resized to this before the centre crop (when --crop / --val-crop "
                   "changes the recipe's validation crop: that crop * 256/224). " + recipe_values("val_resize"))
@click.option("--min-area", type=float, default=None,
              help="Random-resized-crop: smallest crop, as a share of the image area. "
                   + recipe_values("min_area"))
@click.option("--epochs", type=int, default=None, help="Epochs. " + recipe_values("epochs"))
@click.option("--batch-size", type=int, default=None,
              help="Global batch (split evenly over all ranks). " + recipe_values("batch_size"))
@click.option("--lr", type=float, default=None,
              help="Peak learning rate for the global batch. "
                   + recipe_values("lr_per_256", "default: batch/256 x the recipe's lr per 256 images, "))
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="'sgd' (with --momentum, --nesterov) or 'adamw' (betas 0.9/0.999, eps 1e-8, decoupled weight "
                   "decay). " + recipe_values("optimizer"))
@click.option("--momentum", type=float, default=None,
              help="SGD momentum (not used by AdamW). " + recipe_values("momentum"))
@click.option("--nesterov/--no-nesterov", default=None,
              help="SGD: Nesterov momentum. " + recipe_values("nesterov"))
@click.option("--weight-decay", type=float, default=None,
              help="Weight decay (every parameter the three flags below do not cover). "
                   + recipe_values("weight_decay"))
@click.option("--norm-weight-decay", callback=_optional_float, default=None, metavar="FLOAT|none",
              help="Weight decay of normalization layers (BatchNorm, LayerNorm, ...; none: --weight-decay). "
                   + recipe_values("norm_weight_decay"))
@click.option("--bias-weight-decay", callback=_optional_float, default=None, metavar="FLOAT|none",
              help="Weight decay of biases, norm layers' included (none: as the rest of their layer). "
                   + recipe_values("bias_weight_decay"))
@click.option("--transformer-embedding-decay", callback=_optional_float, default=None, metavar="FLOAT|none",
              help="Weight decay of ViT class tokens and position embeddings, Swin relative position biases "
                   "(none: --weight-decay). " + recipe_values("transformer_embedding_decay"))
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="lr schedule: 'step' (x lr-gamma at each milestone) or 'cosine' (to 0). "
                   + recipe_values("schedule"))
@click.option("--milestones", callback=_milestones, default=None, metavar="E1,E2,..",
              help="Epochs where the step schedule multiplies lr by --lr-gamma. " + recipe_values("milestones"))
@click.option("--lr-gamma", type=float, default=None,
              help="Step schedule factor. " + recipe_values("lr_gamma"))
@click.option("--warmup-epochs", type=float, default=None,
              help="Linear lr warmup from ~0, in epochs. " + recipe_values("warmup_epochs"))
@click.option("--mixing/--no-mixing", default=None,
              help="The mixing stage (CutMix and/or MixUp, as the flags below say) on, or off (the no-mix baseline: "
                   "one-hot targets, smoothed by --label-smoothing). " + recipe_values("mixing"))
@mixing_options(use_defaults=False, help_suffix=lambda name: " " + recipe_values(name))
@click.option("--mix-off-epoch", type=int, default=None, metavar="N",
              help="Mix epochs 1..N only (epochs count from 1, as in metrics.jsonl): from epoch N+1 on the targets "
                   "are plain, smoothed one-hots, in the same run and data stream (a resumed run keeps the "
                   "schedule). The same N as timm's --mixup-off-epoch N. "
                   + recipe_values("mix_off_epoch"))
@click.option("--amp", type=click.Choice(AMP_MODES), default=None,
              help="Autocast dtype; fp16 adds a gradient scaler. [default: auto = bf16 on GPU, off on CPU]")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory format. [default: on]")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the model. [default: off]")
@click.option("--workers", type=int, default=None,
              help="DALI threads per rank. [default: CPU cores / processes on this node, at most 8]")
@click.option("--seed", type=SEED, default=None,
              help="Seed of the weights, the data order and every augmentation. [default: 0]")
@click.option("--gpus", type=int, default=None,
              help="Processes on this node, one per GPU (DDP over NCCL); 0 = CPU. [default: every GPU present, "
                   "0 without one]")
@click.option("--cpu-procs", type=int, default=None,
              help="CPU ranks on this node (DDP over gloo) when --gpus is 0. [default: 1]")
@click.option("--nnodes", type=int, default=None, help="Nodes taking part (run the command on each). [default: 1]")
@click.option("--node-rank", type=int, default=None, help="This node's index, 0 .. nnodes-1. [default: 0]")
@click.option("--master-addr", default=None,
              help="Address of node 0, reachable from every node (needed with --nnodes > 1). [default: 127.0.0.1]")
@click.option("--master-port", type=int, default=None,
              help="Port on node 0 for the rendezvous. [default: a free port on one node, 29500 on several]")
@click.option("--resume", default=None, metavar="auto|PATH",
              help="Continue a run: 'auto' = OUTPUT/last.pt if it exists (else start fresh), a run folder (its "
                   "last.pt; the run continues there unless --output is given), or a checkpoint file. Restores "
                   "weights, optimizer, schedule, epoch, each rank's DALI data stream and the run's settings: flags "
                   "given again change --epochs, --lr, the schedule, the mixing values, validation, processes and "
                   "logging; the model, data, batch, optimizer, seed and augmentation stay as they were.")
@click.option("--save-every", type=int, default=None,
              help="Also keep OUTPUT/epoch_NNNN.pt every N epochs (last.pt and best.pt are always written). "
                   "[default: 0 = never]")
@click.option("--checkpoint-steps", type=int, default=None, metavar="N",
              help="Also write OUTPUT/last.pt every N steps inside an epoch (model, optimizer, schedule, RNGs, each "
                   "rank's DALI state, the step and the epoch's running metrics): --resume auto continues at that "
                   "step, bit-identically on the CPU. [default: at the end of each epoch only]")
@click.option("--checkpoint-minutes", type=float, default=None, metavar="M",
              help="Also write OUTPUT/last.pt inside an epoch once M minutes have passed since the last checkpoint "
                   "(rank 0's clock decides, all ranks at the same step). [default: never]")
@click.option("--log-every", type=int, default=None,
              help="When stderr is not a terminal: a progress line every N steps. [default: 0 = every 30 s]")
@click.option("--deterministic", is_flag=True, default=None,
              help="Deterministic kernels on the GPU too (slower; always on for the CPU). [default: off]")
def train(compile_, **options):
    """Train an image classifier on ImageNet with CutMix (and MixUp) inside the DALI pipeline.

    \b
    dali-cutmix train                                    # demo: about 2 minutes on a 2-core CPU
    dali-cutmix train --data /imagenet --gpus 8          # the paper's ResNet-50 recipe on 8 GPUs
    dali-cutmix train --data /imagenet --gpus 8 --recipe torchvision-v2 --mix-off-epoch 590
    dali-cutmix train --data /imagenet --output runs/r50 --resume auto
    dali-cutmix train --resume runs/r50 --epochs 400      # that run, its settings kept, on to epoch 400
    """
    from dali_cutmix.train.launch import Interrupted, launch
    from dali_cutmix.train.preempt import PREEMPTED_EXIT, Preempted
    from dali_cutmix.train.resume import resolve_run

    show_progress()  # a cold first use says what it builds
    options["compile"] = compile_  # every option defaults to None: None = not given (the recipe's, or on
    try:                           # --resume the run's own value)
        cfg, notes = resolve_run(options)
        launch(cfg, notes, recipe_given=options.get("recipe") is not None)
    except Interrupted as e:  # Ctrl-C: the last line says how to continue
        click.echo(e.line, err=True)
        raise click.exceptions.Exit(130) from None
    except Preempted as e:  # SIGTERM / SIGUSR1: the checkpoint is written
        click.echo(e.line, err=True)
        raise click.exceptions.Exit(PREEMPTED_EXIT) from None
