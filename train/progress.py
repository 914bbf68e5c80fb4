"""The progress display rank 0 shows: :class:`dali_cutmix.progress.Progress` (it lives in the core, so the data
scan below the trainer shows the same bar)."""

from dali_cutmix.progress import BAR_WIDTH, Progress

__all__ = ["BAR_WIDTH", "Progress"]
