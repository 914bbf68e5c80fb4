"""The profiler's report of a run's result dict: the JSON, the terminal table and the PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from .variants import ASYNC_SUFFIX, VARIANTS, async_key

#: The paired figures under the table and the chart: (JSON key, what our loader is compared with).
PAIRED = (("loader_vs_reference", "torchvision reference (PIL)"),
          ("loader_vs_reference_tensor", "torchvision reference (tensor)"),
          ("loader_vs_after_loader", "v2.CutMix after the loader"),
          ("loader_vs_after_loader_timm", "timm Mixup after the loader"))


def write_json(result: dict, path) -> Path:
    """Write ``result`` as indented JSON to ``path`` (atomically); returns the path."""
    import json

    from dali_cutmix.atomic import atomic_path

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


def _paired(result: dict) -> List[Tuple[str, dict]]:
    """The paired figures measured: ``(what our loader is compared with, the summarized ratio)``."""
    return [(what, result[key]) for key, what in PAIRED if result.get(key)]


def format_table(result: dict) -> str:
    """The terminal report: one row per variant (median images/s, IQR, ms/batch; a stage's asynchronous figure
    on the row after it; a skipped variant with its reason), CutMix's share, our loader's speed-up over each
    variant it is compared with and, with ``--model``, the training step."""
    load = (result.get("machine_load") or {}).get("other_cpu_share")
    lines = [f"dali-cutmix profile: {_headline(result)}"]
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
    lines.append(f"CutMix share of the full pipeline: {100 * share['median']:.1f}% "
                 f"(IQR {100 * share['q1']:.1f} to {100 * share['q3']:.1f}%; stage alone {stage_ms['median']:.2f} "
                 f"ms/batch)")
    lines.append(f"  by stage difference (3 vs 2):   {100 * diff['median']:.1f}% "
                 f"(IQR {100 * diff['q1']:.1f} to {100 * diff['q3']:.1f}%)")
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


def render_chart(result: dict, width: int = 960):
    """A PIL bar chart: median images/s per variant (and per stage timed asynchronously) with its IQR as a
    whisker, the skipped variants with their reason, and the headline figures."""
    from PIL import Image, ImageDraw

    colours = dict(decode=(158, 202, 225), crop=(107, 174, 214), cutmix=(49, 130, 189), full=(8, 81, 156),
                   loader=(49, 163, 84), after_loader=(116, 196, 118), after_loader_timm=(161, 217, 155),
                   reference=(150, 150, 150), reference_tensor=(189, 189, 189))
    rows = _rows(result)
    paired = _paired(result)
    label_w, bar_h, gap, top = 260, 30, 12, 78
    bottom = 30 + 22 * (1 + len(paired) + bool(result.get("training")))
    height = top + len(rows) * (bar_h + gap) + bottom
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    title, small = _font(18), _font(13)
    draw.text((16, 12), "dali-cutmix profile: images/s (median, whisker = IQR)", fill="black", font=title)
    headline = _headline(result)
    load = (result.get("machine_load") or {}).get("other_cpu_share")
    if load is not None and load > 0.05:
        headline += f"; other processes used {100 * load:.0f}% of the CPU meanwhile"
    draw.text((16, 40), headline, fill=(60, 60, 60), font=small)
    peak = max((ips["q3"] for _, _, ips, _, _ in rows if ips is not None), default=1.0) or 1.0
    scale = (width - label_w - 110) / peak
    for i, (key, label, ips, _, reason) in enumerate(rows):
        y = top + i * (bar_h + gap)
        mid = y + bar_h // 2
        draw.text((16, mid - 8), label, fill="black", font=small)
        x0 = label_w
        if ips is None:
            draw.text((x0, mid - 8), f"skipped: {reason}", fill=(120, 120, 120), font=small)
            continue
        colour = colours.get(key.removesuffix(ASYNC_SUFFIX), (120, 120, 120))
        if key.endswith(ASYNC_SUFFIX):
            colour = tuple((c + 255) // 2 for c in colour)
        draw.rectangle([x0, y, x0 + max(1, int(ips["median"] * scale)), y + bar_h], fill=colour)
        xq1, xq3 = x0 + int(ips["q1"] * scale), x0 + int(ips["q3"] * scale)
        draw.line([xq1, mid, xq3, mid], fill="black", width=2)
        draw.line([xq1, mid - 6, xq1, mid + 6], fill="black", width=2)
        draw.line([xq3, mid - 6, xq3, mid + 6], fill="black", width=2)
        draw.text((max(xq3, x0 + int(ips["median"] * scale)) + 8, mid - 8), f"{ips['median']:,.0f}",
                  fill="black", font=small)
    y = height - bottom + 10
    draw.text((16, y), f"CutMix share of the full pipeline: {100 * result['cutmix_share']['median']:.1f}%",
              fill="black", font=small)
    for what, speed in paired:
        y += 22
        draw.text((16, y), f"loader vs {what}: {speed['median']:.2f}x", fill="black", font=small)
    training = result.get("training")
    if training:
        draw.text((16, y + 22), f"{training['model']} training with our loader: {training['images_per_s']:,.1f} "
                                f"images/s, {100 * training['data_wait_share']:.1f}% of step time waiting for data",
                  fill="black", font=small)
    return image


def write_chart(result: dict, path) -> Path:
    """Write :func:`render_chart` as a PNG to ``path`` (atomically); returns the path."""
    from dali_cutmix.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        render_chart(result).save(tmp, format="PNG")
    return path
