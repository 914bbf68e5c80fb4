"""The ``dali-cutmix`` command line: ``preview``, ``train`` and ``profile``.

Errors a user can cause (bad path, bad argument, unreadable file) become one line on stderr and exit code 2.
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
    """CutMix inside NVIDIA DALI pipelines: preview it, train with it, profile it."""


def _register():
    """Attach the commands (their modules import nothing heavy; each command imports its work when it runs)."""
    from .preview import preview
    from .profile import profile
    from .train import train

    for command in (preview, train, profile):
        cli.add_command(command)


def main(argv=None) -> int:
    """Console entry point: runs the CLI, maps user errors to one stderr line and exit code 2."""
    _register()
    try:
        cli.main(args=argv, prog_name="dali-cutmix", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2 if e.exit_code == 2 or isinstance(e, click.UsageError) else e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except USER_ERRORS as e:
        click.echo(f"error: {e}", err=True)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
