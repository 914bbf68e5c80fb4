"""The mixing stage in DALI Dynamic mode (``nvidia.dali.experimental.dynamic``, ``ndd``): :func:`cutmix`,
:func:`mixup` and :func:`mix` on ``ndd.Batch``es, with the arguments and semantics of the pipeline functions
(:mod:`dali_cutmix.stage`) plus ``rng=`` and ``gate=``.

One stage, two modes: the per-sample seeds are drawn from an ``ndd.random.RNG`` (the pipeline draws them from
its own RNG); from them on, both modes call the same native operators with the same arguments
(:func:`dali_cutmix.stage.param_args`) and the same pixel paths (:func:`dali_cutmix.stage.mix_pixels_native` on
the CPU, :func:`dali_cutmix.stage.mix_pixels_dali` on the GPU), so the same seeds give the same pixels and labels
(:func:`mix_with_seeds`).

The functions work whenever ``ndd`` was imported, before or after the native operators were loaded
(:func:`dynamic_operators`).
"""

from __future__ import annotations

from typing import Optional, Sequence

from .errors import UserError
from .options import MixOptions, check_num_classes
from .stage import (CUTMIX_PARAM_NAMES, PARAM_NAMES, SEED_HIGH, checked_options, cutmix_options,
                    mix_pixels_dali, mix_pixels_native, mixup_options, param_args, stage_outputs)

#: The native operators' schema names, as DALI registers them, and their names in ``ndd``.
NATIVE_SCHEMAS = {"DaliCutmixParams": "dali_cutmix_params", "DaliCutmixApply": "dali_cutmix_apply"}


def add_to_ndd_table(ndd) -> None:
    """Add the loaded native operators to DALI Dynamic's operator table (``ndd.dali_cutmix_params``, ...).

    DALI 2.4's ``ndd`` builds its table once, when ``nvidia.dali.experimental.dynamic`` is first imported
    (``_ops._initialize``); ``nvidia.dali.plugin_manager.load_library`` refreshes only ``nvidia.dali.ops`` and
    ``fn``, and ``ndd`` has no public call that adds a plugin loaded later. This builds, for each of our schemas,
    exactly what that import builds for every registered operator, with ndd's own builder: the operator class
    (``_op_builder.build_operator_class``) and its function (``_op_builder.build_fn_wrapper``). These two are
    private to DALI (the one private route this package takes; tests/test_dynamic_import.py covers it); it is
    only reached when ``ndd`` was imported before the operators were loaded.
    """
    import nvidia.dali.backend_impl as backend
    from nvidia.dali.experimental.dynamic import _op_builder

    for schema_name, function_name in NATIVE_SCHEMAS.items():
        if not hasattr(ndd, function_name):
            _, schema = backend.GetSchemaAndTarget(schema_name)
            _op_builder.build_fn_wrapper(_op_builder.build_operator_class(schema))


def dynamic_operators():
    """``nvidia.dali.experimental.dynamic`` with the native operators in it: builds and loads them if needed
    (:func:`dali_cutmix.native.load`), then adds them to ndd's table when ndd was imported first
    (:func:`add_to_ndd_table`). Returns the module."""
    from .native import load

    load()
    import nvidia.dali.experimental.dynamic as ndd

    if not all(hasattr(ndd, name) for name in NATIVE_SCHEMAS.values()):
        add_to_ndd_table(ndd)
    return ndd


def check_batches(function: str, **batches) -> None:
    """Raise UserError unless every value of ``batches`` (None skipped) is an ``ndd.Batch``, and ``labels``,
    ``gate`` and ``seeds`` are on the CPU; ``function`` names the caller."""
    import nvidia.dali.experimental.dynamic as ndd

    for name, batch in batches.items():
        if batch is not None and not isinstance(batch, ndd.Batch):
            raise UserError(f"{function}(): {name} must be an ndd.Batch (nvidia.dali.experimental.dynamic), got "
                            f"{type(batch).__name__}")
    for name in ("labels", "gate", "seeds"):
        batch = batches.get(name)
        if batch is not None and batch.device.device_type != "cpu":
            raise UserError(f"{function}(): {name} must be a CPU Batch (the mixing parameters are drawn on the "
                            f"CPU), got one on the {batch.device.device_type}")
    sizes = {name: batch.batch_size for name, batch in batches.items() if batch is not None}
    if len(set(sizes.values())) > 1:
        said = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise UserError(f"{function}(): the Batches must have one batch size, got {said}")


