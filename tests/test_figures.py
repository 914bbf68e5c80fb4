"""One source for each figure: the figures tables of README.md and benchmarks/README.md are what
benchmarks/figures.py prints from the committed JSON, and the detailed tables and prose of benchmarks/README.md
hold the JSON's numbers, read by key. After a new measurement, ``python benchmarks/figures.py --write`` and the
detailed tables' numbers are the only edits. The script is run as a command (no test imports from benchmarks/)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PAGE = (BENCH / "README.md").read_text()
FLAT = " ".join(PAGE.split())  # the page's prose with its line breaks as spaces
PAGES = {"readme": ROOT / "README.md", "targets": BENCH / "README.md", "variants": BENCH / "README.md",
         "stage": BENCH / "README.md", "paired": BENCH / "README.md"}
END = "<!-- figures: end -->"


def figures(table: str, json_dir: Path = BENCH) -> str:
    """What ``python benchmarks/figures.py TABLE --json-dir DIR`` prints."""
    done = subprocess.run([sys.executable, str(BENCH / "figures.py"), table, "--json-dir", str(json_dir)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def between_markers(text: str, table: str) -> str:
    begin = f"<!-- figures: begin (python benchmarks/figures.py {table}) -->\n"
    assert text.count(begin) == 1 and END in text.split(begin, 1)[1], f"the markers of {table!r} are missing"
    return text.split(begin, 1)[1].split(END, 1)[0]


def profile():
    return json.loads((BENCH / "profile_cpu.json").read_text())


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_holds_the_table_printed_from_the_json(name):
    assert between_markers(PAGES[name].read_text(), name) == figures(name)


def test_the_readme_table_carries_the_profiles_figures_and_command():
    p = profile()
    table = figures("readme")
    assert f"**{p['loader_vs_reference']['median']:.2f}x**" in table
    assert f"{p['variants']['loader']['images_per_s']['median']:.0f} vs " in table
    assert f"`{p['command']}`" in table
    assert "61 s (the whole command) to 173 s (the training alone)" in table
    assert "75.56-80.56% best, 75.56-78.89% last" in table and "`time dali-cutmix train`" in table


def test_a_missing_json_leaves_its_rows_out(tmp_path):
    folder = tmp_path / "benchmarks"
    shutil.copytree(BENCH, folder, ignore=shutil.ignore_patterns("*.png", "__pycache__"))
    (folder / "scan_speed_cpu.json").unlink()
    rows, full = figures("readme", folder).splitlines(), figures("readme").splitlines()
    assert rows[:2] == ["| figure | value | command |", "|---|---|---|"]
    assert rows == [r for r in full if "dali-cutmix scan" not in r]
    assert len(rows) == len(full) - 1


def test_the_targets_table_judges_the_profile():
    table = figures("targets")
    r = profile()["loader_vs_reference"]
    assert (f"| loader >= 2x torchvision reference (CPU, same cores) | {r['median']:.2f}x (IQR {r['q1']:.2f}x to "
            f"{r['q3']:.2f}x), `profile_cpu.json` | **met** |") in table
    assert table.count("no GPU figures are published yet") == 3


def test_the_profile_table_holds_the_jsons_variants():
    p = profile()
    number = {"decode": 1, "crop": 2, "cutmix": 3, "full": 4, "loader": 5, "after_loader": 6, "reference": 8,
              "reference_tensor": 9}
    for key, n in number.items():
        v = p["variants"][key]
        ips = v["images_per_s"]
        found = re.search(rf"^\| {n} [^|]+\| ([\d,]+) \| ([\d,]+)-([\d,]+) \| ([\d.]+) \|$", PAGE, flags=re.M)
        assert found, f"no row for variant {n} ({key})"
        shown = [float(x.replace(",", "")) for x in found.groups()]
        assert shown == [round(ips["median"]), round(ips["q1"]), round(ips["q3"]), round(v["ms_per_batch"], 1)]
    r, t = p["loader_vs_reference"], p["loader_vs_reference_tensor"]
    assert f"**{r['median']:.2f}x** (IQR {r['q1']:.2f}-{r['q3']:.2f}x)" in FLAT
    assert f"**{t['median']:.2f}x** (IQR {t['q1']:.2f}-{t['q3']:.2f}x)" in FLAT
    a = p["loader_vs_after_loader"]
    assert f"**{a['median']:.2f}x** (IQR {a['q1']:.2f}-{a['q3']:.2f}x)" in FLAT


def test_the_stage_rows_hold_the_profiles_stage_figures():
    stage = profile()["stage"]
    table = figures("stage")
    for key in ("cutmix", "mixup", "switch"):
        m = stage["methods"][key]
        assert f"**{m['copies']['median']:.2f}** ({m['copies']['q1']:.2f}-{m['copies']['q3']:.2f})" in table
        assert f"{m['operator_count']['gpu']}: " + ", ".join(m["operators"]["gpu"]) in table
    assert f"{stage['copy_ms_per_batch']['median']:.2f}" in table
    assert "copies**" in figures("readme")


def test_the_shard_table_holds_the_jsons_loader_figures():
    for pair in (3, 4):
        for source in ("folder", "shards"):
            p = json.loads((BENCH / "shards_cpu" / f"profile-{source}-{pair}.json").read_text())
            found = re.search(rf"^\| {source}, pair {pair} \([^)]*\) \|(.*)\|$", PAGE, flags=re.M)
            assert found, (source, pair)
            cells = [float(c.strip(" *").replace(",", "")) for c in found.group(1).split("|")]
            want = [round(p["variants"][k]["images_per_s"]["median"]) for k in ("decode", "crop", "cutmix", "full",
                                                                                "loader")]
            assert cells == want, (source, pair)


def test_a_profile_with_matched_peers_gets_its_pairs_rows(tmp_path):
    """A profile that records each variant's augmentation, the paper pair and the loader's rate over its crop
    stage: the README gets a row for each, and the paired table names both sides' transforms."""
    folder = tmp_path / "benchmarks"
    shutil.copytree(BENCH, folder, ignore=shutil.ignore_patterns("*.png", "__pycache__"))
    p = profile()
    ours = ["RandomResizedCrop(scale (0.08, 1), ratio (3/4, 4/3))", "RandomHorizontalFlip(0.5)",
            "Normalize(ImageNet mean, std)"]
    paper = ours[:2] + ["ColorJitter(0.4)", "Lighting(0.1)"] + ours[2:]
    for key, variant in p["variants"].items():
        variant["augmentation"] = ours
    p["variants"]["crop"]["augmentation"] = ours[:1]
    for key, ips in (("loader_paper", 700.0), ("reference_paper", 280.0)):
        p["variants"][key] = dict(p["variants"]["loader"], augmentation=paper,
                                  images_per_s=dict(p["variants"]["loader"]["images_per_s"], median=ips))
    summary = dict(median=2.5, q1=2.4, q3=2.6, min=2.3, max=2.7, n=15, iqr_pct=8.0)
    p["loader_paper_vs_reference_paper"] = summary
    p["loader_vs_crop"] = dict(summary, median=0.912, q1=0.9, q3=0.93)
    p["loader_vs_full"] = dict(summary, median=0.99, q1=0.98, q3=1.0)
    p["pairs"] = {"loader_vs_reference": dict(ours="loader", theirs="reference"),
                  "loader_paper_vs_reference_paper": dict(ours="loader_paper", theirs="reference_paper"),
                  "loader_vs_crop": dict(ours="loader", theirs="crop")}
    (folder / "profile_cpu.json").write_text(json.dumps(p))
    readme = figures("readme", folder)
    t = p["loader_vs_timm_loader"]["median"]
    assert (f"| {p['variants']['loader']['images_per_s']['median']:.0f} vs "
            f"{p['variants']['timm_loader']['images_per_s']['median']:.0f} images/s: **{t:.2f}x**") in readme
    assert "the same augmentation on both sides (timm's `color_jitter=None`)" in readme
    assert "| 700 vs 280 images/s: **2.50x** |" in readme
    assert "| **91.2%** of its rate (IQR 90.0% to 93.0%); 99.0% of the full pipeline run directly |" in readme
    paired = figures("paired", folder).splitlines()
    assert len(paired) == 2 + 3  # the profile's pairs only
    assert paired[3] == ("| 12 full pipeline with the paper's augmentation (`augment=\"paper\"`) -> torch "
                         "(`CutMixLoader`) | 13 torchvision reference (PIL) with the official CutMix `ColorJitter` + "
                         f"`Lighting` | {', '.join(paper)} | the same | **2.50x** (IQR 2.40-2.60x) |")
    assert paired[4].endswith(f"| 2 + random-resized-crop | {', '.join(ours)} | {ours[0]} | **0.91x** (IQR 0.90-0.93x) |")
    # a profile made before the peers' augmentation was recorded: no timm row (its peer did more work), and the
    # paired table says so
    for variant in p["variants"].values():
        variant.pop("augmentation")
    del p["pairs"]
    (folder / "profile_cpu.json").write_text(json.dumps(p))
    assert "color_jitter=None" not in figures("readme", folder)
    assert figures("paired", folder).count("| not recorded (a profile made before the peers' augmentation was "
                                           "matched to ours) |") >= 2
