"""Per-epoch metrics: ``OUTPUT/metrics.jsonl``, one JSON object per epoch, every epoch exactly once.

Each line holds ``epoch`` (1-based), ``train_loss``, ``mixing`` (whether the mixing schedule had mixing on in this
epoch: ``--mixing`` and before ``--mix-off-epoch``), ``mixed_targets`` (share of the epoch's training targets that
hold two classes, all ranks), ``val_top1``, ``val_top5`` (percent, over the whole val
split and all ranks), ``images_per_s`` (training images of all ranks per second of training), ``data_wait``
(share of the step time spent waiting for the next batch, mean over ranks), ``lr`` (at the epoch's last step),
``epoch_time_s`` (training, slowest rank), ``val_time_s``, ``train_images``, ``val_images``, ``best_top1``,
``best_epoch`` and ``time`` (UTC, ISO 8601).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from dali_cutmix.helpers.atomic import atomic_path

METRICS_FILE = "metrics.jsonl"


def read_metrics(path) -> List[Dict[str, Any]]:
    """The records of a metrics file, in file order; lines that are not complete JSON objects (a line cut by a
    kill) are skipped. A missing file gives []."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


class MetricsLog:
    """Appends epoch records to ``metrics.jsonl``; :meth:`rewind` makes it match a checkpoint on resume."""

    def __init__(self, output_dir):
        self.path = Path(output_dir) / METRICS_FILE

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one epoch's record as one line (flushed and fsynced before returning)."""
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(dict(record), sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewind(self, epoch: int, record: Optional[Mapping[str, Any]] = None) -> None:
        """Keep the records of epochs ``1 .. epoch`` once each (the last of duplicates), drop later ones and any
        torn line, and add ``record`` (the checkpoint's own record of ``epoch``) if that epoch is missing.

        Written atomically: a kill during the rewrite leaves the old file.
        """
        kept: Dict[int, Dict[str, Any]] = {}
        for r in read_metrics(self.path):
            if r["epoch"] <= epoch:
                kept[r["epoch"]] = r
        if record is not None and epoch >= 1 and epoch not in kept:
            kept[epoch] = dict(record)
        if not kept and not self.path.exists():
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(kept[e]) + "\n" for e in sorted(kept)))
