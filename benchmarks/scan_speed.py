"""How fast ``dali-cutmix scan`` checks files in quick mode: files/s over a generated tree of small JPEGs.

The tree (``--files`` files of ~3 KB spread over ``--classes`` class folders, in ImageNet layout's ``train/``) is
made once under ``--root`` (the same few JPEG encodings repeated: the quick check reads headers and ends, not
pixels). Each round scans it twice, with the scan cache off (every file opened and checked) and then with a
filled cache (every file only stat'ed), through :func:`dali_cutmix.pipelines.scan.scan_data`, as
``dali-cutmix scan`` runs it. The page cache is warm after the first round: figures are for files the OS has
in memory, the file-system speed of the machine, not of a cold disk.

    .venv/bin/python benchmarks/scan_speed.py --root /tmp/scan-bench --files 100000 --rounds 3 \\
        --json benchmarks/scan_speed_cpu.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_tree(root: Path, files: int, classes: int) -> Path:
    """``root/train/class<c>/<i>.JPEG``, ``files`` of them, written once (a finished tree is reused)."""
    import numpy as np
    from PIL import Image

    done = root / "complete"
    if done.exists():
        return root / "train"
    rng = np.random.default_rng(0)
    encodings = []
    for i in range(16):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48 + i, 64, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=85)
        encodings.append(buf.getvalue())
    for c in range(classes):
        (root / "train" / f"class{c:04d}").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        c = i % classes
        with open(root / "train" / f"class{c:04d}" / f"img_{i:07d}.JPEG", "wb") as f:
            f.write(encodings[i % len(encodings)])
    done.write_text("ok\n")
    return root / "train"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "dali-cutmix-scan-bench")
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="scan threads [default: the usable cores]")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    os.environ.setdefault("DALI_CUTMIX_CACHE", str(args.root / "cache"))
    from dali_cutmix.helpers.host import usable_cores
    from dali_cutmix.pipelines.scan import scan_data

    start = time.perf_counter()
    tree = make_tree(args.root, args.files, args.classes)
    print(f"tree: {tree} ({args.files} files, made or found in {time.perf_counter() - start:.1f} s)")
    jobs = args.jobs or usable_cores()
    rows = {"quick, no cache": [], "quick, cached": []}
    for r in range(args.rounds):
        result = scan_data(tree, mode="quick", jobs=jobs, use_cache=False, show_progress=False)
        assert result.total == args.files and result.all_usable
        rows["quick, no cache"].append(result.total / result.seconds)
        scan_data(tree, mode="quick", jobs=jobs, show_progress=False)  # fills the cache
        result = scan_data(tree, mode="quick", jobs=jobs, show_progress=False)
        assert result.cached == args.files
        rows["quick, cached"].append(result.total / result.seconds)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} files/s" for k, v in rows.items()))
    summary = {k: dict(median_files_per_s=round(statistics.median(v)), rounds=[round(x) for x in v])
               for k, v in rows.items()}
    for k, v in summary.items():
        print(f"{k}: median {v['median_files_per_s']:,} files/s over {args.rounds} rounds")
    if args.json:
        args.json.write_text(json.dumps(dict(
            files=args.files, classes=args.classes, jobs=jobs, results=summary,
            machine=dict(cpu=platform.processor() or platform.machine(), cores=usable_cores(),
                         python=sys.version.split()[0])), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
