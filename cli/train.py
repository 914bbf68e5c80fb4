"""``dali-cutmix train``: train a torchvision classifier (ResNet-50 by default) on ImageNet with CutMix in DALI.

Options left out take the recipe's value: ``--recipe paper`` (the default with ``--data``), ``deit``,
``torchvision-v2``, or ``demo`` (the default without ``--data``: the embedded demo dataset). Every flag is made from
a :class:`dali_cutmix.train.config.TrainConfig` field (its help, its choices, on/off for a switch, ``none`` for a
nullable setting), and a recipe setting's help lists each recipe's value, made from
:data:`dali_cutmix.train.recipe.RECIPES`; the mixing flags come from :class:`dali_cutmix.MixOptions` as in every
command. The flags' values go as they are to :func:`dali_cutmix.train.checkpoint.resolve_run`, which applies and
checks them (with ``--resume``, over the run's own settings).
"""

from __future__ import annotations

import dataclasses

import click

from dali_cutmix.train.config import TrainConfig, shown
from dali_cutmix.train.recipe import RECIPES

from .augmenting import augment_options
from .mixing import mixing_options
from .params import show_progress


def _milestones(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated epochs like 75,150,225, got {value!r}") from None


def _optional_number(kind):
    """``none`` (any case) for "not set" in flags whose recipe value may be None (it then follows another flag):
    the string "none", which :func:`dali_cutmix.train.config.resolve_config` makes None over the recipe's value."""
    def convert(ctx, param, value):
        if value is None:
            return None
        if str(value).lower() == "none":
            return "none"
        try:
            return kind(value)
        except ValueError:
            raise click.BadParameter(f"expected a number or 'none', got {value!r}") from None
    return convert


def recipe_values(key: str, lead: str = "") -> str:
    """``[paper: V; deit: V; torchvision-v2: V; demo: V]``: each recipe's value of ``key``, for a flag's help."""
    return "[" + lead + "; ".join(f"{name}: {shown(recipe[key])}" for name, recipe in RECIPES.items()) + "]"


def _flag(f: dataclasses.Field):
    """The click option of the TrainConfig field ``f`` (every default None: "not given")."""
    meta, flag = f.metadata, "--" + f.name.replace("_", "-")
    help_text = meta["help"]
    if meta["recipe"]:
        help_text += " " + recipe_values(f.name)
    elif meta["recipe_values"]:
        help_text += " " + recipe_values(*meta["recipe_values"])
    kwargs = dict(default=None, help=help_text)
    kind = f.type.replace("Optional[", "").rstrip("]")
    if kind == "bool":
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, **kwargs)
    if meta["choices"]:  # checked by TrainConfig, as every value: one line naming the flag
        kwargs.update(type=str, metavar="|".join(meta["choices"]))
    elif f.name == "milestones":
        kwargs.update(callback=_milestones)
    elif meta["nullable"] and kind in ("int", "float"):
        kwargs.update(callback=_optional_number(int if kind == "int" else float),
                      metavar=meta["metavar"] or f"{kind.upper()}|none")
    elif kind in ("int", "float"):
        kwargs.update(type=int if kind == "int" else float)
    if meta["metavar"] and "metavar" not in kwargs:
        kwargs.update(metavar=meta["metavar"])
    return click.option(flag, f.name, **kwargs)


def train_options(command):
    """One click option per :class:`TrainConfig` field that has a flag, in the fields' order, the mixing options
    (:func:`cli.mixing.mixing_options`) in the place of ``mix`` and the augmentation's (:func:`cli.augmenting.
    augment_options`: ``--augment PRESET``, the recipe's by default, and one flag per option) in that of
    ``augment``."""
    for f in reversed(dataclasses.fields(TrainConfig)):
        if f.name == "mix":
            command = mixing_options(use_defaults=False, help_suffix=lambda name: " " + recipe_values(name))(command)
        elif f.name == "augment":
            command = augment_options(default_preset=None, preset_help_suffix=" " + recipe_values("augment"))(command)
        elif f.metadata["flag"]:
            command = _flag(f)(command)
    return command


@click.command(context_settings={"max_content_width": 110})
@train_options
def train(**options):
    """Train an image classifier on ImageNet with CutMix (and MixUp) inside the DALI pipeline.

    \b
    dali-cutmix train                                    # demo: about 2 minutes on a 2-core CPU
    dali-cutmix train --data /imagenet --gpus 8          # the paper's ResNet-50 recipe on 8 GPUs
    dali-cutmix train --data /imagenet --gpus 8 --recipe torchvision-v2 --mix-off-epoch 590
    dali-cutmix train --data /imagenet --output runs/r50 --resume auto
    dali-cutmix train --resume runs/r50 --epochs 400      # that run, its settings kept, on to epoch 400
    """
    from dali_cutmix.train.checkpoint import resolve_run
    from dali_cutmix.train.launch import Interrupted, launch
    from dali_cutmix.train.preempt import PREEMPTED_EXIT, Preempted

    show_progress()  # a cold first use says what it builds
    try:  # every option defaults to None: not given (the recipe's value, or on --resume the run's own)
        cfg, notes, checkpoint = resolve_run(options)
        launch(cfg, notes, checkpoint=checkpoint, recipe_given=options.get("recipe") is not None)
    except Interrupted as e:  # Ctrl-C: the last line says how to continue
        click.echo(e.line, err=True)
        raise click.exceptions.Exit(130) from None
    except Preempted as e:  # SIGTERM / SIGUSR1: the checkpoint is written
        click.echo(e.line, err=True)
        raise click.exceptions.Exit(PREEMPTED_EXIT) from None
