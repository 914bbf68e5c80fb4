"""The ``dali-cutmix`` command line: ``preview``, ``train``, ``profile``, ``doctor`` (and ``scan``, ``shard``).

Errors a user can cause (a bad flag or value, a bad path, an unreadable file) become one line on stderr and exit
code 2, click's usage errors included.
The CLI is the top layer: it may import everything (core, ``dali_cutmix.pipelines``, ``dali_cutmix.train``,
``dali_cutmix.profiler``), and nothing imports it.
"""

from __future__ import annotations

import sys

import click

from dali_cutmix.errors import USER_ERRORS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dali-cutmix")
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


def main(argv=None) -> int:
    """Console entry point: runs the CLI and returns its exit code. Errors a user causes (a bad flag or value, a
    bad path or file) are one line on stderr, ``error: ...``, and exit code 2; a command may end with its own code
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
    except USER_ERRORS as e:
        click.echo(f"error: {e}", err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
