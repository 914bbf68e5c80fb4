"""``dali-cutmix profile``: images/s of the pipeline stage by stage, against mixing after the loader (torchvision's
and timm's mixers) and torchvision's usual loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from dali_cutmix.builder import DECODES
from dali_cutmix.errors import UserError, first_line
from dali_cutmix.helpers.host import usable_cores
from dali_cutmix.options import MixOptions, flag_name

from .augmenting import augment_options, build_augment_options, pop_augment_options
from .mixing import build_mix_options, mixing_options, pop_mix_options
from .params import cache_error, check_outputs, resolve_device, seed_option, show_progress

DEFAULT_IMAGES = 1024


def _resolve_data(data, images, progress) -> Path:
    """The data set to profile: ``--data`` checked, or the generated one of ``--images`` JPEGs. A ``--data``
    holding files DALI cannot read is profiled without them (a quick scan, cached; the line names them): the
    profiler then reads a DALI file list of its usable files."""
    from dali_cutmix.folder_reader import list_classes
    from dali_cutmix.pipelines.profile_data import default_profile_dataset
    from dali_cutmix.pipelines.scan import list_file_of, skip_line, usable_images

    if data is None:
        try:
            return default_profile_dataset(DEFAULT_IMAGES if images is None else images, progress=progress)
        except OSError as e:
            raise cache_error("the generated data set", e) from None
    if images is not None:
        raise UserError("--images sizes the generated data set; it cannot be combined with --data")
    from dali_cutmix.shard_reader import as_shards, is_shard_folder

    if is_shard_folder(data):  # tar shards (dali-cutmix shard), local or s3://: scanned when they were written
        try:
            return as_shards(data).location
        except UserError as e:
            raise UserError(f"--data: {e}") from None
    data = Path(data)
    if data.is_file():
        raise UserError(f"--data must be a class-per-folder directory DIR/<class>/<image>, got the file {str(data)!r}")
    try:
        list_classes(data)
        usable, result = usable_images(data)
    except UserError as e:
        raise UserError(f"--data: {e}") from None
    line = skip_line(result)
    if line is None:
        return data
    progress(line)
    return list_file_of(usable)


def _check_model(model, crop) -> None:
    """Refuse a ``--model`` the trainer would refuse as ``--arch`` (not a torchvision classification model, or
    one that cannot take ``--crop``), before anything is measured."""
    from dali_cutmix.profiler.training import check_model

    try:
        check_model(model, crop)
    except UserError as e:
        raise UserError(first_line(e).replace("--arch", "--model")) from None


def _changed_mix_options(mix: MixOptions) -> dict:
    """The mixing options that differ from :class:`MixOptions`' defaults (the flags to write)."""
    defaults = MixOptions()
    return {f.name: getattr(mix, f.name) for f in dataclasses.fields(mix)
            if getattr(mix, f.name) != getattr(defaults, f.name)}


def _command(params: dict) -> str:
    """The equivalent command line, for the JSON (None values left out; booleans as ``--x``/``--no-x``, pairs
    as ``A,B``)."""
    parts = ["dali-cutmix", "profile"]
    for name, value in params.items():
        flag = flag_name(name)
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, (tuple, list)):
            parts += [flag, ",".join(f"{v:g}" for v in value)]
        else:
            parts += [flag, str(value)]
    return " ".join(parts)


@click.command()
@click.option("--data", type=click.Path(), default=None,
              help="Class-per-folder JPEG tree DIR/<class>/<image>; files DALI cannot read are skipped (a quick "
                   "scan, cached); or a shard folder of `dali-cutmix shard`, local or s3:// (default: a generated "
                   "set of ~100 KB, 500x375 JPEGs in the cache folder, made on first use).")
@click.option("--images", type=click.IntRange(min=1), default=None,
              help=f"Size of the generated data set when --data is not given [default: {DEFAULT_IMAGES}].")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Where the DALI pipeline runs [default: gpu if CUDA is available, else cpu].")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Samples per batch.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="DALI CPU threads, and the reference DataLoader's workers [default: the usable cores].")
@click.option("--batches", type=click.IntRange(min=1), default=8, show_default=True,
              help="Timed batches per variant in each round.")
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True,
              help="Rounds; every variant is timed once per round, figures are medians over rounds.")
@click.option("--crop", type=click.IntRange(min=8, max=4096), default=224, show_default=True, help="Crop size.")
@click.option("--model", default=None, metavar="ARCH",
              help="Also time training steps of this torchvision classification model (any the trainer's --arch "
                   "takes, e.g. resnet50), fed by our loader, with the trainer's step.")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed training steps with --model.")
