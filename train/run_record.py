"""What a run tells its user: console lines, ``run.json`` (the settings) and ``ranks.json`` (one entry per rank)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from dali_cutmix.helpers.atomic import atomic_path

RUN_FILE = "run.json"
RANKS_FILE = "ranks.json"


def write_json(path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


def state_digest(module) -> str:
    """SHA-256 over ``module``'s state_dict (names, dtypes, shapes and bytes), to compare weights across ranks."""
    import torch

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def epoch_line(record: Mapping[str, Any], epochs: int, classes: int) -> str:
    """One console line summarising an epoch's metrics record; top-5 only where 5 < ``classes`` (with 5 classes or
    fewer it is 100% by construction); the model EMA's top-1 when the run has one."""
    top5 = f"  top-5 {record['val_top5']:.2f}%" if classes > 5 else ""
    ema = f"EMA top-1 {record['ema_val_top1']:.2f}%  " if record.get("ema_val_top1") is not None else ""
    return (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}  "
            f"val top-1 {record['val_top1']:.2f}%{top5}  {ema}"
            f"{record['images_per_s']:.0f} img/s  data wait {100 * record['data_wait']:.0f}%  "
            f"lr {record['lr']:.4g}  {record['epoch_time_s']:.1f}s")


def gpu_memory(device, cuda=None):
    """What the rank holds on its GPU, in bytes, as ``run.json`` records it after the pipelines are built:
    ``reserved`` (``torch.cuda.memory_reserved``: torch's caching allocator), ``used`` (``total - free`` of
    ``torch.cuda.mem_get_info``: every allocation on the device, DALI's and nvImageCodec's included, and other
    processes'), ``total``. None on the CPU. ``cuda``: the ``torch.cuda`` module (a test passes a stand-in)."""
    if getattr(device, "type", str(device)) != "cuda":
        return None
    if cuda is None:
        import torch

        cuda = torch.cuda
    free, total = cuda.mem_get_info(device)
    return dict(reserved=int(cuda.memory_reserved(device)), used=int(total - free), total=int(total))