def draw_seeds(batch_size: int, rng=None):
    """One int32 seed per sample from ``rng`` (an ``ndd.random.RNG``; None: DALI's default RNG), drawn as the
    pipeline draws them (``random.uniform`` over ``[0, SEED_HIGH]``): a CPU ``ndd.Batch``."""
    ndd = dynamic_operators()
    return ndd.random.uniform(range=[0, SEED_HIGH], dtype=ndd.int32, rng=rng, batch_size=batch_size)


def evaluated(batches: Sequence):
    """``batches`` evaluated now, so that an error the native operators raise over a user's input surfaces
    here, as a UserError (its ``[dali-cutmix]`` message without the mark), before anything is returned."""
    from .loader import stage_error

    try:
        for batch in batches:
            batch.evaluate()
    except RuntimeError as e:
        # ndd re-raises an operator's error as "An error happened during asynchronous execution" from the
        # operator's own one: the [dali-cutmix] message is in the cause.
        error = stage_error(e) or (stage_error(e.__cause__) if e.__cause__ is not None else None)
        if error is None:
            raise
        raise error from None
    return batches


def mix_with_seeds(images, labels, seeds, *, num_classes: int, options: MixOptions, gate=None,
                   function: str = "mix"):
    """The stage on ``ndd.Batch``es given the per-sample ``seeds`` (a CPU int32 Batch): ``(mixed images, soft
    labels, {PARAM_NAMES: CPU Batches})``, all evaluated. Exactly what the pipeline's stage returns for the same
    seeds (:func:`dali_cutmix.stage.mix_stage` with ``seeds=``). :func:`mix` documents the rest."""
    import numpy as np

    check_batches(function, images=images, labels=labels, gate=gate, seeds=seeds)
    check_num_classes(num_classes)
    ndd = dynamic_operators()
    gpu = images.device.device_type == "gpu"
    wanted = stage_outputs(gpu)
    shapes = ndd.batch([np.asarray(shape, dtype=np.int64) for shape in images.shape])
    inputs = (seeds, labels, shapes) + (() if gate is None else (gate,))
    outputs = ndd.dali_cutmix_params(*inputs, **param_args(num_classes=num_classes, options=options,
                                                            outputs=wanted))
    params = dict(zip(wanted, evaluated(outputs)))
    if gpu:
        mixed = mix_pixels_dali(images, params, options, image_type=images.dtype, ops=ndd)
        targets = params["targets"].gpu()
    else:
        mixed = mix_pixels_native(images, params, ops=ndd)
        targets = params["targets"]
    evaluated((mixed, targets))
    return mixed, targets, {name: params[name] for name in PARAM_NAMES}


def mix_batches(images, labels, *, num_classes: int, options: MixOptions, gate=None, rng=None,
                function: str = "mix"):
    """:func:`mix_with_seeds` with the seeds drawn from ``rng`` (:func:`draw_seeds`)."""
    check_batches(function, images=images, labels=labels, gate=gate)
    seeds = draw_seeds(images.batch_size, rng)
    return mix_with_seeds(images, labels, seeds, num_classes=num_classes, options=options, gate=gate,
                          function=function)


