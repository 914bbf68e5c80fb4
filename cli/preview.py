"""``dali-cutmix preview``: a PNG grid of mixed training images."""

from __future__ import annotations

import click


@click.command()
@click.option("--data", type=click.Path(), default=None,
              help="Class-per-folder image tree (default: the embedded demo dataset's train split).")
@click.option("--out", type=click.Path(dir_okay=False), default="cutmix_preview.png", show_default=True,
              help="PNG file to write.")
@click.option("--count", type=click.IntRange(1, 64), default=8, show_default=True, help="Images in the grid.")
@click.option("--crop", type=click.IntRange(16, 1024), default=160, show_default=True, help="Crop size.")
@click.option("--mode", type=click.Choice(["batch", "elem"]), default="elem", show_default=True,
              help="One box per batch (official) or per sample.")
@click.option("--alpha", type=float, default=1.0, show_default=True, help="lam ~ Beta(alpha, alpha).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Where the pipeline runs.")
def preview(data, out, count, crop, mode, alpha, seed, device):
    """Write a grid of CutMix-ed training images, each with its box and label weights."""
    from dali_cutmix.preview import write_preview

    if data is None:
        from dali_cutmix.pipelines.demo import ensure_demo_dataset

        data = ensure_demo_dataset() / "train"
    path = write_preview(data, out, count=count, crop=crop, mode=mode, alpha=alpha, seed=seed, device=device)
    click.echo(f"wrote {path}")
