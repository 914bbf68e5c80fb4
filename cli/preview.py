"""``dali-cutmix preview``: a PNG grid of mixed training images."""

from __future__ import annotations

from pathlib import Path

import click

from .mixing import build_mix_options, mixing_options, pop_mix_options


@click.command()
@click.option("--data", type=click.Path(), default=None,
              help="Class-per-folder image tree, its files that DALI cannot read skipped (a quick scan), or a DALI "
                   "file list (default: the embedded demo dataset's train split).")
@click.option("--out", type=click.Path(dir_okay=False), default="cutmix_preview.png", show_default=True,
              help="PNG file to write.")
@click.option("--count", type=click.IntRange(1, 64), default=8, show_default=True, help="Images in the grid.")
@click.option("--crop", type=click.IntRange(16, 1024), default=160, show_default=True, help="Crop size.")
@mixing_options(defaults=dict(mode="elem"))
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Where the pipeline runs.")
def preview(data, out, count, crop, seed, device, **params):
    """Write a grid of mixed training images, each with its box and label weights."""
    from dali_cutmix.pipelines.demo import ensure_demo_dataset
    from dali_cutmix.pipelines.scan import skip_line, usable_images
    from dali_cutmix.preview import write_preview

    options = build_mix_options(pop_mix_options(params))
    if data is None:
        data = ensure_demo_dataset() / "train"
    elif Path(data).is_dir():  # the usable files only (a quick scan, cached), as the trainer reads them
        data, result = usable_images(data)
        line = skip_line(result)
        if line:
            click.echo(line, err=True)
    path = write_preview(data, out, count=count, crop=crop, mix_options=options, seed=seed, device=device)
    click.echo(f"wrote {path}")
