"""dali-cutmix: CutMix (Yun et al., ICCV 2019) as a stage inside NVIDIA DALI pipelines, on GPU or CPU.

Public API::

    from dali_cutmix import cutmix, mixup, mix, MixOptions, AugmentOptions, build_cutmix_pipeline, CutMixLoader

Importing this package imports nothing heavy; DALI and PyTorch load when the functions are used.
"""

from .options import MixOptions
from .stage import cutmix, mix, mixup

__version__ = "0.1.0"
__all__ = ["cutmix", "mixup", "mix", "MixOptions", "AugmentOptions", "build_cutmix_pipeline", "CutMixLoader",
           "soft_target_cross_entropy"]


def __getattr__(name):
    if name == "AugmentOptions":
        from .augment_options import AugmentOptions
        return AugmentOptions
    if name == "build_cutmix_pipeline":
        from .builder import build_cutmix_pipeline
        return build_cutmix_pipeline
    if name == "soft_target_cross_entropy":
        from .loss import soft_target_cross_entropy
        return soft_target_cross_entropy
    if name == "CutMixLoader":
        from .loader import CutMixLoader
        return CutMixLoader
    raise AttributeError(f"module 'dali_cutmix' has no attribute {name!r}")
