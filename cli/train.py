"""``dali-cutmix train``: train a torchvision classifier (ResNet-50 by default) on ImageNet with CutMix in DALI.

Options left out take the recipe's value: ``--recipe paper`` (the default with ``--data``), ``deit``,
``torchvision-v2``, or ``demo`` (the default without ``--data``: the embedded demo dataset). The recipe values in
the help below are checked against ``train.recipe`` by the tests.
"""

from __future__ import annotations

import click


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


def _recipes(paper, deit, tv2, demo) -> str:
    return f"[paper: {paper}; deit: {deit}; torchvision-v2: {tv2}; demo: {demo}]"


@click.command(context_settings={"max_content_width": 110})
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="ImageNet-layout root: DATA/train/<class>/*.JPEG and DATA/val/<class>/*.JPEG (the same class "
                   "folders). Default: the embedded demo dataset (6 classes, generated on first use).")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Run folder: metrics.jsonl, last.pt, best.pt, run.json, ranks.json. [default: runs/<timestamp>]")
@click.option("--recipe", type=click.Choice(["paper", "deit", "torchvision-v2", "demo"]), default=None,
              help="Defaults for every setting below: 'paper' = the CutMix paper's ImageNet ResNet-50 settings, "
                   "'deit' = DeiT's (facebookresearch/deit main.py: ViT-B/16, AdamW, MixUp + CutMix), "
                   "'torchvision-v2' = torchvision's ResNet-50 IMAGENET1K_V2 recipe, 'demo' = small and fast "
                   "(the README's Training section lists each value and its source). [default: paper with --data, demo without]")
@click.option("--arch", default=None, help="Any torchvision classification model by name. "
              + _recipes("resnet50", "vit_b_16", "resnet50", "resnet18"))
@click.option("--zero-init-residual/--no-zero-init-residual", default=None,
              help="ResNets: start each residual branch at zero (identity blocks). "
                   + _recipes("off", "off", "off", "on"))
@click.option("--crop", type=int, default=None, help="Training crop, pixels (and the validation centre crop "
              "unless --val-crop is set). " + _recipes(224, 224, 176, 48))
@click.option("--val-crop", type=int, default=None,
              help="Validation centre crop, pixels (none: = --crop). " + _recipes("none", "none", 224, "none"))
@click.option("--val-resize", type=int, default=None,
              help="Validation: shorter side resized to this before the centre crop. [default: paper, deit: 256; "
                   "torchvision-v2: 232; demo: 55; val crop * 256/224 when --crop / --val-crop changes it]")
@click.option("--min-area", type=float, default=None,
              help="Random-resized-crop: smallest crop, as a share of the image area. "
                   + _recipes(0.08, 0.08, 0.08, 0.25))
@click.option("--epochs", type=int, default=None, help="Epochs. " + _recipes(300, 300, 600, 12))
@click.option("--batch-size", type=int, default=None,
              help="Global batch (split evenly over all ranks). " + _recipes(256, 1024, 1024, 32))
@click.option("--lr", type=float, default=None,
              help="Peak learning rate for the global batch. [default: 0.1 x batch/256 (paper); "
                   "2.5e-4 x batch/256 = 5e-4 x batch/512 (deit); 0.125 x batch/256 = 0.5 at 1024 (torchvision-v2); "
                   "0.8 x batch/256 (demo)]")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None,
              help="'sgd' (with --momentum, --nesterov) or 'adamw' (betas 0.9/0.999, eps 1e-8, decoupled weight "
                   "decay). " + _recipes("sgd", "adamw", "sgd", "sgd"))
@click.option("--momentum", type=float, default=None,
              help="SGD momentum (not used by AdamW). " + _recipes(0.9, 0.9, 0.9, 0.9))
@click.option("--nesterov/--no-nesterov", default=None,
              help="SGD: Nesterov momentum. " + _recipes("on", "off", "off", "on"))
@click.option("--weight-decay", type=float, default=None,
              help="Weight decay (every parameter the three flags below do not cover). "
                   + _recipes("1e-4", 0.05, "2e-5", "5e-4"))
@click.option("--norm-weight-decay", callback=_optional_float, default=None, metavar="FLOAT|none",
              help="Weight decay of normalization layers (BatchNorm, LayerNorm, ...; none: --weight-decay). "
                   + _recipes("none", 0.0, 0.0, "none"))
@click.option("--bias-weight-decay", callback=_optional_float, default=None, metavar="FLOAT|none",
              help="Weight decay of biases, norm layers' included (none: as the rest of their layer). "
                   + _recipes("none", 0.0, "none", "none"))
@click.option("--transformer-embedding-decay", callback=_optional_float, default=None, metavar="FLOAT|none",
              help="Weight decay of ViT class tokens and position embeddings, Swin relative position biases "
                   "(none: --weight-decay). " + _recipes("none", 0.0, "none", "none"))
