"""The trainer's settings, each declared once: a :class:`TrainConfig` field whose metadata (:func:`setting`) holds its
help, whether a recipe sets it, whether a resumed run keeps it, whether "none" sets it to None, and its check.
From that metadata come the ``dali-cutmix train`` flags (``cli/train.py``), the check of every recipe table
(:func:`recipe_settings`), the settings a resumed run keeps (:data:`LOCKED`) and the values as a user reads them
(:func:`shown`, :func:`flag_value`)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from dali_cutmix.augment_options import PRESETS as AUGMENT_PRESETS, AugmentOptionError, AugmentOptions
from dali_cutmix.builder import DECODES, check_decode, check_off_epoch, check_seed
from dali_cutmix.errors import UserError
from dali_cutmix.helpers.text import plural
from dali_cutmix.options import MixOptionError, MixOptions, flag_name

from .recipe import RECIPES, default_recipe

SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("auto", "bf16", "fp16", "off")
#: ``--scan``: how the data is checked before the first epoch (see :mod:`dali_cutmix.train.datalists`).
SCAN_MODES = ("quick", "full", "off")

Check = Callable[["TrainConfig", str], None]


def setting(help: str, *, check: Optional[Check] = None, recipe: bool = False, locked: bool = False,
            nullable: bool = False, carried: bool = True, flag: bool = True, choices: Tuple[str, ...] = (),
            metavar: Optional[str] = None, recipe_values: Optional[Tuple[str, str]] = None,
            default: Any = dataclasses.MISSING) -> dataclasses.Field:
    """A :class:`TrainConfig` field declaring one setting.

    ``help``: the flag's help (a recipe setting's flag adds each recipe's value). ``check(cfg, name)``: raises
    UserError naming the flag when the value is out of range (called on construction, in field order, so a check
    may rely on the fields before it). ``recipe``: each recipe table sets it (no default here). ``locked``: a
    resumed run keeps the checkpoint's value (:data:`LOCKED`). ``nullable``: None has a meaning and the string
    "none" given for the setting sets it (:data:`NULLABLE`). ``carried``: a resumed run takes it from its
    checkpoint (False: it belongs to the start that wrote it). ``flag``: ``dali-cutmix train`` has a flag for it.
    ``choices``: the values it takes (its check and its flag's metavar). ``recipe_values``: ``(setting, lead)``:
    the flag's help lists that recipe setting's values instead (``--lr`` shows the lr per 256 images)."""
    if choices and check is None:
        check = one_of(choices)
    metadata = dict(help=help, check=check, recipe=recipe, locked=locked, nullable=nullable, carried=carried,
                    flag=flag, choices=tuple(choices), metavar=metavar, recipe_values=recipe_values)
    return dataclasses.field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------------- the checks

def integer(minimum: int) -> Check:
    """An integer (not a bool) >= ``minimum``; None passes (a nullable setting's "not set")."""
    def check(cfg, name):
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise UserError(f"{flag_name(name)} must be an integer >= {minimum}, got {value!r}")
    return check


def at_least(minimum: float) -> Check:
    """A number >= ``minimum``; None passes."""
    def check(cfg, name):
        value = getattr(cfg, name)
        if value is not None and not value >= minimum:
            raise UserError(f"{flag_name(name)} must be >= {minimum:g}, got {value!r}")
    return check


def finite(*, above: Optional[float] = None, at_least: Optional[float] = None) -> Check:
    """A finite number > ``above`` (or >= ``at_least``); None passes."""
    def check(cfg, name):
        value = getattr(cfg, name)
        if value is None:
            return
        if above is not None and not (math.isfinite(value) and value > above):
            raise UserError(f"{flag_name(name)} must be > {above:g}, got {value!r}")
        if at_least is not None and not (math.isfinite(value) and value >= at_least):
            raise UserError(f"{flag_name(name)} must be >= {at_least:g}, got {value!r}")
    return check


def within(lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False) -> Check:
    """A number in ``[lo, hi]`` (``open_lo`` / ``open_hi``: that end excluded); None passes."""
    shown_range = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"

    def check(cfg, name):
        value = getattr(cfg, name)
        if value is None:
            return
        above = value > lo if open_lo else value >= lo
        below = value < hi if open_hi else value <= hi
        if not (above and below):
            raise UserError(f"{flag_name(name)} must be in {shown_range}, got {value!r}")
    return check


def one_of(choices: Tuple[str, ...]) -> Check:
    def check(cfg, name):
        value = getattr(cfg, name)
        if value not in choices:
            raise UserError(f"{flag_name(name)} must be one of {', '.join(choices)}, got {value!r}")
    return check


def _val_resize(cfg, name):
    integer(1)(cfg, name)
    if cfg.val_crop is not None and cfg.val_resize < cfg.val_crop:
        raise UserError(f"--val-resize ({cfg.val_resize}) must be at least --val-crop ({cfg.val_crop})")
    if cfg.val_crop is None and cfg.val_resize < cfg.crop:
        raise UserError(f"--val-resize ({cfg.val_resize}) must be at least --crop ({cfg.crop})")


def _nesterov(cfg, name):
    if cfg.optimizer == "sgd" and cfg.nesterov and cfg.momentum == 0:
        raise UserError("--nesterov needs --momentum > 0")


def _milestones(cfg, name):
    if any(m < 1 for m in cfg.milestones) or list(cfg.milestones) != sorted(cfg.milestones):
        raise UserError(f"--milestones must be increasing epochs >= 1, got {list(cfg.milestones)}")


def _warmup(cfg, name):
    if not 0 <= cfg.warmup_epochs <= cfg.epochs:
        raise UserError(f"--warmup-epochs must be in [0, {cfg.epochs}] (the run's epochs), got "
                        f"{cfg.warmup_epochs:g}")


def _mix(cfg, name):
    if not isinstance(cfg.mix, MixOptions):  # a caller's bug: MixOptions checks its own values
        raise TypeError(f"TrainConfig.mix must be MixOptions, got {type(cfg.mix).__name__}")


def _augment(cfg, name):
    if not isinstance(cfg.augment, AugmentOptions):  # a caller's bug: AugmentOptions checks its own values
        raise TypeError(f"TrainConfig.augment must be AugmentOptions, got {type(cfg.augment).__name__}")


def _mix_off_epoch(cfg, name):
    if cfg.mix_off_epoch is not None:
        check_off_epoch(cfg.mix_off_epoch, "--mix-off-epoch")


def _checkpoint_steps(cfg, name):
    value = cfg.checkpoint_steps
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise UserError(f"--checkpoint-steps must be an integer >= 1 (steps between mid-epoch checkpoints; leave "
                        f"it out for none), got {value!r}")


def _checkpoint_minutes(cfg, name):
    if cfg.checkpoint_minutes is not None and not cfg.checkpoint_minutes > 0:
        raise UserError(f"--checkpoint-minutes must be > 0 (minutes between mid-epoch checkpoints; leave it out "
                        f"for none), got {cfg.checkpoint_minutes!r}")


def _node_rank(cfg, name):
    at_least(0)(cfg, name)
    if cfg.node_rank >= cfg.nnodes:
        raise UserError(f"--node-rank must be in [0, --nnodes={cfg.nnodes}), got {cfg.node_rank}")


def _master_port(cfg, name):
    if cfg.master_port is not None and not 1 <= cfg.master_port <= 65535:
        raise UserError(f"--master-port must be in [1, 65535], got {cfg.master_port}")


def _data(cfg, name):
    if cfg.data is not None and "://" not in str(cfg.data) and os.path.isfile(os.path.expanduser(str(cfg.data))):
        raise UserError(f"--data {str(cfg.data)!r} is a file, not a folder: an ImageNet root (DATA/train, DATA/val) "
                        f"or the shard folders `dali-cutmix shard` made of one")


def _output(cfg, name):
    if cfg.output is not None and not str(cfg.output).strip():
        raise UserError("--output must name a folder, got ''")


# ------------------------------------------------------------------------------------------------- the settings

@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything one training run needs, each setting declared once (:func:`setting`) and checked on construction
    (UserError naming the flag). Plain values and a :class:`~dali_cutmix.MixOptions`: it is pickled to worker
    processes, and :meth:`to_dict` is stored in checkpoints and ``run.json``. Build it with
    :func:`resolve_config`. The settings a recipe sets have no default here: :mod:`dali_cutmix.train.recipe`'s
    tables are their only source."""

    data: Optional[str] = setting(
        "ImageNet-layout root: DATA/train/<class>/*.JPEG and DATA/val/<class>/*.JPEG (the same class folders), or the "
        "tar shards `dali-cutmix shard` made of one (local or s3://bucket/prefix). Default: the embedded demo "
        "dataset (6 classes, generated on first use).", check=_data, locked=True, default=None)
    output: Optional[str] = setting(
        "Run folder: metrics.jsonl, last.pt, best.pt, run.json, ranks.json, the file lists read and skipped.txt. "
        "[default: runs/<timestamp>]", check=_output, carried=False, default=None)
    scan: str = setting(
        "Check the data before the first epoch and train on the usable files only, naming every skipped one (on the "
        "terminal, in OUTPUT/skipped.txt and run.json): 'quick' reads headers and ends at file-system speed, 'full' "
        "also decodes every file with DALI, 'off' checks nothing. Results are cached per file: a resumed or second "
        "run re-reads only changed files. [default: quick]", choices=SCAN_MODES, default="quick")
    decode: str = setting(
        "How training images are decoded: 'roi' decodes only the random crop's region, 'full' decodes the whole "
        "image and then crops it (more decoding work; a way around a failing ROI decoder). Validation always "
        "decodes whole images. [default: roi]", check=lambda cfg, name: check_decode(cfg.decode, "--decode"),
        choices=DECODES, locked=True, default="roi")
    recipe: str = setting(
        "Defaults for every setting below: 'paper' = the CutMix paper's ImageNet ResNet-50 settings, 'deit' = "
        "DeiT's (facebookresearch/deit main.py: ViT-B/16, AdamW, MixUp + CutMix), 'torchvision-v2' = torchvision's "
        "ResNet-50 IMAGENET1K_V2 recipe, 'demo' = small and fast (the README's Training section lists each value "
        "and its source). [default: paper with --data, demo without]", choices=tuple(RECIPES), locked=True)
    # ------------------------------------------------------------------------- the recipe's settings
    arch: str = setting("Any torchvision classification model by name.", recipe=True, locked=True)
    zero_init_residual: bool = setting("ResNets: start each residual branch at zero (identity blocks).",
                                       recipe=True, locked=True)
    crop: int = setting("Training crop, pixels (and the validation centre crop unless --val-crop is set).",
                        check=integer(1), recipe=True, locked=True)
    val_crop: Optional[int] = setting("Validation centre crop, pixels (none: = --crop).", check=integer(1),
                                      recipe=True, nullable=True)
    val_resize: int = setting(
        "Validation: shorter side resized to this before the centre crop (when --crop / --val-crop changes the "
        "recipe's validation crop: that crop * 256/224).", check=_val_resize, recipe=True)
    min_area: float = setting("Random-resized-crop: smallest crop, as a share of the image area.",
                              check=within(0, 1, open_lo=True), recipe=True, locked=True)
    epochs: int = setting("Epochs.", check=integer(1), recipe=True)
    batch_size: int = setting("Global batch (split evenly over all ranks).", check=integer(1), recipe=True,
                              locked=True)
    lr_per_256: float = setting("The peak lr per 256 images of the global batch.", check=finite(above=0),
                                recipe=True, flag=False)
    optimizer: str = setting(
        "'sgd' (with --momentum, --nesterov) or 'adamw' (betas 0.9/0.999, eps 1e-8, decoupled weight decay).",
        choices=OPTIMIZERS, recipe=True, locked=True)
    momentum: float = setting("SGD momentum (not used by AdamW).", check=within(0, 1, open_hi=True), recipe=True,
                              locked=True)
    nesterov: bool = setting("SGD: Nesterov momentum.", check=_nesterov, recipe=True, locked=True)
    weight_decay: float = setting("Weight decay (every parameter the three flags below do not cover).",
                                  check=finite(at_least=0), recipe=True, locked=True)
    norm_weight_decay: Optional[float] = setting(
        "Weight decay of normalization layers (BatchNorm, LayerNorm, ...; none: --weight-decay).",
        check=finite(at_least=0), recipe=True, locked=True, nullable=True)
    bias_weight_decay: Optional[float] = setting(
        "Weight decay of biases, norm layers' included (none: as the rest of their layer).",
        check=finite(at_least=0), recipe=True, locked=True, nullable=True)
    transformer_embedding_decay: Optional[float] = setting(
        "Weight decay of ViT class tokens and position embeddings, Swin relative position biases (none: "
        "--weight-decay).", check=finite(at_least=0), recipe=True, locked=True, nullable=True)
    schedule: str = setting("lr schedule: 'step' (x lr-gamma at each milestone) or 'cosine' (to 0).",
                            choices=SCHEDULES, recipe=True)
    milestones: Tuple[int, ...] = setting("Epochs where the step schedule multiplies lr by --lr-gamma.",
                                          check=_milestones, recipe=True, metavar="E1,E2,..")
    lr_gamma: float = setting("Step schedule factor.", check=within(0, 1, open_lo=True), recipe=True)
    warmup_epochs: float = setting("Linear lr warmup from ~0, in epochs.", check=_warmup, recipe=True)
    mixing: bool = setting(
        "The mixing stage (CutMix and/or MixUp, as the flags below say) on, or off (the no-mix baseline: one-hot "
        "targets, smoothed by --label-smoothing).", recipe=True, locked=True)
    #: The per-image augmentation before mixing, each recipe its source's (a preset of
    #: :data:`dali_cutmix.augment_options.PRESETS` in the tables): AugmentOptions declares and checks the options
    #: (their flags, ``--augment PRESET`` and one per option, come from ``cli/augmenting.py``); a resumed run keeps
    #: them, as its DALI checkpoint restores into the graph they make.
    augment: AugmentOptions = setting("The per-image augmentation.", check=_augment, recipe=True, locked=True,
                                      flag=False)
    #: CutMix and MixUp, timm's names and semantics: MixOptions declares and checks them (their flags come from
    #: ``cli/mixing.py``); a resumed run keeps ``mode`` and ``self_pairs`` (:data:`LOCKED`).
    mix: MixOptions = setting("The mixing options.", check=_mix, recipe=True, flag=False)
    mix_off_epoch: Optional[int] = setting(
        "Mix epochs 1..N only (epochs count from 1, as in metrics.jsonl): from epoch N+1 on the targets are plain, "
        "smoothed one-hots, in the same run and data stream (a resumed run keeps the schedule). The same N as "
        "timm's --mixup-off-epoch N.", check=_mix_off_epoch, recipe=True, nullable=True, metavar="N")
    model_ema: Optional[float] = setting(
        "Model EMA: the decay of an exponential moving average of the weights, evaluated each epoch beside the "
        "model and checkpointed with it (none: no EMA). With --model-ema-adjust the decay is adjusted to the run "
        "as torchvision's reference does.", check=within(0, 1, open_lo=True, open_hi=True), recipe=True,
        locked=True, nullable=True, metavar="DECAY|none")
    model_ema_steps: int = setting("Model EMA: update the average after every N-th optimizer step (steps 1, N+1, "
                                   "2N+1, ... of each epoch).", check=integer(1), recipe=True, locked=True,
                                   metavar="N")
    model_ema_adjust: bool = setting(
        "Model EMA as torchvision's reference: 1 - decay scaled by the global batch x --model-ema-steps / --epochs "
        "(at most 1), the average a copy of the model at its first update and through the warmup epochs; off: as "
        "timm's ModelEma (DeiT), the decay as given, the average starting from the initial weights.",
        recipe=True, locked=True)
    # ------------------------------------------------------------------------------ the run's own settings
    lr: Optional[float] = setting(
        "Peak learning rate for the global batch.", check=finite(above=0),
        recipe_values=("lr_per_256", "default: batch/256 x the recipe's lr per 256 images, "), default=None)
    amp: str = setting("Autocast dtype; fp16 adds a gradient scaler. [default: auto = bf16 on GPU, off on CPU]",
                       choices=AMP_MODES, default="auto")
    channels_last: bool = setting("NHWC memory format. [default: on]", default=True)
    compile: bool = setting("torch.compile the model. [default: off]", default=False)
    workers: Optional[int] = setting("DALI threads per rank. [default: CPU cores / processes on this node, at most 8]",
                                     check=integer(1), default=None)
    seed: int = setting("Seed of the weights, the data order and every augmentation. [default: 0]",
                        check=lambda cfg, name: check_seed(cfg.seed, "--seed"), locked=True, default=0)
    gpus: Optional[int] = setting(
        "Processes on this node, one per GPU (DDP over NCCL); 0 = CPU. [default: every GPU present, 0 without one]",
        check=at_least(0), default=None)
    cpu_procs: int = setting("CPU ranks on this node (DDP over gloo) when --gpus is 0. [default: 1]",
                             check=integer(1), default=1)
    nnodes: int = setting("Nodes taking part (run the command on each). [default: 1]", check=integer(1), default=1)
    node_rank: int = setting("This node's index, 0 .. nnodes-1. [default: 0]", check=_node_rank, carried=False,
                             default=0)
    master_addr: str = setting(
        "Address of node 0, reachable from every node (needed with --nnodes > 1). [default: 127.0.0.1]",
        default="127.0.0.1")
    master_port: Optional[int] = setting(
        "Port on node 0 for the rendezvous. [default: a free port on one node, 29500 on several]",
        check=_master_port, carried=False, default=None)
    resume: Optional[str] = setting(
        "Continue a run: 'auto' = OUTPUT/last.pt if it exists (else start fresh), a run folder (its last.pt; the "
        "run continues there unless --output is given), or a checkpoint file. Restores weights, optimizer, "
        "schedule, epoch, each rank's DALI data stream and the run's settings: flags given again change --epochs, "
        "--lr, the schedule, the mixing values, validation, processes and logging; the model, data, batch, "
        "optimizer, seed and augmentation stay as they were.", carried=False, metavar="auto|PATH", default=None)
    save_every: int = setting(
        "Also keep OUTPUT/epoch_NNNN.pt every N epochs (last.pt and best.pt are always written). [default: 0 = "
        "never]", check=at_least(0), default=0)
    checkpoint_steps: Optional[int] = setting(
        "Also write OUTPUT/last.pt every N steps inside an epoch (model, optimizer, schedule, RNGs, each rank's "
        "DALI state, the step and the epoch's running metrics): --resume auto continues at that step, "
        "bit-identically on the CPU. [default: at the end of each epoch only]", check=_checkpoint_steps,
        metavar="N", default=None)
    checkpoint_minutes: Optional[float] = setting(
        "Also write OUTPUT/last.pt inside an epoch once M minutes have passed since the last checkpoint (rank 0's "
        "clock decides, all ranks at the same step). [default: never]", check=_checkpoint_minutes, metavar="M",
        default=None)
    log_every: int = setting("When stderr is not a terminal: a progress line every N steps. [default: 0 = every "
                             "30 s]", check=at_least(0), default=0)
    deterministic: bool = setting("Deterministic kernels on the GPU too (slower; always on for the CPU). "
                                  "[default: off]", default=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.metadata["check"] is not None:
                f.metadata["check"](self, f.name)

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

    def value(self, name: str) -> Any:
        """The setting ``name`` of :data:`SETTINGS` (a mixing option by its MixOptions name)."""
        return getattr(self.mix, name) if name in MIX_KEYS else getattr(self, name)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-type dict (lists for tuples; ``mix`` as :meth:`MixOptions.as_dict`) plus ``base_lr``, as stored in
        checkpoints and ``run.json``."""
        d = dataclasses.asdict(self)
        d.update(mix=self.mix.as_dict(), augment=self.augment.as_dict(), milestones=list(self.milestones),
                 base_lr=self.base_lr)
        return d


FIELDS: Mapping[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
#: The mixing options: :class:`dali_cutmix.MixOptions`' fields, under its names (held as ``TrainConfig.mix``).
MIX_KEYS = tuple(f.name for f in dataclasses.fields(MixOptions))
#: The augmentation options: :class:`dali_cutmix.AugmentOptions`' fields, under its names (each overrides the
#: preset that ``augment`` names; held as ``TrainConfig.augment``).
AUGMENT_KEYS = tuple(f.name for f in dataclasses.fields(AugmentOptions))
#: The names :func:`resolve_config` takes: TrainConfig's fields (``augment``: a preset name, or the options as a
#: mapping), with the mixing and augmentation options under their classes' names.
SETTINGS = tuple(name for name in FIELDS if name != "mix") + MIX_KEYS + AUGMENT_KEYS
#: Every setting a recipe table defines (:mod:`dali_cutmix.train.recipe`).
RECIPE_KEYS = tuple(name for name, f in FIELDS.items() if f.metadata["recipe"] and name != "mix") + MIX_KEYS
#: The mixing options a resumed run keeps (besides CutMix and MixUp each staying on or off).
LOCKED_MIX_KEYS = ("mode", "self_pairs")
#: Settings a resumed run keeps from its checkpoint: the model, the data and its stream, the optimizer and its
#: state, the decode (the DALI graph its checkpoint restores into). Given again with another value, they are
#: refused; everything else may change.
LOCKED = tuple(name for name, f in FIELDS.items() if f.metadata["locked"]) + LOCKED_MIX_KEYS
#: Settings whose None has a meaning; the string "none" given for one sets it to None (``--cutmix-minmax none``: boxes
#: drawn from lam).
NULLABLE = tuple(name for name, f in FIELDS.items() if f.metadata["nullable"]) + ("cutmix_minmax",)
#: Settings that belong to the start that wrote a checkpoint, not to the run: never carried over on resume.
NOT_CARRIED = tuple(name for name, f in FIELDS.items() if not f.metadata["carried"])


def shown(value: Any) -> str:
    """A setting's value as a user types and reads it: on/off, none, ``75,150,225``, ``1e-4``, ``resnet50``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, AugmentOptions):  # a preset by its name, other options by those that differ from none's
        preset = next((name for name, options in AUGMENT_PRESETS.items() if options == value), None)
        plain = AUGMENT_PRESETS["none"].as_dict()
        return preset or " ".join(f"{k}={shown(v)}" for k, v in value.as_dict().items() if v != plain[k])
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(shown(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-").replace("e+0", "e+")
    return str(value)


def flag_value(name: str, value: Any) -> str:
    """A setting as it is typed: ``--arch resnet18``, ``--no-mixing``, ``--milestones 75,150``."""
    if isinstance(value, bool):
        return ("--" if value else "--no-") + name.replace("_", "-")
    if name == "data" and value is None:
        return "no --data (the demo dataset)"
    return f"{flag_name(name)} {shown(value)}"


def recipe_settings(name: str) -> Dict[str, Any]:
    """A fresh dict of recipe ``name``'s settings: every key of :data:`RECIPE_KEYS`.

    Raises:
        UserError: unknown recipe name (the message lists the known ones).
        TypeError: the table lacks a setting a recipe sets, or holds one that is not (a bug of the table).
    """
    if name not in RECIPES:
        raise UserError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    table = dict(RECIPES[name])
    missing, extra = set(RECIPE_KEYS) - set(table), set(table) - set(RECIPE_KEYS)
    if missing or extra:
        raise TypeError(f"the {name} recipe's table lacks {sorted(missing)} and holds unknown {sorted(extra)}")
    return table


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
        if isinstance(values.get(name), str) and values[name].lower() == "none":
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
    try:  # the preset (or a resumed run's options), then the options given one by one
        augment = AugmentOptions.coerce(values.pop("augment")).replace(
            **{name: values.pop(name) for name in AUGMENT_KEYS if name in values})
    except AugmentOptionError as e:
        raise UserError(e.render(flag_name)) from None
    return TrainConfig(mix=mix, augment=augment, **values)


def setting_notes(cfg: TrainConfig, given: Mapping[str, Any], source: Optional[str] = None) -> List[str]:
    """One line for each setting of ``cfg`` that cannot do what it says in this run (they are allowed: a later
    ``--resume`` with more ``--epochs`` makes them count): milestones at or past the last epoch, a
    ``--mix-off-epoch`` at or past it, milestones without the step schedule."""
    source = source or f"the {cfg.recipe} recipe's"
    notes = []
    if cfg.schedule == "step":
        late = [m for m in cfg.milestones if m >= cfg.epochs]
        if late:
            what = ("--milestones " if "milestones" in given else f"{source} milestones ") + shown(late)
            notes.append(f"note: {what} lie at or past the last epoch ({cfg.epochs}): the lr does not drop there in "
                         f"this run")
    elif "milestones" in given and cfg.milestones:
        notes.append(f"note: --milestones only count with --schedule step (this run's schedule is {cfg.schedule})")
    if cfg.mixing and cfg.mix_off_epoch is not None and cfg.mix_off_epoch >= cfg.epochs:
        what = "--mix-off-epoch" if "mix_off_epoch" in given else f"{source} mix-off epoch"
        notes.append(f"note: {what} {cfg.mix_off_epoch} turns mixing off from epoch {cfg.mix_off_epoch + 1}, "
                     f"after this run's {plural(cfg.epochs, 'epoch')}: every epoch of it is mixed")
    return notes
