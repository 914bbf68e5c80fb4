"""``dali-cutmix doctor``: whether this machine can run the GPU path, and why not; builds the native operators."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dali_cutmix.errors import UserError


def _cache_folder(cache):
    """``--cache`` as a Path, created; raises UserError when it is a file or cannot be created."""
    if cache is None:
        return None
    folder = Path(cache).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--cache: {str(folder)!r} is a file, expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--cache: cannot create {str(folder)!r}: {e.strerror or e}") from None
    return folder


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks and every fact read as JSON, for scripts.")
@click.option("--build", is_flag=True,
              help="Build the native operators again, even when the cache holds them (without it, they are built "
                   "only if missing).")
@click.option("--cache", metavar="DIR",
              help="Cache folder for the native operators (DIR/native/...). Default: $DALI_CUTMIX_CACHE, else "
                   "~/.cache/dali-cutmix. Build once where a compiler is, then set DALI_CUTMIX_CACHE=DIR where "
                   "there is none.")
def doctor(as_json, build, cache):
    """Say whether this machine can run the GPU path, and why not.

    One line per subject (Python, torch and its CUDA build, DALI and its CUDA build, the NVIDIA driver, the GPUs
    torch and DALI see, the hardware JPEG decoder, NCCL, the native operators, DALI's GPU ROI decoding), each
    ok / warn / fail with the fix, or skip with the reason. The native operators are built if they are missing;
    the ROI decoding (decoders.image_random_crop on "mixed", which nvImageCodec issue #55 reports crashing on H100)
    runs in a subprocess where DALI sees a GPU, and a failure says to train with --decode full. Exit code 0 when the GPU path can run, 1 when it cannot
    (the verdict line says whether the CPU path can), 2 for bad usage.
    """
    from dali_cutmix.pipelines.doctor import diagnose, gather, report_json, report_text

    facts = gather(cache=_cache_folder(cache), force_build=build)
    diagnosis = diagnose(facts)
    if as_json:
        click.echo(json.dumps(report_json(facts, diagnosis), indent=2))
    else:
        click.echo(report_text(diagnosis))
    click.get_current_context().exit(diagnosis.exit_code)