@click.option("--torch-threads", type=click.IntRange(min=1), default=None,
              help="PyTorch intra-op threads for the --model steps [default: PyTorch's choice].")
@click.option("--json", "json_path", type=click.Path(), default="profile.json", show_default=True,
              help="JSON file for every figure and the machine, written again as each variant is measured "
                   "('complete': false until the run ends).")
@click.option("--plot", type=click.Path(), default="profile.png", show_default=True, help="PNG bar chart.")
@click.option("--decode", type=click.Choice(DECODES), default="roi", show_default=True,
              help="How the training pipeline's variants decode: 'roi' decodes only the random crop's region, "
                   "'full' decodes the whole image and then crops it (as train's --decode; a way around a failing "
                   "ROI decoder).")
@seed_option()
@click.option("--async-stages/--no-async-stages", default=None,
              help="Also time each DALI stage variant with prefetching (prefetch queue, pipelined executor) "
                   "[default: on the GPU only].")
@mixing_options()
@augment_options()
def profile(data, images, device, batch_size, threads, batches, repeats, crop, model, steps, torch_threads,
            json_path, plot, seed, decode, async_stages, **mixing):
    """Measure images/s: read+decode, +random-resized-crop, +CutMix, +flip/normalize, the PyTorch loader, the
    pipeline without the stage then torchvision's v2.CutMix (and timm's Mixup, when timm is installed) on the
    loader's batch, torchvision's ImageFolder+DataLoader+v2.CutMix with its PIL and tensor backends, and timm's
    own create_loader with FastCollateMixup (batch and elem modes, when timm is installed), and the paper's
    augmentation on both sides (our pipeline's augment="paper" against torchvision's reference with the official
    CutMix ColorJitter and Lighting), interleaved; every peer applies the augmentation of ours it is paired with;
    each round also times the mixing stage alone (CutMix, MixUp, switching) against one copy of its batch; print
    a table, write JSON and a PNG chart.

    The mixing flags (dali_cutmix.MixOptions' fields) change our stage (variants 3-5, 12 and --model), the mixers
    after the loader (variants 6-7; torchvision's takes the alphas and --switch-prob only) and timm's collate
    (variants 10-11, whose mode is their own); the torchvision references stay CutMix with alpha 1. Fewer than
    4 --repeats warn that the IQR means nothing. The augmentation flags (--augment PRESET and
    dali_cutmix.AugmentOptions' fields) change the training pipeline's variants (3-7 and --model) and the
    torchvision references (8-9: its ColorJitter and Lighting; a policy or random erasing skips them, saying
    why); timm's loader (10-11) runs only without augmentation; the paper pair (12-13) keeps the paper's."""
    from dali_cutmix.profiler.report import format_table, write_chart, write_json
    from dali_cutmix.profiler.run import run_profile
    from dali_cutmix.profiler.settings import ProfileSettings

    def progress(message):
        click.echo(message, err=True)

    outputs = check_outputs(json=json_path, plot=plot)  # before minutes of measuring
    json_path, plot = outputs["--json"], outputs["--plot"]
    mix = build_mix_options(pop_mix_options(mixing))
    augment_given = pop_augment_options(mixing)
    augment = build_augment_options(augment_given)
    if model is not None:
        _check_model(model, crop)
    device = resolve_device(device)
    show_progress()  # the native operators' first build says so
    threads = threads or usable_cores()
    source = dict(data=data) if data is not None else dict(images=images or DEFAULT_IMAGES)
    data = _resolve_data(data, images, progress)
    settings = ProfileSettings(data=str(data), device=device, batch_size=batch_size, threads=threads,
                               batches=batches, repeats=repeats, crop=crop, seed=seed, mix=mix, decode=decode,
                               async_stages=async_stages, augment=augment).check()
    command = _command(dict(**source, device=device, batch_size=batch_size, threads=threads, batches=batches,
                            repeats=repeats, crop=crop, model=model, steps=steps if model else None,
                            torch_threads=torch_threads if model else None, seed=seed or None,
                            decode=None if decode == "roi" else decode,
                            async_stages=async_stages, **_changed_mix_options(mix),
                            **{k: v for k, v in augment_given.items() if k != "augment" or v != "none"},
                            json=str(json_path),
                            plot=str(plot)))
    result = run_profile(settings, model=model, steps=steps, torch_threads=torch_threads, progress=progress,
                         command=command, save=lambda partial: write_json(partial, json_path))
    click.echo(format_table(result))
    click.echo(f"wrote {json_path} and {write_chart(result, plot)}")
