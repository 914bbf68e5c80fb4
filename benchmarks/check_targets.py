"""The project's throughput targets, checked against a ``dali-cutmix profile`` JSON.

    python benchmarks/check_targets.py profile.json [--strict]

Prints one line per target of the run's device (met, NOT met or NOISE, the measured median, its quartiles, whether
the run was made under the conditions the target is stated for) and exits 0 when every target is met, 1 when one
is not, 2 when the file cannot be read. A target is met when its median meets the threshold; ``--strict`` also
asks it of the whole interquartile range and asks for the target's conditions. A share (a cost, never below 0 in
truth) whose median is at or below 0 is NOISE, never met: the run could not tell the cost from zero.

The targets live here, not in the profiler: the profiler reports figures, this script judges them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional


@dataclass(frozen=True)
class Target:
    """A threshold on one summarized figure of the profile JSON.

    ``figure`` is the dotted path of a dict with ``median``, ``q1`` and ``q3`` (e.g. ``cutmix_share``), or of one
    number. ``optional``: a figure a profile may lack (the training step's, only with ``--model``; the loader's rate
    over its crop stage, which profiles made before it was measured lack); without it (or with it null: a variant
    it is taken from was not measured) the target is left out.
    ``at_least``: the figure must be >= ``threshold`` (else <=). ``conditions``: the settings the target is stated
    for (``settings.<name>`` values); ``gpu``: a word the GPU's name must contain.
    """

    name: str
    device: str
    figure: str
    threshold: float
    at_least: bool
    conditions: Mapping[str, object] = field(default_factory=dict)
    gpu: Optional[str] = None
    percent: bool = False  # print the figure as a percentage
    optional: bool = False
    share: bool = False  # a cost share: at or below 0 only in noise, never a pass

    def describe_conditions(self) -> str:
        words = [self.device] + ([self.gpu] if self.gpu else [])
        words += [f"{k.replace('_', ' ')} {v}" for k, v in self.conditions.items()]
        return ", ".join(words)


CPU_CONDITIONS = dict(threads=2, batch_size=64, crop=224)
TARGETS = (
    Target("loader >= 2x torchvision reference (CPU, same cores)", "cpu", "loader_vs_reference", 2.0,
           at_least=True, conditions=CPU_CONDITIONS),
    Target("CutMix <= 3% of the full pipeline (CPU)", "cpu", "cutmix_share", 0.03, at_least=False,
           conditions=CPU_CONDITIONS, percent=True, share=True),
    Target("CutMix stage alone <= 1.5 copies of its batch (CPU)", "cpu", "stage.methods.cutmix.copies", 1.5,
           at_least=False, conditions=CPU_CONDITIONS, share=True),
    Target("CutMixLoader >= 90% of its pipeline's decode + crop + resize rate (CPU)", "cpu", "loader_vs_crop", 0.9,
           at_least=True, conditions=CPU_CONDITIONS, percent=True, optional=True),
    Target("CutMix <= 1% of the full GPU pipeline", "gpu", "cutmix_share", 0.01, at_least=False, percent=True,
           share=True),
    Target("GPU pipeline >= 8,000 images/s, prefetching (one H100, batch 256)", "gpu",
           "variants.full.images_per_s_async", 8000.0,
           at_least=True, conditions=dict(batch_size=256, crop=224), gpu="H100"),
    Target("ResNet-50 waits for data < 2% of its step time (GPU, --model resnet50)", "gpu",
           "training.data_wait_share", 0.02, at_least=False, conditions=dict(batch_size=256), gpu="H100",
           percent=True, optional=True),
)


def lookup(result: Mapping, path: str):
    """``result``'s value at the dotted ``path``; raises KeyError naming the path."""
    value = result
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(f"the profile has no {path!r}")
        value = value[part]
    return value


def evaluate(result: Mapping) -> List[Dict[str, object]]:
    """Every target of the result's device: ``name``, ``threshold``, ``measured`` (median), ``q1``, ``q3``,
    ``met`` (the median), ``met_whole_iqr`` (the worse quartile), ``conditions_match``, ``conditions``, ``noise``
    (a share whose median is at or below 0: not met, whatever the threshold) and ``noisy_iqr`` (a share whose
    lower quartile is below 0: the whole IQR is not met).

    Raises:
        KeyError: the result lacks a figure or setting a target needs.
    """
    settings = lookup(result, "settings")
    gpu_name = (result.get("machine") or {}).get("gpu") or ""
    rows = []
    for target in TARGETS:
        if target.device != settings["device"]:
            continue
        try:
            summary = lookup(result, target.figure)
        except KeyError:
            if target.optional:
                continue
            raise
        if summary is None and target.optional:
            continue
        if isinstance(summary, (int, float)):
            summary = dict(median=summary, q1=summary, q3=summary)
        median = summary["median"]
        worst = summary["q1"] if target.at_least else summary["q3"]

        def meets(value: float) -> bool:
            return value >= target.threshold if target.at_least else value <= target.threshold

        matches = all(settings.get(k) == v for k, v in target.conditions.items())
        matches = matches and (target.gpu is None or target.gpu in gpu_name)
        noise = target.share and median <= 0
        noisy_iqr = target.share and summary["q1"] < 0
        rows.append(dict(name=target.name, threshold=target.threshold, measured=median, q1=summary["q1"],
                         q3=summary["q3"], met=meets(median) and not noise,
                         met_whole_iqr=meets(worst) and not noise and not noisy_iqr, conditions_match=matches,
                         conditions=target.describe_conditions(), percent=target.percent, noise=noise,
                         noisy_iqr=noisy_iqr))
    return rows


def passed(rows: List[Mapping], *, strict: bool = False) -> bool:
    """Whether every row is met (with ``strict``: over its whole IQR, under its conditions)."""
    return all(r["met"] and (not strict or (r["met_whole_iqr"] and r["conditions_match"])) for r in rows)


def format_row(row: Mapping) -> str:
    """One target's line."""
    def show(v: float) -> str:
        return f"{100 * v:.1f}%" if row["percent"] else f"{v:,.2f}"

    verdict = "NOISE  " if row.get("noise") else "met    " if row["met"] else "NOT met"
    if row.get("noise"):
        iqr = ("a share at or below 0 is timing noise, not a small cost: re-measure with more --repeats or "
               "--batches on an idle machine")
    elif row.get("noisy_iqr"):
        iqr = "IQR reaches below 0: noisy"
    else:
        iqr = "whole IQR met" if row["met_whole_iqr"] else "IQR crosses the threshold"
    note = "" if row["conditions_match"] else f"; run not under the target's conditions ({row['conditions']})"
    return (f"{verdict} {row['name']}: {show(row['measured'])} (IQR {show(row['q1'])} to {show(row['q3'])}, "
            f"{iqr}){note}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path, help="the JSON written by dali-cutmix profile --json")
    parser.add_argument("--strict", action="store_true",
                        help="also require the whole IQR and the target's conditions")
    args = parser.parse_args(argv)
    try:
        rows = evaluate(json.loads(args.profile.read_text()))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.profile}: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.profile}: no target is stated for this run's device", file=sys.stderr)
        return 2
    for row in rows:
        print(format_row(row))
    return 0 if passed(rows, strict=args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
