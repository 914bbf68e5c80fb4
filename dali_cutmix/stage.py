"""The mixing stage on DALI DataNodes: :func:`cutmix`, :func:`mixup` and :func:`mix`, used in a ``pipeline_def``.

Graph of the stage (on top of the images' producer):

1. ``random.uniform`` draws a 31-bit seed per sample: DALI's RNG, so the pipeline seed, per-rank seeds and DALI
   checkpointing cover every draw;
2. ``dali_cutmix_params`` (native, CPU, :mod:`dali_cutmix.native`) turns the seeds, the labels, the image
   shape and the optional gate (1 mix, 0 do not mix, -1 padding: never a partner) into every per-sample
   parameter at once (partner, method, lam, box) and the soft labels (:func:`draw_params`); it refuses images
   that are not HWC with 1 to 4 channels (channels-first ones, say), labels out of range and non-integer
   labels or gate, with messages that start with ``[dali-cutmix]``;
3. the pixels, on the images' device:
   * CPU: ``dali_cutmix_apply`` (native) writes each output image in one pass (:func:`mix_pixels_native`); the
     training pipeline's CPU graph instead mixes, flips and normalizes in one native pass
     (``dali_cutmix_mix_normalize``, :func:`mix_normalize_native`), the same pixels as ``dali_cutmix_apply``
     followed by DALI's ``crop_mirror_normalize``;
   * GPU: DALI's own GPU operators (:func:`mix_pixels_dali`): ``multi_paste`` with the partner's box as a
     second region (CutMix) and, when MixUp is on, ``permute_batch``, ``cat`` and one ``coord_transform`` that
     blends the own and partner channels in one pass (plus ``cast_like`` when the images' type is not known
     when the graph is defined). Only the tiny parameters are on the CPU.

``benchmarks/README.md`` has what the stage costs and the designs it was measured against.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from .errors import UserError
from .options import MixOptionError, MixOptions, check_num_classes

SEED_HIGH = 2**31 - 1
#: The parameters ``return_params`` hands out, in this order.
PARAM_NAMES = ("perm", "box", "lam", "method")
#: The parameters :func:`cutmix` returns (all but ``method``, always CutMix there).
CUTMIX_PARAM_NAMES = PARAM_NAMES[:3]
#: What each pixel path reads from :func:`draw_params`.
NATIVE_INPUTS = ("perm", "box", "method", "lam")
DALI_INPUTS = ("in_ids", "anchors", "regions", "perm", "blend")


def param_args(*, num_classes: int, options: MixOptions, outputs: Sequence[str]) -> dict:
    """The arguments of the native ``dali_cutmix_params`` operator for ``options``, ``num_classes`` and the
    ``outputs`` wanted: the same in a pipeline (``fn``) and in DALI Dynamic (:mod:`dali_cutmix.dynamic`)."""
    args = options.as_dict()
    args["cutmix_minmax"] = args["cutmix_minmax"] or []  # the operator's "not set"
    return dict(num_classes=num_classes, outputs=list(outputs), **args)


def draw_params(images, labels, *, num_classes: int, options: MixOptions, outputs: Sequence[str],
                gate=None, seeds=None) -> Dict[str, object]:
    """The per-sample mixing parameters of a batch, as named CPU DataNodes.

    Args:
        images: DataNode, HWC images of one size (CPU or GPU; only their shape is read, on the CPU).
        labels: CPU DataNode, one integer class id per sample.
        num_classes: soft-label width. options: the checked :class:`MixOptions`.
        outputs: names of the native operator's outputs to return (``targets``, ``perm``, ``box``, ``lam``,
            ``method``, ``in_ids``, ``anchors``, ``regions``, ``weight``; see its schema in ``mix_ops.cc``).
        gate: optional CPU DataNode, one integer scalar per sample: 1 mix, 0 a sample left unmixed, -1 padding
            (not a sample: never a partner, never mixed; partners are drawn among the other samples).
        seeds: optional CPU DataNode, one int32 seed per sample, that every draw derives from; default
            ``random.uniform`` over ``[0, SEED_HIGH]`` from the pipeline's RNG. (Given the same seeds, DALI
            Dynamic's :func:`dali_cutmix.dynamic.mix_with_seeds` draws exactly the same parameters.)

    Returns:
        ``{name: DataNode}`` for every name in ``outputs``.
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    from .native import load

    load()
    if seeds is None:
        seeds = fn.random.uniform(range=[0, SEED_HIGH], dtype=types.INT32)
    inputs = (seeds, labels, images.shape(device="cpu")) + (() if gate is None else (gate,))
    nodes = fn.dali_cutmix_params(*inputs, **param_args(num_classes=num_classes, options=options, outputs=outputs))
    return dict(zip(outputs, nodes if len(outputs) > 1 else [nodes]))


