"""The figures tables of README.md and benchmarks/README.md, printed from the JSON the benchmarks wrote.

    python benchmarks/figures.py readme     # the README's Figures table
    python benchmarks/figures.py targets    # benchmarks/README.md's Targets table
    python benchmarks/figures.py variants   # benchmarks/README.md's table of the profile's variants
    python benchmarks/figures.py stage      # benchmarks/README.md's table of the stage alone against a copy
    python benchmarks/figures.py paired     # benchmarks/README.md's table of our loader against each peer
    python benchmarks/figures.py --write    # both, written into the two files between their figures markers
    python benchmarks/figures.py readme --json-dir DIR   # the table from the JSON files in DIR instead

Each figure is read by key from ``benchmarks/*.json`` (``profile_cpu.json``,
``scan_speed_cpu.json``, ``demo_cpu.json``, ``shards_cpu/*.json``), so the two pages cannot disagree with the
measurements: after a new measurement, run ``--write`` (tests/test_figures.py checks that the pages hold what this
prints). A JSON file that is absent leaves its rows out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGES = {"readme": ROOT / "README.md", "targets": HERE / "README.md", "variants": HERE / "README.md",
         "stage": HERE / "README.md", "paired": HERE / "README.md"}
#: The profile's variants as benchmarks/README.md names them, in the profiler's numbering.
VARIANT_LABELS = {
    "decode": "1 read + decode",
    "crop": "2 + random-resized-crop",
    "cutmix": "3 + CutMix",
    "full": "4 + flip/normalize (full pipeline)",
    "loader": "5 full pipeline -> torch (`CutMixLoader`)",
    "dynamic": "5d the same input in DALI Dynamic mode -> torch (`dali_cutmix.dynamic_nodes`)",
    "after_loader": "6 pipeline without the stage -> torch, then `v2.CutMix` on the batch (`after_loader`)",
    "after_loader_timm": "7 the same with `timm.data.Mixup` (`after_loader_timm`)",
    "reference": "8 torchvision reference, PIL backend (ImageFolder + DataLoader + v2 transforms + v2.CutMix)",
    "reference_tensor": "9 torchvision reference, tensor backend (`PILToTensor` before the crop)",
    "timm_loader": "10 timm's `create_loader` + `FastCollateMixup` (CutMix in the collate), batch mode",
    "timm_loader_elem": "11 the same, elem mode",
    "loader_paper": "12 full pipeline with the paper's augmentation (`augment=\"paper\"`) -> torch (`CutMixLoader`)",
    "reference_paper": "13 torchvision reference (PIL) with the official CutMix `ColorJitter` + `Lighting`",
}
STAGE_METHODS = {"cutmix": "CutMix", "mixup": "MixUp",
                 "switch": "CutMix/MixUp switching, whose quiet batches are its CutMix ones"}
SCAN_SPEED_COMMAND = ("python benchmarks/scan_speed.py --root /tmp/scan-bench --files 100000 --rounds 5 "
                      "--json benchmarks/scan_speed_cpu.json")


def begin_marker(table: str) -> str:
    return f"<!-- figures: begin (python benchmarks/figures.py {table}) -->"


END_MARKER = "<!-- figures: end -->"


def load(name: str, folder: Path = HERE) -> Optional[dict]:
    """The JSON file ``folder/name``, or None when it is absent."""
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def images_per_s(profile: dict, variant: str) -> float:
    return profile["variants"][variant]["images_per_s"]["median"]


def command_of(profile: dict) -> str:
    return f"`{profile['command']}`"


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def ratio(summary: dict) -> str:
    return f"**{summary['median']:.2f}x** (IQR {summary['q1']:.2f}-{summary['q3']:.2f}x)"


def pairs_of(profile: dict) -> Dict[str, dict]:
    """The profile's paired figures: ``{key: {"ours": variant, "theirs": variant}}``, as its ``pairs`` records them
    (a profile made before it recorded them: every ``loader_vs_<variant>`` key, our loader over that variant)."""
    if "pairs" in profile:
        return profile["pairs"]
    return {k: dict(ours="loader", theirs=k[len("loader_vs_"):]) for k in profile if k.startswith("loader_vs_")}


#: What the paired table says of a side whose augmentation the JSON does not record.
UNRECORDED = "not recorded (a profile made before the peers' augmentation was matched to ours)"


ASYNC = "_async"


def label_of(variant: str) -> str:
    """A variant's label in the tables: :data:`VARIANT_LABELS`'s, "..., prefetching" for its asynchronous twin."""
    if variant.endswith(ASYNC):
        return f"{label_of(variant[:-len(ASYNC)])}, prefetching"
    return VARIANT_LABELS.get(variant, variant)


def augmentation_of(profile: dict, variant: str) -> Optional[str]:
    """The per-sample transforms the JSON records for ``variant`` (or the variant its asynchronous twin times),
    comma-separated; None where it records none (a profile made before it recorded them)."""
    variant = variant[:-len(ASYNC)] if variant.endswith(ASYNC) else variant
    names = profile["variants"].get(variant, {}).get("augmentation")
    return None if names is None else ", ".join(names) or "none (decode only)"


def readme_rows(folder: Path = HERE) -> List[str]:
    """The README's rows: ``| figure | value | command |``."""
    rows = [row("figure", "value", "command"), "|---|---|---|"]
    profile = load("profile_cpu.json", folder)
    if profile:
        s = profile["settings"]
        cmd = command_of(profile)
        rows.append(row(
            f"Our pipeline through `CutMixLoader` vs torchvision ImageFolder + DataLoader + v2.CutMix, same "
            f"{profile['machine']['cpu_cores_usable']} cores (batch {s['batch_size']}, {s['crop']} crops)",
            f"{images_per_s(profile, 'loader'):.0f} vs {images_per_s(profile, 'reference'):.0f} images/s (PIL "
            f"backend): **{profile['loader_vs_reference']['median']:.2f}x**; "
            f"{profile['loader_vs_reference_tensor']['median']:.2f}x against the tensor backend's "
            f"{images_per_s(profile, 'reference_tensor'):.0f}", cmd))
        rows.append(row(
            "Our pipeline vs the same pipeline without the stage and `v2.CutMix` applied to the loader's batch",
            f"{images_per_s(profile, 'loader'):.0f} vs {images_per_s(profile, 'after_loader'):.0f} images/s: "
            f"**{profile['loader_vs_after_loader']['median']:.2f}x**", "the same"))
        if augmentation_of(profile, "timm_loader") and profile.get("loader_vs_timm_loader"):
            elem = profile.get("loader_vs_timm_loader_elem")
            rows.append(row(
                "Our pipeline vs timm's `create_loader` + `FastCollateMixup` (CutMix in the collate, batch mode), "
                "the same augmentation on both sides (timm's `color_jitter=None`)",
                f"{images_per_s(profile, 'loader'):.0f} vs {images_per_s(profile, 'timm_loader'):.0f} images/s: "
                f"**{profile['loader_vs_timm_loader']['median']:.2f}x**"
                + (f"; {elem['median']:.2f}x against its elem mode" if elem else ""), "the same"))
        paper = profile.get("loader_paper_vs_reference_paper")
        if paper:
            rows.append(row(
                "The paper's augmentation on both sides (the official CutMix `ColorJitter(0.4, 0.4, 0.4)` + "
                "`Lighting(0.1)`): our pipeline with `augment=\"paper\"` vs torchvision's reference with the "
                "official transforms",
                f"{images_per_s(profile, 'loader_paper'):.0f} vs {images_per_s(profile, 'reference_paper'):.0f} "
                f"images/s: **{paper['median']:.2f}x**", "the same"))
        overhead = profile.get("loader_vs_crop")
        if overhead:
            full = profile.get("loader_vs_full")
            rows.append(row(
                "`CutMixLoader` (mixing, flip/normalize, the hand-off to torch) against its own pipeline's decode + "
                "random-resized-crop + resize (`stop_after=\"crop\"`), paired per round",
                f"**{pct(overhead['median'])}** of its rate (IQR {pct(overhead['q1'])} to {pct(overhead['q3'])})"
                + (f"; {pct(full['median'])} of the full pipeline run directly" if full else ""), "the same"))
        share = profile["cutmix_share"]
        rows.append(row(
            "The mixing stage's share of the whole CPU pipeline, as the profiler times it",
            f"{share['stage_ms_per_batch']['median']:.2f} ms per batch: {pct(share['median'])} "
            f"(IQR {pct(share['q1'])} to {pct(share['q3'])})", "the same"))
        stage = profile.get("stage")
        if stage:
            copy = stage["copy_ms_per_batch"]["median"]
            for key, name in STAGE_METHODS.items():
                m = stage["methods"][key]
                rows.append(row(
                    f"The stage alone ({name}) against one NumPy copy of its batch ({copy:.2f} ms)",
                    f"{m['ms_per_batch']['median']:.2f} ms per batch: **{m['copies']['median']:.2f} copies** "
                    f"(IQR {m['copies']['q1']:.2f}-{m['copies']['q3']:.2f})", "the same"))
    folder_runs = sorted((folder / "shards_cpu").glob("profile-folder-*.json"))
    if folder_runs:
        pairs = []
        for f in folder_runs:
            shards = load(f.name.replace("folder", "shards"), folder / "shards_cpu")
            pairs.append(f"{images_per_s(shards, 'loader'):.0f} vs "
                         f"{images_per_s(load(f.name, folder / 'shards_cpu'), 'loader'):.0f}")
        rows.append(row(
            "Tar shards vs the class folders they were made from, through `CutMixLoader`",
            f"equal within the noise ({' and '.join(pairs)} images/s in {len(pairs)} alternating pairs; decoding "
            f"bounds the pipeline here)", "`dali-cutmix profile --data DIR --device cpu --repeats 5 --batches 4`"))
    demo = load("demo_cpu.json", folder)
    if demo:
        runs = demo["runs"]
        by_time = sorted(runs, key=lambda r: r["seconds"])
        secs = " to ".join(f"{r['seconds']} s ({r['seconds_cover']})" for r in (by_time[0], by_time[-1]))
        best = sorted(r["best_val_top1"] for r in runs)
        last = sorted(r["last_val_top1"] for r in runs)
        rows.append(row(
            f"Demo training run (Quick start), dataset already generated, {len(runs)} machines",
            f"{secs}; val top-1 over {demo['classes']} classes: {best[0]:.2f}-{best[-1]:.2f}% "
            f"best, {last[0]:.2f}-{last[-1]:.2f}% last", f"`{demo['command']}`"))
        build = sorted(r["native_build_s"] for r in runs)
        rows.append(row("Compiling the native operators, once per machine and DALI version",
                        f"{build[0]:.1f}-{build[-1]:.1f} s", f"`{demo['build_command']}` (a new folder)"))
    scan = load("scan_speed_cpu.json", folder)
    if scan:
        quick = scan["results"]["quick, no cache"]
        rows.append(row(
            f"`dali-cutmix scan`, quick mode, {scan['files']:,} small JPEGs in the page cache",
            f"{quick['median_files_per_s']:,} files/s (median of {len(quick['rounds'])} rounds)",
            f"`{SCAN_SPEED_COMMAND}`"))
    return rows


