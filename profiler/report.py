"""The profiler's report of a run's result dict: the JSON, the terminal table and the PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from .variants import ASYNC_SUFFIX, VARIANTS, async_key

#: The paired figures under the table and the chart: (JSON key, what our loader is compared with).
PAIRED = (("loader_vs_reference", "torchvision reference (PIL)"),
          ("loader_vs_reference_tensor", "torchvision reference (tensor)"),
          ("loader_vs_after_loader", "v2.CutMix after the loader"),
          ("loader_vs_after_loader_timm", "timm Mixup after the loader"),
          ("loader_paper_vs_reference_paper", "reference, both paper-augmented"),
          ("loader_vs_crop", "its own decode + crop + resize"),
          ("loader_vs_full", "its own pipeline run directly"))


def write_json(result: dict, path) -> Path:
    """Write ``result`` as indented JSON to ``path`` (atomically); returns the path."""
    import json

    from dali_cutmix.helpers.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return path


def _headline(result: dict) -> str:
    """One line: device, batch, threads, repeats and the machine."""
    s, m = result["settings"], result["machine"]
    where = m["gpu"] if s["device"] == "gpu" else f"{m['cpu']} ({m['cpu_cores_usable']} cores)"
    return (f"{s['device']}, batch {s['batch_size']}, {s['threads']} threads/workers, crop {s['crop']}, "
            f"{s['repeats']} rounds x {s['batches']} batches; {where}")


def _rows(result: dict) -> List[Tuple[str, str, Optional[dict], Optional[float], Optional[str]]]:
    """The report's rows, in the variants' order: ``(key, label, images_per_s, ms_per_batch, skipped reason)``;
    a stage timed asynchronously too is followed by its row, keyed :func:`~.variants.async_key`."""
    rows = []
    skipped = result.get("skipped") or {}
    for variant in VARIANTS:
        v = result["variants"].get(variant.key)
        if v is None:
            if variant.key in skipped:
                rows.append((variant.key, variant.label, None, None, skipped[variant.key]))
            continue
        rows.append((variant.key, v["label"], v["images_per_s"], v["ms_per_batch"], None))
        if "images_per_s_async" in v:
            rows.append((async_key(variant.key), "  same, prefetching (async)", v["images_per_s_async"],
                         v["ms_per_batch_async"], None))
    return rows


def share_note(share: dict) -> Optional[str]:
    """What a CutMix share's summary (``median``, ``q1``, ``q3``) can be trusted for, or None when it is clean.

    A share is a cost, never below 0 in truth: a median at or below 0 means the run could not tell the stage's
    cost from the timing noise (it is not "small"); a lower quartile below 0 means the figure is noisy."""
    if share["median"] <= 0:
        return ("noise: the run cannot tell the stage's cost from zero (more --repeats or --batches, on an idle "
                "machine)")
    if share["q1"] < 0:
        return "noisy: the IQR reaches below 0"
    return None


def _paired(result: dict) -> List[Tuple[str, dict]]:
    """The paired figures measured: ``(what our loader is compared with, the summarized ratio)``."""
    return [(what, result[key]) for key, what in PAIRED if result.get(key)]


def stage_lines(stage: dict) -> List[str]:
    """The table's lines on the stage alone per method (ms per batch, in copies of the batch, operators per
    device) after one on the batch copy; none without the copy's figure."""
    copy = stage.get("copy_ms_per_batch")
    if not copy:
        return []
    batch = stage["batch"]
    lines = [f"one copy of the {'x'.join(map(str, batch['shape']))} uint8 batch: {copy['median']:.2f} ms"]
    for method, entry in stage["methods"].items():
        count = entry["operator_count"]
        ops = f"{count['cpu']} operators on the CPU, {count['gpu']} on the GPU"
        if "copies" not in entry:
            lines.append(f"  stage alone, {method}: not timed; {ops}")
            continue
        ms, copies = entry["ms_per_batch"], entry["copies"]
        lines.append(f"  stage alone, {method + ':':<8} {ms['median']:.2f} ms/batch = {copies['median']:.2f} copies "
                     f"(IQR {copies['q1']:.2f}-{copies['q3']:.2f}); {ops}")
    return lines


