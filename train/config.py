"""The resolved training configuration: a recipe's settings with the user's overrides applied, checked once."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from dali_cutmix.builder import check_decode, check_off_epoch, check_seed
from dali_cutmix.errors import UserError
from dali_cutmix.options import MixOptionError, MixOptions, flag_name

from .recipe import MIX_KEYS, default_recipe, recipe_settings

SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("auto", "bf16", "fp16", "off")
#: ``--scan``: how the data is checked before the first epoch (see :mod:`dali_cutmix.train.datalists`).
SCAN_MODES = ("quick", "full", "off")
#: Settings whose None has a meaning (see TrainConfig); the string "none" given for one sets it to None.
NULLABLE = ("val_crop", "norm_weight_decay", "bias_weight_decay", "transformer_embedding_decay", "cutmix_minmax",
            "mix_off_epoch")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs, checked on construction (ValueError naming the flag, see
    :func:`check_config`). Plain values and a :class:`~dali_cutmix.MixOptions`: it is pickled to worker processes,
    and :meth:`to_dict` is stored in checkpoints and ``run.json``. Build it with :func:`resolve_config`."""

    # the recipe's settings: no defaults here, train.recipe's table is their only source
    recipe: str
    arch: str
    zero_init_residual: bool
    crop: int
    val_crop: Optional[int]             # validation centre crop; None = crop
    val_resize: int
    min_area: float                     # random-resized-crop: smallest share of the image area
    epochs: int
    batch_size: int                     # global, over all ranks
    lr_per_256: float
    optimizer: str
    momentum: float                     # SGD only
    nesterov: bool                      # SGD only
    weight_decay: float
    norm_weight_decay: Optional[float]            # normalization layers; None = weight_decay
    bias_weight_decay: Optional[float]            # biases (before the norm rule); None = weight_decay
    transformer_embedding_decay: Optional[float]  # class token, position embeddings; None = weight_decay
    schedule: str
    milestones: Tuple[int, ...]
    lr_gamma: float
    warmup_epochs: float
    mixing: bool                        # the mixing stage on (False: the no-mix baseline, smoothed by mix)
    mix: MixOptions                     # CutMix and MixUp, timm's names and semantics
    mix_off_epoch: Optional[int]        # epochs 1..N mixed, off from N+1 (timm's --mixup-off-epoch); None = never
    # the run's own settings
    data: Optional[str] = None          # ImageNet-layout root; None = the embedded demo dataset
    output: Optional[str] = None        # run folder; None = runs/<timestamp> (chosen at launch)
    lr: Optional[float] = None          # peak lr for the global batch; None = lr_per_256 * batch_size / 256
    channels_last: bool = True
    compile: bool = False
    amp: str = "auto"                   # auto = bf16 on GPU, off on CPU
    workers: Optional[int] = None       # DALI threads per rank; None = CPU cores / local ranks, at most 8
    seed: int = 0
    gpus: Optional[int] = None          # processes (GPUs) per node; None = every GPU present (0 without one)
    cpu_procs: int = 1                  # CPU ranks (gloo) when gpus == 0
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: Optional[int] = None   # None = a free port (one node) or 29500 (several nodes)
    resume: Optional[str] = None        # None, "auto" or a checkpoint path
    save_every: int = 0                 # also keep epoch_NNNN.pt every this many epochs (0 = never)
    checkpoint_steps: Optional[int] = None      # also write last.pt every N steps inside an epoch (None = never)
    checkpoint_minutes: Optional[float] = None  # also write last.pt when M minutes passed since the last one
    log_every: int = 0                  # progress line every N steps when stderr is not a terminal (0 = every 30 s)
    deterministic: bool = False         # deterministic kernels on GPU too (always on for the CPU)
    scan: str = "quick"                 # check the data before the first epoch: quick, full (decode) or off
    decode: str = "roi"                 # training decode: the random crop's region only (roi) or the whole image

    def __post_init__(self):
        check_config(self)

    @property
    def base_lr(self) -> float:
        """The peak learning rate for the global batch: ``lr`` if given, else ``lr_per_256 * batch_size / 256``."""
        return float(self.lr) if self.lr is not None else self.lr_per_256 * self.batch_size / 256

    @property
    def eval_crop(self) -> int:
        """The validation centre crop: ``val_crop``, or ``crop`` when that is None."""
        return self.crop if self.val_crop is None else self.val_crop

    def mixing_in_epoch(self, epoch: int) -> bool:
        """Whether the training targets of (1-based) ``epoch`` are mixed: the stage is on and ``epoch <=
        mix_off_epoch`` (epochs 1..N mixed, off from N+1, as timm's ``--mixup-off-epoch N``; None: always)."""
        return self.mixing and (self.mix_off_epoch is None or epoch <= self.mix_off_epoch)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-type dict (lists for tuples; ``mix`` as :meth:`MixOptions.as_dict`) plus ``base_lr``, as stored in
        checkpoints and ``run.json``."""
        d = dataclasses.asdict(self)
        d.update(mix=self.mix.as_dict(), milestones=list(self.milestones), base_lr=self.base_lr)
        return d


#: The names :func:`resolve_config` takes: TrainConfig's fields, with the mixing options under MixOptions' names.
SETTINGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "mix") + MIX_KEYS


def absolute_data(data: Optional[str]) -> Optional[str]:
    """``--data`` as the run stores it: an absolute local path (a resumed run may start in another folder), a URL
    (``s3://...``) as it is, None (the demo dataset) as None."""
    if data is None or "://" in str(data):
        return data
    return os.path.abspath(os.path.expanduser(str(data)))


def resolve_config(overrides: Mapping[str, Any], base: Optional[Mapping[str, Any]] = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a recipe plus ``overrides`` (names of :data:`SETTINGS`; None values mean
    "not given").

    The recipe is ``overrides["recipe"]``, or :func:`dali_cutmix.train.recipe.default_recipe` of the data argument;
    ``base`` (a resumed run's settings, the names of :data:`SETTINGS`) replaces the recipe's values when given.
    "none" sets a :data:`NULLABLE` setting to None. ``data`` becomes an absolute path. The mixing options (the
    recipe's, then the given ones) become one :class:`~dali_cutmix.MixOptions`, which checks them. When ``crop`` or
    ``val_crop`` changes the validation crop and ``val_resize`` is not given, ``val_resize`` becomes
    ``round(crop * 256 / 224)`` of the new validation crop.

    Raises:
        UserError: an unknown setting, or a value out of range; the message names the flag.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(SETTINGS)
    if unknown:
        raise UserError(f"unknown settings: {', '.join(sorted(unknown))}")
    if base is None:
        recipe = given.get("recipe") or default_recipe(given.get("data"))
        values = recipe_settings(recipe)
        source = f"the {recipe} recipe's"
    else:
        values = dict(base)
        recipe = given.get("recipe") or values["recipe"]
        source = "the resumed run's"
    recipe_eval_crop = values["val_crop"] or values["crop"]
    values.update(given, recipe=recipe)
    if "data" in values:
        values["data"] = absolute_data(values["data"])
    for name in NULLABLE:
        if isinstance(values[name], str) and values[name].lower() == "none":
            values[name] = None
    eval_crop = values["val_crop"] or values["crop"]
    if "val_resize" not in given and eval_crop != recipe_eval_crop and isinstance(eval_crop, int):
        values["val_resize"] = int(round(eval_crop * 256 / 224))  # the standard ratio for another crop
    values["milestones"] = tuple(int(m) for m in values["milestones"] or ())
    warmup, epochs = values["warmup_epochs"], values["epochs"]
    if ("warmup_epochs" not in given and isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1
            and isinstance(warmup, (int, float)) and warmup > epochs):
        raise UserError(f"{source} {warmup:g} warmup epochs do not fit in --epochs {epochs}: pass "
                         f"--warmup-epochs N (at most {epochs}) or more --epochs")
    try:
        mix = MixOptions(**{name: values.pop(name) for name in MIX_KEYS})
    except MixOptionError as e:
        raise UserError(e.render(flag_name)) from None
    return TrainConfig(mix=mix, **values)


def check_config(cfg: TrainConfig) -> None:
    """Raise UserError naming the flag of the first out-of-range setting of ``cfg``: the data and its stream
    (:func:`check_data_settings`), the optimizer and schedule (:func:`check_optimizer_settings`), the processes,
    checkpoints and logging (:func:`check_run_settings`). The mixing options are :class:`~dali_cutmix.MixOptions`'
    to check; ``cfg.mix`` not being one is a TypeError (a caller's bug)."""
    if not isinstance(cfg.mix, MixOptions):
        raise TypeError(f"TrainConfig.mix must be MixOptions, got {type(cfg.mix).__name__}")
    check_data_settings(cfg)
    check_run_settings(cfg)
    check_optimizer_settings(cfg)


def check_data_settings(cfg: TrainConfig) -> None:
    """The sizes (crops, epochs, batch, processes, nodes), the crop area, the mix-off epoch, the seed, the scan and
    the decode; raises UserError naming the flag."""
    for name in ("crop", "val_resize", "epochs", "batch_size", "cpu_procs", "nnodes"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{flag_name(name)} must be an integer >= 1, got {value!r}")
    if cfg.val_crop is not None:
        if isinstance(cfg.val_crop, bool) or not isinstance(cfg.val_crop, int) or cfg.val_crop < 1:
            raise UserError(f"--val-crop must be an integer >= 1, got {cfg.val_crop!r}")
        if cfg.val_resize < cfg.val_crop:
            raise UserError(f"--val-resize ({cfg.val_resize}) must be at least --val-crop ({cfg.val_crop})")
    elif cfg.val_resize < cfg.crop:
        raise UserError(f"--val-resize ({cfg.val_resize}) must be at least --crop ({cfg.crop})")
    if not 0 < cfg.min_area <= 1:
        raise UserError(f"--min-area must be in (0, 1], got {cfg.min_area!r}")
    if cfg.mix_off_epoch is not None:
        check_off_epoch(cfg.mix_off_epoch, "--mix-off-epoch")
    check_seed(cfg.seed, "--seed")
    if cfg.scan not in SCAN_MODES:
        raise UserError(f"--scan must be one of {', '.join(SCAN_MODES)}, got {cfg.scan!r}")
    check_decode(cfg.decode, "--decode")


def check_run_settings(cfg: TrainConfig) -> None:
    """Mid-epoch checkpoints, saving and logging, processes and the rendezvous, the output folder and autocast;
    raises UserError naming the flag."""
    if cfg.checkpoint_steps is not None and (not isinstance(cfg.checkpoint_steps, int)
                                             or isinstance(cfg.checkpoint_steps, bool) or cfg.checkpoint_steps < 1):
        raise UserError(f"--checkpoint-steps must be an integer >= 1 (steps between mid-epoch checkpoints; leave "
                        f"it out for none), got {cfg.checkpoint_steps!r}")
    if cfg.checkpoint_minutes is not None and not cfg.checkpoint_minutes > 0:
        raise UserError(f"--checkpoint-minutes must be > 0 (minutes between mid-epoch checkpoints; leave it out "
                        f"for none), got {cfg.checkpoint_minutes!r}")
    for name in ("save_every", "log_every", "node_rank"):
        if getattr(cfg, name) < 0:
            raise UserError(f"{flag_name(name)} must be >= 0, got {getattr(cfg, name)!r}")
    if cfg.gpus is not None and cfg.gpus < 0:
        raise UserError(f"--gpus must be >= 0, got {cfg.gpus!r}")
    if cfg.workers is not None and cfg.workers < 1:
        raise UserError(f"--workers must be >= 1, got {cfg.workers!r}")
    if cfg.node_rank >= cfg.nnodes:
        raise UserError(f"--node-rank must be in [0, --nnodes={cfg.nnodes}), got {cfg.node_rank}")
    if cfg.master_port is not None and not 1 <= cfg.master_port <= 65535:
        raise UserError(f"--master-port must be in [1, 65535], got {cfg.master_port}")
    if cfg.output is not None and not str(cfg.output).strip():
        raise UserError("--output must name a folder, got ''")
    if cfg.amp not in AMP_MODES:
        raise UserError(f"--amp must be one of {', '.join(AMP_MODES)}, got {cfg.amp!r}")


def check_optimizer_settings(cfg: TrainConfig) -> None:
    """The learning rate, optimizer, momentum, weight decays and schedule; raises UserError naming the flag."""
    for name in ("lr", "lr_per_256"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{flag_name(name)} must be > 0, got {value!r}")
    if cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}")
    if not 0 <= cfg.momentum < 1:
        raise UserError(f"--momentum must be in [0, 1), got {cfg.momentum!r}")
    if cfg.optimizer == "sgd" and cfg.nesterov and cfg.momentum == 0:
        raise UserError("--nesterov needs --momentum > 0")
    for name in ("weight_decay", "norm_weight_decay", "bias_weight_decay", "transformer_embedding_decay"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag_name(name)} must be >= 0, got {value!r}")
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    if any(m < 1 for m in cfg.milestones) or list(cfg.milestones) != sorted(cfg.milestones):
        raise UserError(f"--milestones must be increasing epochs >= 1, got {list(cfg.milestones)}")
    if not 0 < cfg.lr_gamma <= 1:
        raise UserError(f"--lr-gamma must be in (0, 1], got {cfg.lr_gamma!r}")
    if not 0 <= cfg.warmup_epochs <= cfg.epochs:
        raise UserError(f"--warmup-epochs must be in [0, {cfg.epochs}] (the run's epochs), got "
                         f"{cfg.warmup_epochs:g}")
