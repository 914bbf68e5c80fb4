"""The mixing options as command-line flags, made from :class:`dali_cutmix.MixOptions`' fields: one flag per
option, named ``--`` + the field's name, with its help; the same in every command."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional

import click

from dali_cutmix.errors import UserError
from dali_cutmix.options import MODES, MixOptionError, MixOptions, flag_name

FIELDS = tuple(f.name for f in dataclasses.fields(MixOptions))


def _minmax(ctx, param, value):
    """``LO,HI`` -> (lo, hi); ``none`` -> the string "none" (a recipe's value set back to None)."""
    if value is None or str(value).lower() == "none":
        return value if value is None else "none"
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected LO,HI such as 0.2,0.8, or none; got {value!r}") from None
    return lo, hi


def _click_type(f: dataclasses.Field):
    if f.name == "mode":  # checked by MixOptions, so that a bad value is one line naming the flag
        return dict(type=str, metavar="|".join(MODES))
    if f.name == "cutmix_minmax":
        return dict(callback=_minmax, metavar="LO,HI|none")
    return dict(type=float)


def mixing_options(*, defaults: Optional[Mapping[str, Any]] = None, use_defaults: bool = True,
                   help_suffix: Callable[[str], str] = lambda name: ""):
    """A decorator adding one click option per :class:`MixOptions` field to a command.

    ``defaults`` overrides some fields' defaults (e.g. ``mode="elem"`` for ``preview``); with ``use_defaults``
    False every flag defaults to None ("not given": the trainer's recipe fills it in). ``help_suffix(name)`` is
    appended to each flag's help (the trainer lists the recipes' values there). Booleans are ``--x/--no-x``.
    """
    defaults = dict(defaults or {})

    def decorate(command):
        for f in reversed(dataclasses.fields(MixOptions)):
            default = defaults.get(f.name, f.default) if use_defaults else None
            help_text = f.metadata["help"] + help_suffix(f.name)
            if f.type in ("bool", bool):
                flag = flag_name(f.name)
                decorator = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=default,
                                         show_default=use_defaults, help=help_text)
            else:
                shown = use_defaults and default is not None
                kwargs = _click_type(f)
                if f.name == "cutmix_minmax" and default is not None:
                    default = ",".join(f"{v:g}" for v in default)
                decorator = click.option(flag_name(f.name), f.name, default=default, show_default=shown,
                                         help=help_text, **kwargs)
            command = decorator(command)
        return command

    return decorate


def pop_mix_options(params: Dict[str, Any]) -> Dict[str, Any]:
    """Take the mixing flags out of a command's ``params`` (in place); returns those that were given."""
    return {name: value for name in FIELDS if (value := params.pop(name, None)) is not None}


def build_mix_options(given: Mapping[str, Any]) -> MixOptions:
    """:class:`MixOptions` from the flags' values (``none`` for ``--cutmix-minmax`` means None).

    Raises:
        UserError: a value out of range, naming the flag (one line, exit code 2).
    """
    values = {k: (None if v == "none" else v) for k, v in given.items()}
    try:
        return MixOptions.coerce(values)
    except MixOptionError as e:
        raise UserError(e.render(flag_name)) from None