def format_table(result: dict) -> str:
    """The terminal report: one row per variant (median images/s, IQR, ms/batch; a stage's asynchronous figure
    on the row after it; a skipped variant with its reason), CutMix's share, our loader's speed-up over each
    variant it is compared with and, with ``--model``, the training step."""
    load = (result.get("machine_load") or {}).get("other_cpu_share")
    lines = [f"dali-cutmix profile: {_headline(result)}"]
    lines += [f"warning: {w}" for w in result.get("warnings") or ()]
    if load is not None:
        lines.append(f"other processes kept {100 * load:.0f}% of the machine's CPU busy during the variants"
                     + (" (figures noisier than on an idle machine)" if load > 0.05 else ""))
    lines.append(f"{'variant':<34}{'images/s':>10}  {'IQR':>17}  {'spread':>7}{'ms/batch':>10}")
    for _, label, ips, ms, reason in _rows(result):
        if ips is None:
            lines.append(f"{label:<34}  skipped: {reason}")
            continue
        lines.append(f"{label:<34}{ips['median']:>10,.0f}  {ips['q1']:>8,.0f}-{ips['q3']:<8,.0f}"
                     f"{ips['iqr_pct']:>7.1f}%{ms:>10.1f}")
    share = result["cutmix_share"]
    diff, stage_ms = share["by_stage_difference"], share["stage_ms_per_batch"]
    note, diff_note = share_note(share), share_note(diff)
    lines.append(f"CutMix share of the full pipeline: {100 * share['median']:.1f}% "
                 f"(IQR {100 * share['q1']:.1f} to {100 * share['q3']:.1f}%; stage alone {stage_ms['median']:.2f} "
                 f"ms/batch)" + (f": {note}" if note else ""))
    lines.append(f"  by stage difference (3 vs 2):   {100 * diff['median']:.1f}% "
                 f"(IQR {100 * diff['q1']:.1f} to {100 * diff['q3']:.1f}%)" + (f": {diff_note}" if diff_note else ""))
    lines += stage_lines(result.get("stage") or {})
    for what, speed in _paired(result):
        lines.append(f"{'loader vs ' + what + ':':<42}{speed['median']:.2f}x "
                     f"(IQR {speed['q1']:.2f}-{speed['q3']:.2f}x)")
    training = result.get("training")
    if training:
        lines.append(f"training {training['model']} with our loader: {training['images_per_s']:,.1f} images/s, "
                     f"{100 * training['data_wait_share']:.1f}% of step time waiting for data "
                     f"(compute alone {training['compute_only_images_per_s']:,.1f} images/s)")
    return "\n".join(lines)