def targets_rows(folder: Path = HERE) -> List[str]:
    """benchmarks/README.md's Targets rows, judged by check_targets.py on profile_cpu.json; the GPU targets are
    listed as open while no GPU profile is committed."""
    sys.path.insert(0, str(HERE))
    try:
        import check_targets
    finally:
        sys.path.remove(str(HERE))
    rows = [row("target", "measured", "verdict"), "|---|---|---|"]
    profile = load("profile_cpu.json", folder)
    if profile:
        for r in check_targets.evaluate(profile):
            show = pct if r["percent"] else (lambda v: f"{v:.2f}x")
            verdict = "NOISE" if r["noise"] else "**met**" if r["met"] else "**NOT met**"
            rows.append(row(r["name"], f"{show(r['measured'])} (IQR {show(r['q1'])} to {show(r['q3'])}), "
                                       f"`profile_cpu.json`", verdict))
    for t in check_targets.TARGETS:
        if t.device == "gpu":
            rows.append(row(t.name, "no GPU figures are published yet", "open"))
    return rows


def variants_rows(folder: Path = HERE) -> List[str]:
    """benchmarks/README.md's table of the CPU profile's variants: images/s (median, IQR) and ms per batch, or why a
    variant was skipped."""
    rows = [row("variant", "images/s (median)", "IQR", "ms/batch"), "|---|---:|---:|---:|"]
    profile = load("profile_cpu.json", folder)
    if not profile:
        return rows
    for key, label in VARIANT_LABELS.items():
        v = profile["variants"].get(key)
        if v is not None:
            ips = v["images_per_s"]
            rows.append(row(label, f"{ips['median']:,.0f}", f"{ips['q1']:,.0f}-{ips['q3']:,.0f}",
                            f"{v['ms_per_batch']:.1f}"))
        elif key in profile.get("skipped", {}):
            why = profile["skipped"][key].split(" (")[0]
            rows.append(row(label, f"skipped: {why}", "", ""))
    return rows