def operator_namespace(ops=None):
    """Where the stage's operators are called from: ``ops`` when given (DALI Dynamic's module,
    ``nvidia.dali.experimental.dynamic``, with the same function names), else ``nvidia.dali.fn`` (a pipeline)."""
    if ops is not None:
        return ops
    import nvidia.dali.fn as fn

    return fn


def mix_pixels_native(images, params, ops=None):
    """Mixed CPU images from :data:`NATIVE_INPUTS` params, in one pass (``dali_cutmix_apply``); ``ops`` as
    :func:`operator_namespace`."""
    fn = operator_namespace(ops)
    return fn.dali_cutmix_apply(images, *(params[name] for name in NATIVE_INPUTS))


def mix_normalize_native(images, params, mirror, *, mean, std, dtype, output_layout):
    """Mixed, flipped and normalized CPU images in one pass (``dali_cutmix_mix_normalize``, :mod:`dali_cutmix.native`):
    bit for bit what ``crop_mirror_normalize(mix_pixels_native(images, params), mirror=mirror, mean=mean, std=std,
    dtype=dtype, output_layout=output_layout)`` writes on the CPU, with each output pixel written once.

    ``images``: uint8 HWC CPU DataNode; ``params``: :data:`NATIVE_INPUTS` params, or None for no mixing (flip and
    normalize only); ``mirror``: int32 CPU DataNode, 1 to flip an image horizontally (after mixing); ``mean``,
    ``std``: per channel, pixel units; ``dtype``: ``nvidia.dali.types.FLOAT`` or ``FLOAT16``;
    ``output_layout``: "CHW" or "HWC". The mirror is the last input, so the pipeline visits (and seeds) the
    random operators in the same order as the two-operator graph."""
    import nvidia.dali.fn as fn

    from .native import load

    load()
    mixing = () if params is None else tuple(params[name] for name in NATIVE_INPUTS)
    return fn.dali_cutmix_mix_normalize(images, *mixing, mirror, mean=list(mean), std=list(std), dtype=dtype,
                                        output_layout=output_layout)


def paste_boxes(images, params, ops=None):
    """``multi_paste`` of :data:`DALI_INPUTS`' regions: each sample's own image with its partner's box on top (the
    own image again where nothing is pasted). Every region has a non-zero size, so DALI's GPU and CPU kernels
    give the same pixels (``tests/gpu_paste_model.py`` models the GPU one). ``ops`` as :func:`operator_namespace`."""
    fn = operator_namespace(ops)
    return fn.multi_paste(images, in_ids=params["in_ids"], in_anchors=params["anchors"], shapes=params["regions"],
                          out_anchors=params["anchors"])