def _font(size: int):
    """PIL's default font at ``size`` (the bitmap font on old Pillow)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _ticks(peak: float, count: int = 5) -> List[float]:
    """Round axis ticks (1, 2 or 2.5, 5 times a power of ten) from 0 to at least ``peak``."""
    import math

    raw = max(peak, 1e-9) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    top = math.ceil(peak / step - 1e-9) * step
    return [i * step for i in range(int(round(top / step)) + 1)]


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == 0 else f"{value:g}"


def render_chart(result: dict, width: int = 1000):
    """A PIL bar chart read at a glance: one bar per variant (and per stage timed asynchronously), median
    images/s, its IQR as a thin whisker; an x axis in images/s with round ticks and grid lines; each row's value
    in its own column right of the plot (never on a bar or a whisker); the skipped variants with their reason;
    warnings; and the headline figures (CutMix's share with what it can be trusted for, the speed-ups)."""
    from PIL import Image, ImageDraw

    colours = dict(decode=(158, 202, 225), crop=(107, 174, 214), cutmix=(49, 130, 189), full=(8, 81, 156),
                   loader=(49, 163, 84), after_loader=(116, 196, 118), after_loader_timm=(161, 217, 155),
                   reference=(150, 150, 150), reference_tensor=(189, 189, 189), loader_paper=(0, 109, 44),
                   reference_paper=(115, 115, 115))
    rows = _rows(result)
    paired = _paired(result)
    warnings = list(result.get("warnings") or ())
    load = (result.get("machine_load") or {}).get("other_cpu_share")
    if load is not None and load > 0.05:
        warnings.append(f"other processes used {100 * load:.0f}% of the CPU meanwhile: figures noisier than on "
                        "an idle machine")
    share = result["cutmix_share"]
    note = share_note(share)
    footer = [f"CutMix share of the full pipeline: {100 * share['median']:.1f}% "
              f"(IQR {100 * share['q1']:.1f} to {100 * share['q3']:.1f}%)" + (f": {note}" if note else "")]
    footer += [f"our loader vs {what}: {speed['median']:.2f}x (IQR {speed['q1']:.2f}-{speed['q3']:.2f}x)"
               for what, speed in paired]
    training = result.get("training")
    if training:
        footer.append(f"{training['model']} training with our loader: {training['images_per_s']:,.1f} images/s, "
                      f"{100 * training['data_wait_share']:.1f}% of step time waiting for data")

    label_w, value_w, right_pad = 250, 150, 16
    bar_h, gap, line_h = 24, 10, 20
    top = 70 + line_h * len(warnings)
    plot_x0, plot_x1 = label_w, width - value_w - right_pad
    rows_h = len(rows) * (bar_h + gap)
    axis_y = top + rows_h + 2
    height = axis_y + 52 + line_h * len(footer) + 12
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    title, small = _font(18), _font(13)
    draw.text((16, 12), "dali-cutmix profile: images/s, higher is better", fill="black", font=title)
    draw.text((16, 40), _headline(result), fill=(60, 60, 60), font=small)
    for i, warning in enumerate(warnings):
        draw.text((16, 40 + line_h * (i + 1)), f"warning: {warning}", fill=(180, 30, 30), font=small)

    measured = [ips for _, _, ips, _, _ in rows if ips is not None]
    ticks = _ticks(max((max(ips["q3"], ips["median"]) for ips in measured), default=1.0) or 1.0)
    scale = (plot_x1 - plot_x0) / ticks[-1]

    def x_of(value: float) -> int:
        return plot_x0 + int(round(max(0.0, value) * scale))

    for tick in ticks:  # grid behind the bars
        x = x_of(tick)
        draw.line([x, top - 4, x, axis_y], fill=(225, 225, 225) if tick else (120, 120, 120), width=1)
    header = "median images/s"
    draw.text((plot_x1 + 64 - draw.textlength(header, font=small) / 2, top - 20), header, fill=(60, 60, 60),
              font=small)
    for i, (key, label, ips, _, reason) in enumerate(rows):
        y = top + i * (bar_h + gap)
        mid = y + bar_h // 2
        draw.text((16, mid - 8), label, fill="black", font=small)
        if ips is None:
            draw.text((plot_x0 + 8, mid - 8), f"skipped: {reason}", fill=(120, 120, 120), font=small)
            continue
        colour = colours.get(key.removesuffix(ASYNC_SUFFIX), (120, 120, 120))
        if key.endswith(ASYNC_SUFFIX):
            colour = tuple((c + 255) // 2 for c in colour)
        draw.rectangle([plot_x0, y, max(plot_x0 + 1, x_of(ips["median"])), y + bar_h], fill=colour)
        xq1, xq3 = x_of(ips["q1"]), x_of(ips["q3"])
        draw.line([xq1, mid, xq3, mid], fill=(30, 30, 30), width=1)
        for x in (xq1, xq3):
            draw.line([x, mid - 5, x, mid + 5], fill=(30, 30, 30), width=1)
        value = f"{ips['median']:,.0f}"
        spread = f"IQR {ips['iqr_pct']:.0f}%" if ips["iqr_pct"] == ips["iqr_pct"] else ""
        value_end = plot_x1 + 64  # right-aligned numbers
        draw.text((value_end - draw.textlength(value, font=small), mid - 8), value, fill="black", font=small)
        if spread:
            draw.text((value_end + 12, mid - 8), spread, fill=(110, 110, 110), font=small)

    draw.line([plot_x0, axis_y, plot_x1, axis_y], fill=(60, 60, 60), width=1)  # the x axis
    for tick in ticks:
        x = x_of(tick)
        draw.line([x, axis_y, x, axis_y + 5], fill=(60, 60, 60), width=1)
        text = _tick_label(tick)
        tw = draw.textlength(text, font=small)
        draw.text((min(max(x - tw / 2, plot_x0 - tw / 2), width - tw - 4), axis_y + 8), text, fill=(60, 60, 60),
                  font=small)
    axis_title = "images per second (bar: median over rounds; whisker: interquartile range)"
    tw = draw.textlength(axis_title, font=small)
    draw.text(((plot_x0 + plot_x1 - tw) / 2, axis_y + 26), axis_title, fill=(60, 60, 60), font=small)

    y = axis_y + 52
    for i, line in enumerate(footer):
        draw.text((16, y + i * line_h), line, fill=(180, 30, 30) if i == 0 and note else "black", font=small)
    return image


def write_chart(result: dict, path) -> Path:
    """Write :func:`render_chart` as a PNG to ``path`` (atomically); returns the path."""
    from dali_cutmix.helpers.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        render_chart(result).save(tmp, format="PNG")
    return path
