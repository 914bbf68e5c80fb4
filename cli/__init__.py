"""The ``dali-cutmix`` command line: ``preview``, ``train``, ``profile``, ``doctor`` (and ``scan``, ``shard``).

Errors a user can cause (:class:`dali_cutmix.errors.UserError`: a bad flag or value, a bad path, an unreadable
file) become one line on stderr and exit code 2, click's usage errors included. Anything else is a bug: its
traceback is shown and saved, and the command exits with code 1. ``--debug`` (or ``DALI_CUTMIX_DEBUG=1``) shows the
traceback of a user error too.
The CLI is the top layer: it may import everything (core, ``dali_cutmix.pipelines``, ``dali_cutmix.train``,
``dali_cutmix.profiler``), and nothing imports it.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from dali_cutmix.errors import DEBUG_ENV, UserError, debugging

#: The exit code of a bug (an exception that is not a UserError); a user error exits with 2.
BUG_EXIT = 1


def _debug(ctx, param, value):
    if value:
        os.environ[DEBUG_ENV] = "1"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dali-cutmix")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_debug,
              help=f"Show the traceback of a user error too (as {DEBUG_ENV}=1 does).")
def cli():
    """CutMix inside NVIDIA DALI pipelines: preview it, train with it, profile it, check the machine."""


def _register():
    """Attach the commands (their modules import nothing heavy; each command imports its work when it runs)."""
    from .doctor import doctor
    from .preview import preview
    from .profile import profile
    from .scan import scan
    from .shard import shard
    from .train import train

    for command in (preview, train, profile, doctor, scan, shard):
        cli.add_command(command)


def _save_traceback(text: str):
    """Write a bug's traceback under the cache folder's ``crashes/``; its path, or None when it cannot be written."""
    import tempfile
    import time

    from dali_cutmix.helpers.host import cache_dir

    try:
        folder = cache_dir() / "crashes"
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), suffix=".log", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(" ".join(sys.argv) + "\n\n" + text)
        return path
    except OSError:
        return None


def report_bug(error: BaseException) -> int:
    """Show a bug's traceback on stderr, save it, and say in the last line that it is a bug and where the log is;
    returns :data:`BUG_EXIT`."""
    text = "".join(traceback.format_exception(error))
    click.echo(text.rstrip(), err=True)
    saved = _save_traceback(text)
    where = f"; the traceback above is saved in {saved}" if saved else ""
    click.echo(f"bug: dali-cutmix stopped on an unexpected {type(error).__name__}, not on a problem with your input"
               f"{where}. Please report it with the command line and that traceback.", err=True)
    return BUG_EXIT


def main(argv=None) -> int:
    """Console entry point: runs the CLI and returns its exit code. Errors a user causes (a
    :class:`~dali_cutmix.errors.UserError`, click's usage errors) are one line on stderr, ``error: ...``, and exit
    code 2; any other exception is a bug (:func:`report_bug`, exit code 1); a command may end with its own code
    (``ctx.exit(1)``)."""
    _register()
    try:
        result = cli.main(args=argv, prog_name="dali-cutmix", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx is not None else "dali-cutmix"
        click.echo(f"error: {e.format_message()} ({command} --help lists the options)", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return 2 if e.exit_code == 2 else e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except UserError as e:
        if debugging():
            click.echo("".join(traceback.format_exception(e)).rstrip(), err=True)
        click.echo(f"error: {e}", err=True)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: shown whole, never as a user error
        return report_bug(e)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