def mix_pixels_dali(images, params, options: MixOptions, image_type=None, ops=None):
    """Mixed images from :data:`DALI_INPUTS` params with DALI's own operators (on the images' device): the GPU
    path, which also runs on the CPU. CutMix: :func:`paste_boxes`; MixUp: ``permute_batch`` of the images, ``cat``
    of the (pasted) images and their partners along the channels (HW, 2C, the images' type) and one
    ``coord_transform`` with the per-sample matrix ``blend`` = ``[w*I | (1 - w)*I]``: ``x * w + partner * (1 - w)``
    per pixel in float32, rounded and saturated into ``image_type``, where ``w`` is 1 for samples MixUp did not
    draw (exact: their pixels pass unchanged). ``image_type`` (a ``nvidia.dali.types.DALIDataType``): the images'
    type when the caller knows it (the training pipeline: uint8 from the decoder), so the blend writes it directly:
    3 operators, no float32 batch; None: float32, then ``cast_like`` the images (4 operators). ``ops`` as
    :func:`operator_namespace` (DALI Dynamic passes its module and the images' own type).

    DALI 2.4's arithmetic operators take one function node each (``ArithmeticGenericOp`` refuses expression
    trees: "Complex expression trees are not yet supported"), so the blend written as arithmetic is two ``mul``,
    a ``sub``, an ``add`` and a ``cast_like`` after ``permute_batch``, with float32 intermediates."""
    import nvidia.dali.types as types

    fn = operator_namespace(ops)
    mixed = paste_boxes(images, params, ops) if options.cutmix_on else images
    if not options.mixup_on:
        return mixed
    partner = fn.permute_batch(images, indices=params["perm"])
    # Rounds to nearest and saturates: half away from zero on the CPU (std::round), half to even on the GPU
    # (__float2int_rn; DALI's include/dali/core/convert.h).
    blended = fn.coord_transform(fn.cat(mixed, partner, axis=2), M=params["blend"],
                                 dtype=types.FLOAT if image_type is None else image_type)
    return fn.cast_like(blended, images) if image_type is None else blended


def stage_outputs(gpu: bool) -> Tuple[str, ...]:
    """The outputs of ``dali_cutmix_params`` the stage uses: ``targets``, :data:`PARAM_NAMES` and what the pixel
    path of the images' device reads (:data:`DALI_INPUTS` on the GPU, :data:`NATIVE_INPUTS` on the CPU)."""
    pixel_inputs = DALI_INPUTS if gpu else NATIVE_INPUTS
    return ("targets",) + PARAM_NAMES + tuple(n for n in pixel_inputs if n not in PARAM_NAMES)


def check_nodes(function: str, **nodes) -> None:
    """Raise TypeError unless this runs inside a DALI pipeline definition and every value of ``nodes`` (None
    skipped) is a DataNode; ValueError for labels or gate on the GPU. ``function`` names the caller."""
    from nvidia.dali import Pipeline
    from nvidia.dali.data_node import DataNode

    for name, node in nodes.items():
        if node is not None and not isinstance(node, DataNode):
            raise TypeError(f"{function}() must be called inside a DALI pipeline definition (@pipeline_def) on "
                            f"DataNodes; got {name} of type {type(node).__name__}")
    if Pipeline.current() is None:
        raise TypeError(f"{function}() must be called inside a DALI pipeline definition (@pipeline_def) on "
                        f"DataNodes")
    for name in ("labels", "gate"):
        if nodes.get(name) is not None and nodes[name].device != "cpu":
            raise UserError(f"{name} must be a CPU DataNode (the mixing parameters are drawn on the CPU), got "
                             f"one on the {nodes[name].device}")


def mix_stage(images, labels, *, num_classes: int, options: MixOptions, gate=None,
              function: str = "mix", image_type=None, seeds=None, pixels: bool = True
              ) -> Tuple[object, object, dict]:
    """The stage with checked options: ``(mixed images, soft labels, {PARAM_NAMES: CPU DataNodes})``.

    The pixels take the native path for CPU images and DALI's operators for GPU images; the soft labels are on
    the images' device. :func:`mix` documents the arguments; ``function`` names the caller in errors;
    ``image_type``: the images' DALI type when the caller knows it (see :func:`mix_pixels_dali`); ``seeds``: the
    per-sample seeds of :func:`draw_params` (default: drawn from the pipeline's RNG). ``pixels=False`` (CPU
    images only): the parameters without the mixed images (``images`` is returned as it is), for a caller that
    mixes them itself (:func:`mix_normalize_native`, which reads :data:`NATIVE_INPUTS`, all of them in the dict).
    """
    check_nodes(function, images=images, labels=labels, gate=gate)
    check_num_classes(num_classes)
    gpu = images.device == "gpu"
    wanted = stage_outputs(gpu)
    params = draw_params(images, labels, num_classes=num_classes, options=options, outputs=wanted, gate=gate,
                         seeds=seeds)
    if not pixels and gpu:
        raise ValueError("mix_stage(pixels=False) is for CPU images")
    if not pixels:
        mixed = images
    else:
        mixed = mix_pixels_dali(images, params, options, image_type) if gpu else mix_pixels_native(images, params)
    targets = params["targets"].gpu() if gpu else params["targets"]
    return mixed, targets, {name: params[name] for name in PARAM_NAMES}


