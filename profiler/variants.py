"""What the profiler measures: the variants' keys, labels and descriptions (the JSON's, the table's, the chart's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Variant:
    """One measured variant: ``key`` (JSON), ``label`` (table, chart) and what it does."""

    key: str
    label: str
    description: str


VARIANTS: Tuple[Variant, ...] = (
    Variant("decode", "1 read + decode", "file reader + full-image JPEG decode (decoders.image)"),
    Variant("crop", "2 + random-resized-crop",
            "file reader + decoders.image_random_crop (ROI decode) + resize to the crop"),
    Variant("cutmix", "3 + CutMix", "stage 2 + dali_cutmix.cutmix (mixed images, soft labels)"),
    Variant("full", "4 + flip/normalize (full)",
            "stage 3 + crop_mirror_normalize: the whole build_cutmix_pipeline graph"),
    Variant("loader", "5 full -> torch (CutMixLoader)", "the full pipeline through CutMixLoader to torch tensors"),
    Variant("reference", "6 torchvision reference",
            "ImageFolder + DataLoader (workers = threads) + v2 RandomResizedCrop/flip/normalize + v2.CutMix "
            "in collate_fn, to torch tensors"),
)
VARIANT_KEYS = tuple(v.key for v in VARIANTS)
#: The variants that are one DALI pipeline run directly (the others wrap the full one, or are torchvision's).
STAGES = ("decode", "crop", "cutmix", "full")
#: The mixing stage alone, on a fixed batch, with and without the stage (see ``runners.IsolatedStageRunner``).
ISOLATED = "cutmix_stage"
#: The key of the record of other processes' CPU use during the variants (see ``machine.CpuLoadMeter``).
LOAD = "machine_load"