@click.option("--schedule", type=click.Choice(["step", "cosine"]), default=None,
              help="lr schedule: 'step' (x lr-gamma at each milestone) or 'cosine' (to 0). "
                   + _recipes("step", "cosine", "cosine", "cosine"))
@click.option("--milestones", callback=_milestones, default=None, metavar="E1,E2,..",
              help="Epochs where the step schedule multiplies lr by --lr-gamma. "
                   + _recipes("75,150,225", "none", "none", "none"))
@click.option("--lr-gamma", type=float, default=None,
              help="Step schedule factor. " + _recipes(0.1, 0.1, 0.1, 0.1))
@click.option("--warmup-epochs", type=float, default=None,
              help="Linear lr warmup from ~0, in epochs. " + _recipes(0, 5, 5, 1))
@click.option("--cutmix/--no-cutmix", default=None,
              help="The mixing stage (CutMix and/or MixUp) on, or off (the no-mix baseline: plain, smoothed "
                   "one-hot targets). " + _recipes("on", "on", "on", "on"))
@click.option("--cutmix-alpha", "--alpha", "cutmix_alpha", type=float, default=None,
              help="CutMix: lam ~ Beta(alpha, alpha); 0 turns CutMix off (then --mixup-alpha must be > 0). "
                   "--alpha is the former name. " + _recipes(1.0, 1.0, 1.0, 1.0))
@click.option("--mixup-alpha", type=float, default=None,
              help="MixUp: lam ~ Beta(alpha, alpha), pixels lam * own + (1 - lam) * partner; 0 turns MixUp off. "
                   + _recipes(0.0, 0.8, 0.2, 0.0))
@click.option("--switch-prob", type=float, default=None,
              help="With both CutMix and MixUp on: probability that a draw uses CutMix (else MixUp). "
                   + _recipes(0.5, 0.5, 0.5, 0.5))
@click.option("--prob", type=float, default=None,
              help="Probability of mixing at all (per batch, sample or pair, by --mix-mode). "
                   + _recipes(1.0, 1.0, 1.0, 0.5))
@click.option("--mix-mode", "--mode", "mix_mode", type=click.Choice(["batch", "elem", "pair"]), default=None,
              help="One draw (coin, method, lam, box) per batch (official CutMix, DeiT, torchvision), per sample "
                   "('elem'), or per pair of samples that swap regions ('pair'). --mode is the former name. "
                   + _recipes("batch", "batch", "batch", "elem"))
@click.option("--label-smoothing", type=float, default=None,
              help="Label smoothing eps, applied to each one-hot before mixing. " + _recipes(0.0, 0.1, 0.1, 0.0))
@click.option("--mix-off-epoch", type=int, default=None, metavar="E",
              help="Turn mixing off from epoch E on (epochs count from 1, as in metrics.jsonl: E is the first "
                   "unmixed epoch): the targets become plain, smoothed one-hots, in the same run and data stream "
                   "(a resumed run keeps the schedule). timm's --mixup-off-epoch E is E + 1 here. "
                   + _recipes("none", "none", "none", "none"))
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default=None,
              help="Autocast dtype; fp16 adds a gradient scaler. [default: auto = bf16 on GPU, off on CPU]")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory format. [default: on]")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the model. [default: off]")
@click.option("--workers", type=int, default=None,
              help="DALI threads per rank. [default: CPU cores / processes on this node, at most 8]")
@click.option("--seed", type=int, default=None,
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
              help="Continue a run: 'auto' = OUTPUT/last.pt if it exists (else start fresh), or a checkpoint "
                   "file. Restores weights, optimizer, schedule, epoch and each rank's DALI data stream.")
@click.option("--save-every", type=int, default=None,
              help="Also keep OUTPUT/epoch_NNNN.pt every N epochs (last.pt and best.pt are always written). "
                   "[default: 0 = never]")
@click.option("--log-every", type=int, default=None,
              help="When stderr is not a terminal: a progress line every N steps. [default: 0 = every 30 s]")
@click.option("--deterministic", is_flag=True, default=None,
              help="Deterministic kernels on the GPU too (slower; always on for the CPU). [default: off]")
def train(compile_, **options):
    """Train an image classifier on ImageNet with CutMix (and MixUp) inside the DALI pipeline.

    \b
    dali-cutmix train                                    # demo: about 2 minutes on a 2-core CPU
    dali-cutmix train --data /imagenet --gpus 8          # the paper's ResNet-50 recipe on 8 GPUs
    dali-cutmix train --data /imagenet --gpus 8 --recipe torchvision-v2 --mix-off-epoch 591
    dali-cutmix train --data /imagenet --output runs/r50 --resume auto
    """
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.launch import launch

    options["compile"] = compile_
    launch(resolve_config(options))
