"""``dali-cutmix scan``: check every image file of a data set before a run reads it."""

from __future__ import annotations

from pathlib import Path

import click

from dali_cutmix.errors import UserError

from .params import check_output


def _output_file(flag: str, path, splits=()):
    """``path`` as a Path, or None; checked before any work (:func:`cli.params.check_output`: its folder exists and
    takes a new file). A ``{split}`` in ``path`` is checked with each name of ``splits``.

    Raises:
        UserError: one line naming ``flag`` and the folder or file at fault.
    """
    if path is None:
        return None
    path = Path(path).expanduser()
    for name in splits if "{split}" in str(path) else ("",):
        check_output(flag, str(path).replace("{split}", name) if name else path)
    return path


@click.command()
@click.argument("data", type=click.Path())
@click.option("--full", is_flag=True,
              help="Also decode every file with DALI's CPU decoder (the decoder the pipeline uses), in parallel. "
                   "Without it (quick mode): size, magic bytes, header, end marker and pixel size, at file-system "
                   "speed.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Threads that check (and decode) files. [default: the usable cores]")
@click.option("--report", type=click.Path(), default=None, metavar="FILE",
              help="Write a JSON report: counts per split, every bad file with its reason, every unusual file with "
                   "its kinds, the names left out.")
@click.option("--write-list", type=click.Path(), default=None, metavar="FILE",
              help="Write a DALI file list of the usable files ('path label' lines; paths relative to the list's "
                   "folder, or absolute when the data lies elsewhere; labels from the sorted class folders): what "
                   "build_cutmix_pipeline(FILE) and fn.readers.file(file_list=FILE) read. For an ImageNet root, "
                   "FILE holds {split}: lists/{split}.txt writes lists/train.txt and lists/val.txt.")
@click.option("--no-cache", is_flag=True,
              help="Check every file again, ignoring (and not updating) the results cached from earlier scans.")
def scan(data, full, jobs, report, write_list, no_cache):
    """Check every image file of DATA: a class-per-folder tree DATA/<class>/<image>, or an ImageNet root
    (DATA/train/ and DATA/val/).

    Each file is usable, unusual (usable, and worth knowing: a PNG named .jpg, CMYK, grayscale, progressive,
    EXIF-rotated, tiny, ...) or bad (DALI cannot read it: the reason says why). Hidden files and folders (names
    starting with ".") are never classes or samples. Results are cached per file (by size and modification time):
    a second scan of the same data re-reads only what changed.

    Exit code 0 when every image file is usable, 1 when some are bad, 2 for bad usage.

    \b
    dali-cutmix scan /imagenet                          # quick: minutes for ImageNet's 1.28 M files
    dali-cutmix scan /imagenet --full --jobs 16 --report scan.json
    dali-cutmix scan /data/flowers --write-list flowers.txt
    """
    from dali_cutmix.pipelines.scan import data_layout, scan_data, summary_lines, write_lists, write_report

    layout, splits, _ = data_layout(data)
    report = _output_file("--report", report)
    write_list = _output_file("--write-list", write_list, [name for name, _ in splits if name])
    if write_list is not None and layout == "imagenet" and "{split}" not in str(write_list):
        raise UserError(f"--write-list {str(write_list)!r}: {str(data)!r} holds two splits (train/ and val/): name "
                        f"the lists with {{split}}, e.g. --write-list lists/{{split}}.txt")
    result = scan_data(data, mode="full" if full else "quick", jobs=jobs, use_cache=not no_cache)
    for line in summary_lines(result):
        click.echo(line)
    if report is not None:
        click.echo(f"wrote {write_report(result, report)}")
    if write_list is not None:
        try:
            written = write_lists(result, write_list)
        except UserError as e:
            raise UserError(str(e)) from None
        for path, lines in written:
            click.echo(f"wrote {path} ({lines:,} usable files)")
    click.get_current_context().exit(0 if result.all_usable else 1)
