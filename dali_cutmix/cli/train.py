"""``dali-cutmix train``: train a torchvision classifier (ResNet-50 by default) on ImageNet with CutMix in DALI.

Options left out take the recipe's value: ``--recipe paper`` (the default with ``--data``) or ``--recipe demo``
(the default without it: the embedded demo dataset). The recipe values in the help below are checked against
``train.recipe`` by the tests.
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


RECIPE_HELP = "[paper: {paper}; demo: {demo}]"


@click.command(context_settings={"max_content_width": 110})
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="ImageNet-layout root: DATA/train/<class>/*.JPEG and DATA/val/<class>/*.JPEG (the same class "
                   "folders). Default: the embedded demo dataset (6 classes, generated on first use).")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Run folder: metrics.jsonl, last.pt, best.pt, run.json, ranks.json. [default: runs/<timestamp>]")
@click.option("--recipe", type=click.Choice(["paper", "demo"]), default=None,
              help="Defaults for every setting below: 'paper' = the CutMix paper's ImageNet ResNet-50 settings, "
                   "'demo' = small and fast. [default: paper with --data, demo without]")
@click.option("--arch", default=None, help="Any torchvision classification model by name. "
              + RECIPE_HELP.format(paper="resnet50", demo="resnet18"))
@click.option("--zero-init-residual/--no-zero-init-residual", default=None,
              help="ResNets: start each residual branch at zero (identity blocks). "
                   + RECIPE_HELP.format(paper="off", demo="on"))
@click.option("--crop", type=int, default=None, help="Training crop and validation centre crop, pixels. "
              + RECIPE_HELP.format(paper=224, demo=48))
@click.option("--val-resize", type=int, default=None,
              help="Validation: shorter side resized to this before the centre crop. [default: crop * 256/224]")
@click.option("--min-area", type=float, default=None,
              help="Random-resized-crop: smallest crop, as a share of the image area. "
                   + RECIPE_HELP.format(paper=0.08, demo=0.25))
@click.option("--epochs", type=int, default=None, help="Epochs. " + RECIPE_HELP.format(paper=300, demo=12))
@click.option("--batch-size", type=int, default=None,
              help="Global batch (split evenly over all ranks). " + RECIPE_HELP.format(paper=256, demo=32))
@click.option("--lr", type=float, default=None,
              help="Peak learning rate for the global batch. [default: 0.1 x batch/256 (paper); "
                   "0.8 x batch/256 (demo)]")
@click.option("--momentum", type=float, default=None, help="SGD momentum. " + RECIPE_HELP.format(paper=0.9, demo=0.9))
@click.option("--nesterov/--no-nesterov", default=None,
              help="Nesterov momentum. " + RECIPE_HELP.format(paper="on", demo="on"))
@click.option("--weight-decay", type=float, default=None,
              help="Weight decay (all parameters). " + RECIPE_HELP.format(paper="1e-4", demo="5e-4"))
@click.option("--schedule", type=click.Choice(["step", "cosine"]), default=None,
              help="lr schedule: 'step' (x lr-gamma at each milestone) or 'cosine' (to 0). "
                   + RECIPE_HELP.format(paper="step", demo="cosine"))
@click.option("--milestones", callback=_milestones, default=None, metavar="E1,E2,..",
              help="Epochs where the step schedule multiplies lr by --lr-gamma. "
                   + RECIPE_HELP.format(paper="75,150,225", demo="none"))
@click.option("--lr-gamma", type=float, default=None,
              help="Step schedule factor. " + RECIPE_HELP.format(paper=0.1, demo=0.1))
@click.option("--warmup-epochs", type=float, default=None,
              help="Linear lr warmup from ~0, in epochs. " + RECIPE_HELP.format(paper=0, demo=1))
@click.option("--cutmix/--no-cutmix", default=None,
              help="CutMix on, or off (the no-mix baseline). " + RECIPE_HELP.format(paper="on", demo="on"))
@click.option("--alpha", type=float, default=None,
              help="CutMix: lam ~ Beta(alpha, alpha). " + RECIPE_HELP.format(paper=1.0, demo=1.0))
@click.option("--prob", type=float, default=None,
              help="CutMix: probability of mixing (per batch or per sample). "
                   + RECIPE_HELP.format(paper=1.0, demo=0.5))
@click.option("--mode", type=click.Choice(["batch", "elem"]), default=None,
              help="CutMix: one box per batch (official) or one per sample. "
                   + RECIPE_HELP.format(paper="batch", demo="elem"))
@click.option("--label-smoothing", type=float, default=None,
              help="Label smoothing eps, applied before mixing. " + RECIPE_HELP.format(paper=0.0, demo=0.0))
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
    """Train an image classifier on ImageNet with CutMix inside the DALI pipeline.

    \b
    dali-cutmix train                                    # demo: about 2 minutes on a 2-core CPU
    dali-cutmix train --data /imagenet --gpus 8          # the paper's ResNet-50 recipe on 8 GPUs
    dali-cutmix train --data /imagenet --output runs/r50 --resume auto
    """
    from train.config import resolve_config
    from train.launch import launch

    options["compile"] = compile_
    launch(resolve_config(options))
