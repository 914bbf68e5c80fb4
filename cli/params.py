"""Flags and checks the commands share: ``--seed``, output paths checked before any work, ``--device``, and the
progress lines a cold first use prints (the native operators' build).

Nothing here imports DALI or torch at import time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import click

from dali_cutmix.errors import UserError


class SeedType(click.ParamType):
    """A run seed: an integer in ``[0, dali_cutmix.builder.MAX_SEED]``, checked by
    :func:`dali_cutmix.builder.check_seed` under the flag's name, as the user typed it."""

    name = "seed"

    def get_metavar(self, param, *args, **kwargs):  # click 8.2 passes ctx too
        return "INTEGER"

    def convert(self, value, param, ctx):
        from dali_cutmix.builder import check_seed

        flag = param.opts[0] if param is not None and param.opts else "--seed"
        if isinstance(value, bool):
            self.fail(f"expected an integer, got {value!r}", param, ctx)
        if not isinstance(value, int):
            try:
                value = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"expected an integer, got {value!r}", param, ctx)
        try:
            return check_seed(value, flag)
        except UserError as e:
            raise click.UsageError(str(e), ctx=ctx) from None


SEED = SeedType()


def seed_option(help_text: str = "Random seed; the same seed gives the same batches."):
    """``--seed`` (default 0) as every command takes it."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=help_text)


def check_output(flag: str, path) -> Path:
    """``path`` as a Path if the command can write a file there (:func:`dali_cutmix.helpers.atomic.check_writable`: its
    folder exists, is a folder and takes a new file; ``path`` is not a folder), checked before any work.

    Raises:
        UserError: one line naming ``flag`` and the folder or file at fault.
    """
    from dali_cutmix.helpers.atomic import check_writable

    try:
        return check_writable(path)
    except UserError as e:
        raise UserError(f"{flag}: {e}") from None


def check_outputs(**paths) -> dict:
    """:func:`check_output` of each ``flag=path`` (flags spelled ``json`` -> ``--json``); refuses two flags that
    name the same file. Returns ``{flag: Path}``."""
    checked = {}
    for name, path in paths.items():
        flag = "--" + name.replace("_", "-")
        path = check_output(flag, path)
        for other, seen in checked.items():
            if seen.resolve() == path.resolve():
                raise UserError(f"{other} and {flag} name the same file {str(path)!r}")
        checked[flag] = path
    return checked


def cache_error(what: str, error: OSError) -> UserError:
    """One line for ``error``, met while writing ``what`` (say, "the demo dataset") into the cache folder."""
    from dali_cutmix.helpers.host import cache_dir

    return UserError(f"cannot write {what} into the cache folder {str(cache_dir())!r}: "
                     f"{error.strerror or error} (set DALI_CUTMIX_CACHE to a writable folder)")


def resolve_device(device: Optional[str]) -> str:
    """``device`` as given, or "gpu" when CUDA is available else "cpu" (None); refuses "gpu" without CUDA, in one
    line, before DALI tries (and prints its own noise)."""
    import warnings

    import torch

    with warnings.catch_warnings():  # a broken driver makes torch warn over several lines; the answer is enough
        warnings.simplefilter("ignore")
        cuda = torch.cuda.is_available()
    if device is None:
        return "gpu" if cuda else "cpu"
    if device == "gpu" and not cuda:
        raise UserError("--device gpu: no CUDA GPU is available on this machine (use --device cpu; "
                        "`dali-cutmix doctor` says why)")
    return device


class _StderrLines(logging.Handler):
    def emit(self, record):
        click.echo(self.format(record), err=True)


def show_progress() -> None:
    """Print the library's progress lines (logger ``dali_cutmix``, level INFO: the native operators' first build)
    on stderr, one line each, until the running command ends (its click context closes)."""
    logger = logging.getLogger("dali_cutmix")
    if any(isinstance(h, _StderrLines) for h in logger.handlers):
        return
    handler, level = _StderrLines(), logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)

    def restore():
        logger.removeHandler(handler)
        logger.setLevel(level)

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(restore)
