"""What the profiler measures: the variants' keys, labels, descriptions and augmentation (the JSON's, the table's,
the chart's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

#: The per-sample transforms the variants apply, named as their sources name them (the JSON's ``augmentation``).
CROP = "RandomResizedCrop(scale (0.08, 1), ratio (3/4, 4/3))"
FLIP = "RandomHorizontalFlip(0.5)"
NORMALIZE = "Normalize(ImageNet mean, std)"
POLICIES = {"trivial-augment-wide": "TrivialAugmentWide", "rand-augment": "RandAugment"}


def transforms(options) -> Tuple[str, ...]:
    """The per-sample transforms, by name and in order (mixing aside), of our training pipeline with the
    augmentation ``options`` (:class:`dali_cutmix.AugmentOptions`): crop, flip, the policy, the official CutMix
    ColorJitter and Lighting, normalize, random erasing (``dali_cutmix.augment.augment_images``' order)."""
    names = [CROP, FLIP]
    if options.auto_augment != "none":
        policy = POLICIES[options.auto_augment]
        if options.auto_augment == "rand-augment":
            policy += (f"(n {options.rand_augment_ops}, m {options.rand_augment_magnitude:g}, "
                       f"mstd {options.rand_augment_magnitude_std:g})")
        names.append(policy)
    if options.color_jitter:
        v = options.color_jitter
        names.append(f"ColorJitter(brightness {v:g}, contrast {v:g}, saturation {v:g}) (official CutMix utils)")
    if options.lighting:
        names.append(f"Lighting(alphastd {options.lighting:g}, ImageNet PCA) (official CutMix utils)")
    names.append(NORMALIZE)
    if options.erase_prob:
        names.append(f"RandomErasing(p {options.erase_prob:g}, fill {options.erase_mode})")
    return tuple(names)


@dataclass(frozen=True)
class Variant:
    """One measured variant: ``key`` (JSON), ``label`` (table, chart), what it does, and ``augment``: the
    augmentation it runs or matches, a preset name of :data:`dali_cutmix.augment_options.PRESETS`, or None for the
    settings' (``ProfileSettings.augment``); :func:`variant_augmentation` names its transforms."""

    key: str
    label: str
    description: str
    augment: Optional[str] = None


VARIANTS: Tuple[Variant, ...] = (
    Variant("decode", "1 read + decode", "file reader + full-image JPEG decode (decoders.image)"),
    Variant("crop", "2 + random-resized-crop",
            "file reader + decoders.image_random_crop (ROI decode) + resize to the crop"),
    Variant("cutmix", "3 + CutMix", "stage 2 + dali_cutmix.cutmix (mixed images, soft labels)"),
    Variant("full", "4 + flip/normalize (full)",
            "stage 3 + crop_mirror_normalize: the whole build_cutmix_pipeline graph"),
    Variant("loader", "5 full -> torch (CutMixLoader)", "the full pipeline through CutMixLoader to torch tensors"),
    Variant("dynamic", "5d full -> torch (DALI Dynamic)",
            "the same input in DALI Dynamic mode: dali_cutmix.dynamic_nodes.training_loader (a torchdata.nodes "
            "graph: read, decode + random crop, resize, mix, flip/normalize) to torch tensors; needs torchdata: the "
            "'dynamic' extra"),
    Variant("after_loader", "6 no stage -> torch, v2.CutMix",
            "the full pipeline without the mixing stage (mixing=False) through CutMixLoader, then torchvision's "
            "v2.CutMix (v2.RandomChoice of v2.CutMix and v2.MixUp with MixUp on) on the loader's batch, on its "
            "device: mixing after the loader"),
    Variant("after_loader_timm", "7 no stage -> torch, timm Mixup",
            "the full pipeline without the mixing stage through CutMixLoader, then timm.data.Mixup with the "
            "settings' mixing options on the loader's batch, on its device (needs timm: the 'bench' extra)"),
    Variant("reference", "8 torchvision reference (PIL)",
            "ImageFolder + DataLoader (workers = threads) + v2 RandomResizedCrop/flip on the PIL image, "
            "PILToTensor, ToDtype/normalize + v2.CutMix in collate_fn, to torch tensors"),
    Variant("reference_tensor", "9 torchvision reference (tensor)",
            "as 8 with the recipe's --backend tensor: PILToTensor first, then v2 RandomResizedCrop/flip on the "
            "uint8 tensor, ToDtype/normalize + v2.CutMix in collate_fn"),
    Variant("timm_loader", "10 timm create_loader (batch)",
            "timm's own loader: create_loader over ImageDataset (workers = threads; timm's train transform with "
            "our augmentation: color_jitter=None, no auto_augment, re_prob 0) with FastCollateMixup (the "
            "settings' mixing options, mode batch: CutMix/MixUp in the collate, on uint8) and its PrefetchLoader "
            "(normalize on the device); needs timm: the 'bench' extra"),
    Variant("timm_loader_elem", "11 timm create_loader (elem)", "as 10 with FastCollateMixup in mode elem"),
    Variant("loader_paper", "12 loader, paper augmentation",
            "as 5 with the paper's augmentation in the pipeline (build_cutmix_pipeline(augment='paper'): the "
            "official ColorJitter(0.4, 0.4, 0.4) and Lighting(0.1) on each image)", augment="paper"),
    Variant("reference_paper", "13 reference, paper augmentation",
            "as 8 with the official CutMix train.py's transform: RandomResizedCrop, flip, ToTensor, its "
            "utils.ColorJitter(0.4, 0.4, 0.4) and utils.Lighting(0.1) on the float tensor, Normalize "
            "(pipelines.reference)", augment="paper"),
)
VARIANT_KEYS = tuple(v.key for v in VARIANTS)
#: The variants that are one DALI pipeline run directly (the others wrap the full one, or are torchvision's).
STAGES = ("decode", "crop", "cutmix", "full")
#: The variants also timed with the builder's prefetching when the settings ask for it (``async_stages``): the
#: stages, and our loader as training runs it.
ASYNC_TWINS = STAGES + ("loader",)
#: The variants that mix after the loader, each with its batch mixer (see ``runners.AfterLoaderRunner``).
AFTER_LOADER = ("after_loader", "after_loader_timm")
#: timm's own loaders and their FastCollateMixup mode (see ``timm_loader.TimmLoaderRunner``).
TIMM_LOADERS = dict(timm_loader="batch", timm_loader_elem="elem")
#: The torchvision reference loaders and their transform's backend (``pipelines.reference.reference_transform``).
REFERENCE_BACKENDS = dict(reference="pil", reference_tensor="tensor", reference_paper="pil")
#: Each variant's augmentation preset (:attr:`Variant.augment`; None: the settings'), by key.
AUGMENTS = {v.key: v.augment for v in VARIANTS}


def variant_options(key: str, settings_augment):
    """The :class:`dali_cutmix.AugmentOptions` variant ``key`` runs: its preset's, or ``settings_augment``."""
    from dali_cutmix.augment_options import AugmentOptions

    preset = AUGMENTS[key]
    return settings_augment if preset is None else AugmentOptions.coerce(preset)


def variant_augmentation(key: str, settings_augment) -> Tuple[str, ...]:
    """The per-sample transforms variant ``key`` applies (:func:`transforms`) with the settings' augmentation
    ``settings_augment``: none for the decode stage, the crop alone for the crop stage and for the mixing stage
    without augmentation (the pipeline augments before the stage, and flips and normalizes after it otherwise)."""
    options = variant_options(key, settings_augment)
    if key == "decode":
        return ()
    if key == "crop" or (key == "cutmix" and not options.active):
        return (CROP,)
    return transforms(options)
#: The mixing stage alone with the settings' options, on a fixed batch: what it adds to the fed batch (see
#: ``runners.StageAloneRunner``).
ISOLATED = "cutmix_stage"
#: The mixing methods whose stage is also timed alone on the fixed batch, each with the MixOptions fields it sets
#: over the settings' options (mode, smoothing, prob kept): CutMix, MixUp, and switching between them (timm's
#: ``mixup_alpha`` default 0.8, ``switch_prob`` 0.5).
STAGE_METHODS = dict(cutmix=dict(cutmix_alpha=1.0, mixup_alpha=0.0, cutmix_minmax=None),
                     mixup=dict(cutmix_alpha=0.0, mixup_alpha=0.8, cutmix_minmax=None),
                     switch=dict(cutmix_alpha=1.0, mixup_alpha=0.8, cutmix_minmax=None, switch_prob=0.5))
#: The key of the record of other processes' CPU use during the variants (see ``machine.CpuLoadMeter``).
LOAD = "machine_load"
#: The key of the variants not measured, each with the reason (see ``timing.VariantUnavailable``).
SKIPPED = "skipped"
#: Appended to a stage's key: the same stage timed with the builder's prefetching (see ``runners``).
ASYNC_SUFFIX = "_async"


def stage_key(method: str) -> str:
    """The runner key of the mixing stage alone with method ``method`` (one of :data:`STAGE_METHODS`)."""
    return f"stage_{method}"


#: The runners whose figures are ms per batch (what the stage adds to its fed batch), not images/s.
MS_KEYS = (ISOLATED,) + tuple(stage_key(m) for m in STAGE_METHODS)


def copy_key(key: str) -> str:
    """The figures' key of the batch copies timed between the batches of stage-alone runner ``key`` (one of
    :data:`MS_KEYS`): the unit that stage's cost is reported in."""
    return f"{key}_copy"


def async_key(stage: str) -> str:
    """The runner key of ``stage`` (one of :data:`STAGES`) timed asynchronously, with prefetching."""
    return stage + ASYNC_SUFFIX
