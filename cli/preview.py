"""``dali-cutmix preview``: a PNG grid of mixed training images."""

from __future__ import annotations

from pathlib import Path

import click

from dali_cutmix.errors import UserError, first_line

from .augmenting import augment_options, build_augment_options, pop_augment_options
from .mixing import build_mix_options, mixing_options, pop_mix_options
from .params import cache_error, check_output, resolve_device, seed_option, show_progress


@click.command()
@click.option("--data", type=click.Path(), default=None,
              help="Class-per-folder image tree, its files that DALI cannot read skipped (a quick scan), a DALI "
                   "file list, or a shard folder of `dali-cutmix shard`, local or s3:// (default: the embedded demo "
                   "dataset's train split).")
@click.option("--out", type=click.Path(dir_okay=False), default="cutmix_preview.png", show_default=True,
              help="PNG file to write.")
@click.option("--count", type=click.IntRange(1, 64), default=8, show_default=True, help="Images in the grid.")
@click.option("--crop", type=click.IntRange(16, 1024), default=160, show_default=True, help="Crop size.")
@mixing_options(defaults=dict(mode="elem", self_pairs=False))
@augment_options()
@seed_option()
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Where the pipeline runs.")
def preview(data, out, count, crop, seed, device, **params):
    """Write a grid of mixed training images, each with its box and label weights."""
    from dali_cutmix.folder_reader import image_list
    from dali_cutmix.pipelines.demo import ensure_demo_dataset
    from dali_cutmix.pipelines.preview import check_count, write_preview
    from dali_cutmix.pipelines.scan import skip_line, usable_images
    from dali_cutmix.shard_reader import as_shards, is_shard_folder

    def progress(message):
        click.echo(message, err=True)

    out = check_output("--out", out)  # before any work: a missing or unwritable folder is one line now
    check_count(count, "--count")
    options = build_mix_options(pop_mix_options(params))
    augment = build_augment_options(pop_augment_options(params))
    device = resolve_device(device)
    show_progress()  # the native operators' first build says so
    if data is None:
        try:
            data = ensure_demo_dataset(progress=progress) / "train"
        except OSError as e:
            raise cache_error("the demo dataset", e) from None
    else:
        try:
            if is_shard_folder(data):  # tar shards (dali-cutmix shard), local or s3://: scanned when written
                data = as_shards(data)
            elif Path(data).is_dir():  # the usable files only (a quick scan, cached), as the trainer reads them
                data, result = usable_images(data)
                line = skip_line(result)
                if line:
                    progress(line)
            else:  # a DALI file list, read (and checked) once here
                data = image_list(data)
        except UserError as e:
            raise UserError(f"--data: {first_line(e)}") from None
    path = write_preview(data, out, count=count, crop=crop, mix_options=options, seed=seed, device=device,
                         augment=augment)
    click.echo(f"wrote {path}")
