"""How an options dataclass (:class:`~dali_cutmix.options.MixOptions`,
:class:`~dali_cutmix.augment_options.AugmentOptions`) reports a bad value: an :class:`OptionError` whose message
names each option the way the caller's users know it, and the checks every options class makes of a mapping."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Type, TypeVar

from .errors import UserError

T = TypeVar("T")


class OptionError(UserError):
    """An option out of range. The message is a ``str.format`` template whose ``{name}`` fields stand for the
    fields of :meth:`options` (a dataclass): ``str()`` names them as the dataclass does; :meth:`render` names them
    as a caller's users know them (``--cutmix-alpha`` on the command line, ``alpha`` in a function's signature)."""

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.render())

    @classmethod
    def options(cls) -> type:
        """The options dataclass whose fields the templates name."""
        raise NotImplementedError

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with every option called ``name(option)``."""
        return self.template.format_map({f.name: name(f.name) for f in dataclasses.fields(self.options())})


def quote(value: Any) -> str:
    """``repr(value)`` safe inside an :class:`OptionError` template."""
    return repr(value).replace("{", "{{").replace("}", "}}")


def from_mapping(cls: Type[T], value: Mapping[str, Any], error: Type[OptionError], kind: str) -> T:
    """``cls(**value)``, or ``error`` naming the keys of ``value`` that are not fields of ``cls`` (``kind``: what
    the options are, "mixing" or "augmentation")."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise error(f"unknown {kind} option(s) {quote(unknown)}; the options are: {', '.join(names)}")
    return cls(**value)
