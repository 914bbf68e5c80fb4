"""``dali-cutmix shard``: write a data set as WebDataset tar shards with DALI index files and a manifest."""

from __future__ import annotations

from pathlib import Path

import click

from dali_cutmix.errors import UserError


def check_out_folder(out) -> Path:
    """``out`` as a Path if the shards can be written there, checked before the scan: an existing folder that takes
    a new file, or a new folder whose parent exists and does (a missing parent is refused, as for every output
    file of the commands).

    Raises:
        UserError: one line naming ``--out`` and the folder at fault.
    """
    from dali_cutmix.helpers.atomic import writable_folder

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {str(out)!r} is a file, expected a folder")
    target = out if out.is_dir() else out.absolute().parent
    try:
        writable_folder(target)
    except FileNotFoundError as e:
        raise UserError(f"--out: the directory {e.filename!r} does not exist (create it first)") from None
    except NotADirectoryError as e:
        raise UserError(f"--out: {e.filename!r} is a file, not a directory") from None
    except OSError as e:
        raise UserError(f"--out: cannot write in the directory {e.filename!r}: {e.strerror}") from None
    return out


@click.command()
@click.argument("data", type=click.Path())
@click.option("--out", required=True, type=click.Path(), metavar="DIR",
              help="Folder for the shards: new or empty, or the folder of an interrupted run of the same DATA "
                   "(which it finishes). For an ImageNet root: DIR/train and DIR/val.")
@click.option("--shard-size", default="1GB", show_default=True, metavar="SIZE",
              help="Largest tar file: 1GB, 500MB, 64MiB, or bytes. A sample larger than that gets a shard of its "
                   "own.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Shard writer processes, and the scan's threads. [default: the usable cores]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the shuffle across shards.")
@click.option("--full", is_flag=True,
              help="Scan in full mode: also decode every file with DALI's CPU decoder, so that a file only a decoder "
                   "finds broken is left out too (a sample that fails to decode stops a run reading the shards).")
@click.option("--no-cache", is_flag=True, help="Scan every file again, ignoring the scan results cached before.")
def shard(data, out, shard_size, jobs, seed, full, no_cache):
    """Write DATA (a class-per-folder tree DATA/<class>/<image>, or an ImageNet root DATA/train and DATA/val) as
    WebDataset tar shards (KEY.jpg: the image's bytes as stored, KEY.cls: its class index), a DALI index file per
    shard, and a manifest.json, written last, that makes the folder a data set: every --data takes it.

    Files DALI cannot read are found by the scan (quick, or --full), skipped and named. The samples are shuffled across the
    shards (--seed). Each shard is written under a temporary name and renamed when whole: an interrupted run
    leaves no manifest, and running the same command again finishes it.

    \b
    dali-cutmix shard /imagenet --out /fast/imagenet-shards --jobs 16
    dali-cutmix train --data /fast/imagenet-shards --gpus 8
    aws s3 sync /fast/imagenet-shards s3://bucket/imagenet-shards
    dali-cutmix train --data s3://bucket/imagenet-shards --gpus 8
    """
    from dali_cutmix.pipelines.shard_writer import parse_size, shard_data, summary_lines

    size = parse_size(shard_size)
    check_out_folder(out)
    result = shard_data(data, out, shard_size=size, jobs=jobs, seed=seed, mode="full" if full else "quick",
                        use_cache=not no_cache,
                        say=lambda line: click.echo(line, err=True))
    for line in summary_lines(result):
        click.echo(line)
