"""The augmentation options as command-line flags, made from :class:`dali_cutmix.AugmentOptions`' fields: ``--augment
PRESET`` picks a preset (:data:`dali_cutmix.augment_options.PRESETS`) and one flag per option, named ``--`` + the
field's name with its help, overrides it; the same in every command."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

import click

from dali_cutmix.augment_options import (AUTO_AUGMENTS, ERASE_MODES, PRESETS, AugmentOptionError, AugmentOptions)
from dali_cutmix.errors import UserError
from dali_cutmix.options import flag_name

FIELDS = tuple(f.name for f in dataclasses.fields(AugmentOptions))
#: The preset flag's name in a command's params.
PRESET = "augment"


def _pair(ctx, param, value):
    """``LO,HI`` -> (lo, hi)."""
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected LO,HI such as 0.02,0.33; got {value!r}") from None
    return lo, hi


def _click_type(f: dataclasses.Field) -> dict:
    # Choices are checked by AugmentOptions, so that a bad value is one line naming the flag.
    if f.name == "auto_augment":
        return dict(type=str, metavar="|".join(AUTO_AUGMENTS))
    if f.name == "erase_mode":
        return dict(type=str, metavar="|".join(ERASE_MODES))
    if f.name in ("erase_scale", "erase_ratio"):
        return dict(callback=_pair, metavar="LO,HI")
    if f.name == "rand_augment_ops":
        return dict(type=int)
    return dict(type=float)


def augment_options(*, default_preset: Optional[str] = "none", preset_help_suffix: str = ""):
    """A decorator adding ``--augment PRESET`` (default ``default_preset``; None: "not given", a caller's recipe
    fills it in; ``preset_help_suffix`` ends its help) and one click option per :class:`AugmentOptions` field, each
    defaulting to None (the preset's value), to a command."""

    def decorate(command):
        for f in reversed(dataclasses.fields(AugmentOptions)):
            command = click.option(flag_name(f.name), f.name, default=None,
                                   help=f.metadata["help"] + " Default: the --augment preset's.",
                                   **_click_type(f))(command)
        preset_help = ("Per-image augmentation before mixing, as a recipe's source trains: "
                       + "; ".join(f"'{name}'" for name in PRESETS) + ". The flags below change single options."
                       + preset_help_suffix)
        return click.option("--augment", PRESET, type=click.Choice(list(PRESETS)), default=default_preset,
                            show_default=default_preset is not None, help=preset_help)(command)

    return decorate


def pop_augment_options(params: Dict[str, Any]) -> Dict[str, Any]:
    """Take the augmentation flags out of a command's ``params`` (in place); returns those that were given (the
    preset under ``"augment"``)."""
    return {name: value for name in (PRESET,) + FIELDS if (value := params.pop(name, None)) is not None}


def build_augment_options(given: Mapping[str, Any], preset: Optional[str] = None) -> AugmentOptions:
    """:class:`AugmentOptions`: the preset ``given["augment"]`` (else ``preset``, else "none") with the given
    options' flags applied.

    Raises:
        UserError: a value out of range, naming the flag (one line, exit code 2).
    """
    values = dict(given)
    name = values.pop(PRESET, None) or preset or "none"
    try:
        return AugmentOptions.coerce(name).replace(**values)
    except AugmentOptionError as e:
        raise UserError(e.render(flag_name)) from None