def stage_rows(folder: Path = HERE) -> List[str]:
    """benchmarks/README.md's table of the stage alone per method, against one copy of its batch, with the DALI
    operators it adds on each device."""
    rows = [row("stage alone", "ms per batch (median, IQR)", "copies of the batch (median, IQR)",
                "operators, CPU", "operators, GPU"), "|---|---:|---:|---|---|"]
    profile = load("profile_cpu.json", folder)
    stage = profile and profile.get("stage")
    if not stage:
        return rows
    c = stage["copy_ms_per_batch"]
    b = stage["batch"]
    rows.append(row(f"one NumPy copy of the batch ({'x'.join(map(str, b['shape']))} {b['dtype']})",
                    f"{c['median']:.2f} ({c['q1']:.2f}-{c['q3']:.2f})", "1", "", ""))
    for key, name in STAGE_METHODS.items():
        m = stage["methods"][key]
        ms, cp = m["ms_per_batch"], m["copies"]
        rows.append(row(name, f"{ms['median']:.2f} ({ms['q1']:.2f}-{ms['q3']:.2f})",
                        f"**{cp['median']:.2f}** ({cp['q1']:.2f}-{cp['q3']:.2f})",
                        f"{m['operator_count']['cpu']}: " + ", ".join(m["operators"]["cpu"]),
                        f"{m['operator_count']['gpu']}: " + ", ".join(m["operators"]["gpu"])))
    return rows