def mix(images, labels, *, num_classes: int, return_params: bool = False, gate=None, rng=None, **options):
    """CutMix and/or MixUp a batch of ``ndd.Batch``es (DALI Dynamic), as :func:`dali_cutmix.mix` does inside a
    pipeline: timm's ``Mixup`` semantics, switching per batch, sample or pair, with a random partner permutation.

    Args:
        images: ``ndd.Batch`` of HWC images of one size (uint8 typically; on the CPU also int16/float32), on the
            CPU or the GPU.
        labels: CPU ``ndd.Batch``, one integer class id per sample (shape ``[]`` or ``[1]``) in
            ``[0, num_classes)``.
        num_classes: soft-label width C (>= 1).
        options: the fields of :class:`dali_cutmix.MixOptions` (``cutmix_alpha=1.0``, ``mixup_alpha=0.0``,
            ``cutmix_minmax=None``, ``prob=1.0``, ``switch_prob=0.5``, ``mode="batch"``, ``correct_lam=True``,
            ``label_smoothing=0.0``, ``self_pairs=True``), as :func:`dali_cutmix.mix`.
        return_params: also return a dict of CPU Batches ``perm``, ``box``, ``lam``, ``method``, as
            :func:`dali_cutmix.mix`.
        gate: optional CPU ``ndd.Batch``, one integer per sample: 1 mix, 0 leave unmixed, -1 padding (never a
            partner, not mixed), as :func:`dali_cutmix.mix`.
        rng: the ``ndd.random.RNG`` the draws come from (one seed per sample); None: DALI Dynamic's default RNG
            (``ndd.random.set_seed`` seeds it). The same RNG state gives the same batch.

    Returns:
        ``(images, soft_labels)``: the mixed images (shape, dtype, layout and device of ``images``) and float32
        ``[num_classes]`` soft labels summing to 1, on the images' device; plus the params dict if asked. All
        evaluated.

    Raises:
        UserError: a bad option (naming it); labels, gate or seeds not a CPU Batch; Batches of different batch
            sizes; and, from the native operators, images that are not HWC with 1 to 4 channels (channels-first
            ones), images of different sizes, labels or gate not integers, labels outside ``[0, num_classes)``
            (the ``[dali-cutmix]`` message without its mark). Nothing is returned when one is raised.
    """
    mixed, targets, params = mix_batches(images, labels, num_classes=num_classes,
                                         options=checked_options(options, {}), gate=gate, rng=rng)
    return (mixed, targets, params) if return_params else (mixed, targets)


def cutmix(images, labels, *, num_classes: int, alpha: float = 1.0, prob: float = 1.0, mode: str = "batch",
           label_smoothing: float = 0.0, correct_lam: bool = True, minmax: Optional[Sequence[float]] = None,
           return_params: bool = False, gate=None, rng=None):
    """CutMix a batch of ``ndd.Batch``es (Yun et al., ICCV 2019; official semantics), as
    :func:`dali_cutmix.cutmix` does inside a pipeline, with ``gate`` and ``rng`` as :func:`mix`.

    Returns ``(images, soft_labels)``, plus ``{"perm", "box", "lam"}`` CPU Batches with ``return_params``.
    """
    options = cutmix_options(alpha=alpha, prob=prob, mode=mode, label_smoothing=label_smoothing,
                             correct_lam=correct_lam, minmax=minmax)
    mixed, targets, params = mix_batches(images, labels, num_classes=num_classes, options=options, gate=gate,
                                         rng=rng, function="cutmix")
    if return_params:
        return mixed, targets, {name: params[name] for name in CUTMIX_PARAM_NAMES}
    return mixed, targets


def mixup(images, labels, *, num_classes: int, alpha: float = 1.0, prob: float = 1.0, mode: str = "batch",
          label_smoothing: float = 0.0, return_params: bool = False, gate=None, rng=None):
    """MixUp a batch of ``ndd.Batch``es (Zhang et al., ICLR 2018), as :func:`dali_cutmix.mixup` does inside a
    pipeline: pixels ``lam * x_i + (1 - lam) * x_perm[i]`` rounded for integer images (ties away from zero on the
    CPU, to even on the GPU), with ``gate`` and ``rng`` as :func:`mix`. Returns as :func:`mix`."""
    options = mixup_options(alpha=alpha, prob=prob, mode=mode, label_smoothing=label_smoothing)
    mixed, targets, params = mix_batches(images, labels, num_classes=num_classes, options=options, gate=gate,
                                         rng=rng, function="mixup")
    return (mixed, targets, params) if return_params else (mixed, targets)
