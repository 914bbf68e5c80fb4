"""Training recipes: named sets of defaults, each overridable by a command-line flag.

``paper`` is the CutMix paper's ImageNet ResNet-50 recipe (Yun et al., ICCV 2019, section 4.1.1 and the
official code, clovaai/CutMix-PyTorch): 300 epochs, batch 256, SGD (momentum 0.9, Nesterov) at lr 0.1 per 256
images, weight decay 1e-4, lr divided by 10 at epochs 75, 150 and 225, CutMix alpha 1.0 applied to every batch
(prob 1.0), one box per batch.

``deit`` is DeiT's ImageNet recipe (Touvron et al., ICML 2021; the defaults of ``get_args_parser`` in
facebookresearch/deit ``main.py``, and its README for the batch): DeiT-B (``deit_base_patch16_224``, main.py's
default model, is ViT-B/16: torchvision's ``vit_b_16``), 300 epochs, batch 1024, AdamW at lr 5e-4 x batch/512,
weight decay 0.05 except on biases, norm layers, class token and position embeddings, cosine schedule after 5
warmup epochs, label smoothing 0.1, MixUp 0.8 / CutMix 1.0 switching per batch with probability 0.5, always mixing.

``torchvision-v2`` is torchvision's ResNet-50 "new training recipe" (the ``IMAGENET1K_V2`` weights, 80.858% top-1;
the command in pytorch/vision ``references/classification/README.md`` and the blog post "How to Train
State-Of-The-Art Models Using TorchVision's Latest Primitives"): 600 epochs, batch 1024 (8 GPUs x 128), SGD
momentum 0.9 at lr 0.5, weight decay 2e-5 (0 on norm layers), cosine after 5 linear warmup epochs, label smoothing
0.1, MixUp 0.2 / CutMix 1.0 chosen at random per batch, train crop 176, validation resize 232 / crop 224.

``demo`` is sized for the embedded demo dataset (6 classes of 96x96 textures) on a small CPU: a ResNet-18 at
48x48, started with identity residual blocks (``zero_init_residual``, which it needs to learn in a few hundred
steps), CutMix on half the samples, one draw per sample.

``deit`` and ``torchvision-v2`` keep a model EMA as their sources do (timm's ModelEma every step, decay 0.99996;
torchvision's every 32 steps, decay 0.99998 adjusted to the run: :mod:`dali_cutmix.train.ema`). Each recipe's per-image
augmentation is its source's (``augment``: a preset of :data:`dali_cutmix.augment_options.PRESETS`). What these
projects use and this trainer does not reproduce (repeated augmentation, stochastic depth, ...) is listed in
docs/training-reference.md. The settings
themselves are declared (help, check, locked on resume) in :mod:`dali_cutmix.train.config`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

# Each table sets every setting :class:`dali_cutmix.train.config.TrainConfig` declares with ``recipe=True`` (and the
# mixing options, under MixOptions' names); ``config.recipe_settings`` checks that. A new recipe setting is a
# TrainConfig field plus one line per table. ``None`` means: ``val_crop`` = ``crop``; the three extra weight decays
# = ``weight_decay``; ``cutmix_minmax``: boxes drawn from lam; ``mix_off_epoch`` = never.

PAPER: Mapping[str, Any] = MappingProxyType(dict(
    arch="resnet50",                  # paper 4.1.1: ResNet-50
    zero_init_residual=False,
    crop=224,                         # official train.py: RandomResizedCrop(224)
    val_crop=None,                    # = crop: CenterCrop(224)
    val_resize=256,                   # official train.py: Resize(256)
    min_area=0.08,                    # RandomResizedCrop's default scale (0.08, 1)
    epochs=300,                       # paper 4.1.1
    batch_size=256,                   # paper 4.1.1
    lr_per_256=0.1,                   # paper 4.1.1: initial lr 0.1
    optimizer="sgd",                  # official train.py: torch.optim.SGD
    momentum=0.9,                     # official train.py --momentum 0.9
    nesterov=True,                    # official train.py: nesterov=True
    weight_decay=1e-4,                # official train.py --weight-decay 1e-4, on every parameter
    norm_weight_decay=None,
    bias_weight_decay=None,
    transformer_embedding_decay=None,
    schedule="step",                  # paper 4.1.1: lr / 10 at epochs 75, 150, 225
    milestones=(75, 150, 225),
    lr_gamma=0.1,
    warmup_epochs=0,
    augment="paper",                  # the official utils.ColorJitter(0.4, 0.4, 0.4) + Lighting(0.1)
    mixing=True,                      # the mixing stage on
    cutmix_alpha=1.0,                 # paper 4.1.1 / README: --beta 1.0
    mixup_alpha=0.0,                  # CutMix only
    cutmix_minmax=None,               # boxes drawn from lam (paper eq. 2)
    prob=1.0,                         # README: --cutmix_prob 1.0
    switch_prob=0.5,                  # unused without MixUp
    mode="batch",                     # official train.py: one lam and one box per batch
    correct_lam=True,                 # official train.py: lam = 1 - clipped box area / image area
    label_smoothing=0.0,
    self_pairs=True,                  # partners from a permutation of the batch (MixOptions' default)
    mix_off_epoch=None,
    model_ema=None,                   # the official code keeps no EMA
    model_ema_steps=32,               # (unused: no EMA)
    model_ema_adjust=False,           # (unused: no EMA)
))

DEIT: Mapping[str, Any] = MappingProxyType(dict(
    arch="vit_b_16",                  # main.py --model deit_base_patch16_224 = ViT-B/16 (DeiT-B, 81.8% top-1)
    zero_init_residual=False,
    crop=224,                         # main.py --input-size 224
    val_crop=None,                    # = crop
    val_resize=256,                   # main.py --eval-crop-ratio 0.875: int(224 / 0.875) = 256
    min_area=0.08,                    # timm create_transform: RandomResizedCropAndInterpolation scale (0.08, 1)
    epochs=300,                       # main.py --epochs 300
    batch_size=1024,                  # README_deit.md: DeiT-B on 2 nodes x 8 GPUs x --batch-size 64
    lr_per_256=2.5e-4,                # main.py --lr 5e-4, scaled lr * batch * world_size / 512
    optimizer="adamw",                # main.py --opt adamw (betas 0.9/0.999, --opt-eps 1e-8: torch's defaults)
    momentum=0.9,                     # main.py --momentum 0.9 (SGD only: unused by AdamW)
    nesterov=False,
    weight_decay=0.05,                # main.py --weight-decay 0.05
    norm_weight_decay=0.0,            # timm create_optimizer(filter_bias_and_bn): no decay on 1-D params ...
    bias_weight_decay=0.0,            # ... (norm weights, biases) ...
    transformer_embedding_decay=0.0,  # ... nor on model.no_weight_decay() = {pos_embed, cls_token}
    schedule="cosine",                # main.py --sched cosine
    milestones=(),
    lr_gamma=0.1,
    warmup_epochs=5,                  # main.py --warmup-epochs 5
    augment="deit",                   # RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25 (pixel)
    mixing=True,                      # the mixing stage on
    cutmix_alpha=1.0,                 # main.py --cutmix 1.0
    mixup_alpha=0.8,                  # main.py --mixup 0.8
    cutmix_minmax=None,               # main.py --cutmix-minmax default None
    prob=1.0,                         # main.py --mixup-prob 1.0
    switch_prob=0.5,                  # main.py --mixup-switch-prob 0.5
    mode="batch",                     # main.py --mixup-mode batch
    correct_lam=True,                 # timm Mixup's default (main.py does not set it)
    label_smoothing=0.1,              # main.py --smoothing 0.1 (applied in timm's Mixup targets)
    self_pairs=False,                 # timm's Mixup pairs the batch with its flip: never a sample with itself
    mix_off_epoch=None,               # main.py has no mixup-off epoch
    model_ema=0.99996,                # main.py --model-ema --model-ema-decay 0.99996 (timm's ModelEma)
    model_ema_steps=1,                # ModelEma.update after every step
    model_ema_adjust=False,           # timm: the decay as given, from the initial weights
))

TORCHVISION_V2: Mapping[str, Any] = MappingProxyType(dict(
    arch="resnet50",                  # README: --model resnet50
    zero_init_residual=False,         # torchvision resnet50 default
    crop=176,                         # README: --train-crop-size 176
    val_crop=224,                     # train.py --val-crop-size default 224
    val_resize=232,                   # README: --val-resize-size 232
    min_area=0.08,                    # RandomResizedCrop's default scale (0.08, 1)
    epochs=600,                       # README: --epochs 600
    batch_size=1024,                  # README: torchrun --nproc_per_node=8 ... --batch-size 128
    lr_per_256=0.125,                 # README: --lr 0.5 for the global batch 1024 (= 0.125 x 1024/256)
    optimizer="sgd",                  # train.py --opt default sgd (not Nesterov)
    momentum=0.9,                     # train.py --momentum default 0.9
    nesterov=False,
    weight_decay=2e-5,                # README: --weight-decay 0.00002
    norm_weight_decay=0.0,            # README: --norm-weight-decay 0.0
    bias_weight_decay=None,           # not set: biases take --weight-decay
    transformer_embedding_decay=None,
    schedule="cosine",                # README: --lr-scheduler cosineannealinglr (eta_min = --lr-min 0)
    milestones=(),
    lr_gamma=0.1,
    warmup_epochs=5,                  # README: --lr-warmup-epochs 5 --lr-warmup-method linear
    augment="torchvision-v2",         # TrivialAugmentWide, random erasing 0.1
    mixing=True,                      # the mixing stage on
    cutmix_alpha=1.0,                 # README: --cutmix-alpha 1.0
    mixup_alpha=0.2,                  # README: --mixup-alpha 0.2
    cutmix_minmax=None,               # v2.CutMix draws its box from lam
    prob=1.0,                         # train.py: RandomChoice([MixUp, CutMix]) always applies one (p=1.0) ...
    switch_prob=0.5,                  # ... picking either with equal odds ...
    mode="batch",                     # ... for the whole batch, in the DataLoader's collate_fn
    correct_lam=True,                 # v2.CutMix: lam = 1 - clipped box area / image area
    label_smoothing=0.1,              # README: --label-smoothing 0.1
    self_pairs=False,                 # v2.CutMix/MixUp pair the batch with its roll: never a sample with itself
    mix_off_epoch=None,
    model_ema=0.99998,                # README: --model-ema (train.py --model-ema-decay default 0.99998)
    model_ema_steps=32,               # train.py --model-ema-steps default 32
    model_ema_adjust=True,            # train.py: decay adjusted by world_size x batch x steps / epochs
))

DEMO: Mapping[str, Any] = MappingProxyType(dict(
    arch="resnet18",
    zero_init_residual=True,
    crop=48,
    val_crop=None,
    val_resize=55,
    min_area=0.25,
    epochs=12,
    batch_size=32,
    lr_per_256=0.8,
    optimizer="sgd",
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    norm_weight_decay=None,
    bias_weight_decay=None,
    transformer_embedding_decay=None,
    schedule="cosine",
    milestones=(),
    lr_gamma=0.1,
    warmup_epochs=1,
    augment="none",                   # crop and flip only: a small CPU run
    mixing=True,
    cutmix_alpha=1.0,
    mixup_alpha=0.0,
    cutmix_minmax=None,
    prob=0.5,
    switch_prob=0.5,
    mode="elem",
    correct_lam=True,
    label_smoothing=0.0,
    self_pairs=True,                  # partners from a permutation of the batch (MixOptions' default)
    mix_off_epoch=None,
    model_ema=None,
    model_ema_steps=32,
    model_ema_adjust=False,
))

RECIPES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {"paper": PAPER, "deit": DEIT, "torchvision-v2": TORCHVISION_V2, "demo": DEMO})


def default_recipe(data) -> str:
    """The recipe used when ``--recipe`` is not given: ``paper`` for a user's data set, ``demo`` without ``--data``."""
    return "demo" if data is None else "paper"