def checked_options(fields: dict, names: Dict[str, str]) -> MixOptions:
    """MixOptions of ``fields``; an error names the options as ``names`` maps them (a caller's argument names)."""
    try:
        return MixOptions.coerce(fields)
    except MixOptionError as e:
        raise UserError(e.render(lambda option: names.get(option, option))) from None


def cutmix_options(*, alpha, prob, mode, label_smoothing, correct_lam, minmax) -> MixOptions:
    """The MixOptions of :func:`cutmix`'s arguments (MixUp off), checked; errors name ``alpha`` and ``minmax`` as
    its signature does."""
    return checked_options(dict(cutmix_alpha=alpha, mixup_alpha=0.0, cutmix_minmax=minmax, prob=prob, mode=mode,
                                label_smoothing=label_smoothing, correct_lam=correct_lam),
                           {"cutmix_alpha": "alpha", "cutmix_minmax": "minmax"})


def mixup_options(*, alpha, prob, mode, label_smoothing) -> MixOptions:
    """The MixOptions of :func:`mixup`'s arguments (CutMix off), checked; errors name ``alpha``."""
    return checked_options(dict(cutmix_alpha=0.0, mixup_alpha=alpha, prob=prob, mode=mode,
                                label_smoothing=label_smoothing), {"mixup_alpha": "alpha"})


def mix(images, labels, *, num_classes: int, return_params: bool = False, gate=None, **options):
    """CutMix and/or MixUp a batch inside a DALI ``pipeline_def``, switching per batch, sample or pair (timm's
    ``Mixup`` semantics, with a random partner permutation).

    Args:
        images: DataNode, a batch of HWC images of one size (uint8 typically; CPU also int16/float32), CPU or GPU.
        labels: DataNode on the CPU, one integer class id per sample (shape ``[]`` or ``[1]``) in
            ``[0, num_classes)``.
        num_classes: soft-label width C (>= 1).
        options: the fields of :class:`dali_cutmix.MixOptions`, timm's names: ``cutmix_alpha=1.0``,
            ``mixup_alpha=0.0``, ``cutmix_minmax=None``, ``prob=1.0``, ``switch_prob=0.5``, ``mode="batch"``
            (or "elem", "pair"), ``correct_lam=True``, ``label_smoothing=0.0``. MixUp pixels are
            ``lam * own + (1 - lam) * partner``, rounded to nearest for integer images: ties away from zero on the
            CPU, to even on the GPU (DALI's cast), so a pixel whose blend is exactly ``k + 0.5`` differs by 1.
        return_params: also return a dict of CPU DataNodes: ``perm`` (int32 partner index), ``box`` (int32
            ``[y0, x0, y1, x1]`` half-open, the pasted region; all zero unless CutMix was applied), ``lam``
            (float32, the weight of the sample's own label: the kept pixel share for CutMix, the blend weight
            for MixUp, 1.0 when not mixed) and ``method`` (int32: 0 none, 1 CutMix, 2 MixUp).
        gate: optional CPU DataNode, one integer scalar per sample: 1 mixes the sample; 0 leaves it unmixed
            (its image is left as it is and its label is the smoothed one-hot; in pair mode its partner too);
            -1 marks padding, not a sample: it is never anyone's partner and is not mixed (partners, pairs and
            the batch's draw are over the other samples). A gate of 0 keeps the random stream of an open one.
            :func:`dali_cutmix.builder.mix_gate` makes the one the training pipeline uses: -1 for the
            reader's padding of a last batch, 0 after the first ``mix_off_epoch`` epochs.

    Returns:
        ``(images, soft_labels)``: mixed images (shape, dtype, layout and device of ``images``) and float32
        ``[num_classes]`` soft labels summing to 1 on the images' device; plus the params dict if asked.

    Raises:
        UserError: for a bad option, naming it, or labels/gate on the GPU. TypeError: called outside a
            ``pipeline_def`` or on something other than DataNodes. When the pipeline runs, DALI reports images
            that are not HWC with 1 to 4 channels (channels-first ones: mix before transposing or normalizing),
            images of different sizes, labels or gate of a non-integer dtype and labels outside
            ``[0, num_classes)`` as a pipeline error whose message starts with ``[dali-cutmix]``
            (:class:`dali_cutmix.CutMixLoader` re-raises it as a one-line ValueError).
    """
    mixed, targets, params = mix_stage(images, labels, num_classes=num_classes,
                                       options=checked_options(options, {}), gate=gate)
    return (mixed, targets, params) if return_params else (mixed, targets)