def paired_rows(folder: Path = HERE) -> List[str]:
    """benchmarks/README.md's table of the paired figures: each of our variants against each peer (or against its
    own stages), the augmentation each side applies as the JSON records it, and the ratio of their images/s,
    paired per round (median, IQR)."""
    rows = [row("ours", "against", "augmentation, ours", "augmentation, theirs", "ours / theirs (median, IQR)"),
            "|---|---|---|---|---:|"]
    profile = load("profile_cpu.json", folder)
    if not profile:
        return rows
    for key, pair in pairs_of(profile).items():
        summary = profile.get(key)
        if not summary:
            continue
        ours, theirs = (augmentation_of(profile, pair[side]) or UNRECORDED for side in ("ours", "theirs"))
        rows.append(row(label_of(pair["ours"]), label_of(pair["theirs"]), ours,
                        "the same" if theirs == ours and ours != UNRECORDED else theirs, ratio(summary)))
    return rows


TABLES = {"readme": readme_rows, "targets": targets_rows, "variants": variants_rows, "stage": stage_rows,
          "paired": paired_rows}


def table(name: str, folder: Path = HERE) -> str:
    """The table ``name`` as Markdown lines, ending with a newline."""
    return "\n".join(TABLES[name](folder)) + "\n"


def between_markers(text: str, name: str) -> str:
    """What a page holds between table ``name``'s markers; raises ValueError when a marker is missing."""
    begin = begin_marker(name)
    if begin not in text or END_MARKER not in text.split(begin, 1)[1]:
        raise ValueError(f"the page lacks the markers {begin!r} ... {END_MARKER!r}")
    return text.split(begin, 1)[1].split(END_MARKER, 1)[0].lstrip("\n")


def write(name: str) -> None:
    """Put table ``name`` between its markers in its page (a temporary file, then a rename)."""
    page = PAGES[name]
    text = page.read_text()
    between_markers(text, name)  # both markers are there
    begin = begin_marker(name)
    head, rest = text.split(begin, 1)
    tail = rest.split(END_MARKER, 1)[1]
    tmp = page.with_name(f".{page.name}.tmp")
    tmp.write_text(head + begin + "\n" + table(name) + END_MARKER + tail)
    tmp.replace(page)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", nargs="?", choices=sorted(TABLES), help="print one table")
    parser.add_argument("--write", action="store_true", help="write every table into its page")
    parser.add_argument("--json-dir", type=Path, default=HERE,
                        help="the folder of the benchmarks' JSON files [default: benchmarks/]")
    args = parser.parse_args(argv)
    if args.write and args.json_dir != HERE:
        parser.error("--write takes the committed JSON only (no --json-dir)")
    if args.write:
        for name in TABLES:
            write(name)
        return 0
    if not args.table:
        parser.error("name a table or pass --write")
    print(table(args.table, args.json_dir), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