def cutmix(
    images,
    labels,
    *,
    num_classes: int,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: str = "batch",
    label_smoothing: float = 0.0,
    correct_lam: bool = True,
    minmax: Optional[Sequence[float]] = None,
    return_params: bool = False,
):
    """CutMix a batch inside a DALI ``pipeline_def`` (Yun et al., ICCV 2019; official semantics).

    lam ~ Beta(alpha, alpha); box sides ``int(H*sqrt(1-lam))``, ``int(W*sqrt(1-lam))``; centre uniform over all
    pixels; corners ``centre -/+ side // 2`` clipped to the image; pixels inside the box come from the partner
    (a random permutation of the batch); soft labels ``lam * onehot(y) + (1 - lam) * onehot(y[perm])`` with
    lam corrected to the exact share of own pixels.

    Args:
        images: DataNode, a batch of HWC images of one size (uint8 typically), CPU or GPU.
        labels: DataNode on the CPU, one integer class id per sample, in ``[0, num_classes)``.
        num_classes: soft-label width C (>= 1).
        alpha: lam ~ Beta(alpha, alpha), alpha > 0 (``MixOptions.cutmix_alpha``). 1.0 (uniform) is the paper's.
        prob: probability of mixing, in [0, 1]: per batch in mode "batch", per sample in mode "elem".
        mode: "batch" (official: one lam, one box, one coin flip per batch) or "elem" (every sample its own
            lam, box and coin flip); "pair" as in :func:`mix`.
        minmax: ``(lo, hi)``: box sides uniform in ``[lo*side, hi*side]``, box inside the image
            (``MixOptions.cutmix_minmax``).
        label_smoothing, correct_lam: as :class:`dali_cutmix.MixOptions`.
        return_params: also return a dict of CPU DataNodes ``perm`` (int32), ``box`` (int32
            ``[y0, x0, y1, x1]`` half-open, all zero for a sample that was not mixed), ``lam`` (float32, the kept
            share of own pixels).

    Returns:
        ``(images, soft_labels)`` (plus the params dict with ``return_params``), as :func:`mix`, which also lists
        the errors.
    """
    options = cutmix_options(alpha=alpha, prob=prob, mode=mode, label_smoothing=label_smoothing,
                             correct_lam=correct_lam, minmax=minmax)
    mixed, targets, params = mix_stage(images, labels, num_classes=num_classes, options=options, function="cutmix")
    if return_params:
        return mixed, targets, {name: params[name] for name in CUTMIX_PARAM_NAMES}
    return mixed, targets


def mixup(
    images,
    labels,
    *,
    num_classes: int,
    alpha: float = 1.0,
    prob: float = 1.0,
    mode: str = "batch",
    label_smoothing: float = 0.0,
    return_params: bool = False,
):
    """MixUp a batch inside a DALI ``pipeline_def`` (Zhang et al., ICLR 2018): lam ~ Beta(alpha, alpha), pixels
    ``lam * x_i + (1 - lam) * x_perm[i]`` (rounded for integer images), soft labels as :func:`cutmix`.

    Args and returns as :func:`mix` with ``mixup_alpha=alpha`` (> 0) and CutMix off.
    """
    options = mixup_options(alpha=alpha, prob=prob, mode=mode, label_smoothing=label_smoothing)
    mixed, targets, params = mix_stage(images, labels, num_classes=num_classes, options=options, function="mixup")
    return (mixed, targets, params) if return_params else (mixed, targets)
