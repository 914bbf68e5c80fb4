"""The per-image augmentation of the training pipeline, as DALI graph pieces: flip, the automatic policy
(TrivialAugmentWide, RandAugment), the official CutMix ColorJitter and Lighting with normalize, random erasing.

:func:`augment_images` takes the random-resized crops (uint8 HWC, CPU or GPU) and returns normalized float32 HWC
images on the same device, in the sources' order: flip, policy (on uint8, as the sources run it on PIL images),
ColorJitter, Lighting and normalize (one per-pixel colour map), random erasing; the batch is mixed after it.

ColorJitter + Lighting + normalize are one affine colour map per image, ``y = M x + T`` (``fn.coord_transform``,
one pass from uint8 to float32): the official ``utils.ColorJitter`` applies brightness ``x -> (1-b) x``, contrast
``x -> (1-c) x + c * mean(gray(x))`` and saturation ``x -> (1-s) x + s * gray(x)`` in a random order, and these three
maps commute exactly: their linear parts are ``a I + b P`` with ``P = 1 g^T`` (``g`` the grayscale weights,
``g . 1 = 1``, so ``P^2 = P``), saturation keeps the mean gray value and the all-ones direction, brightness scales
both. Every order gives ``(1-b)(1-c)[(1-s) x + s gray(x)] + c (1-b) mean(gray(x))``; only rounding differs. On
the GPU the image's mean is a reduction on the device (moved to the CPU, 3 floats per image, for ``T``) and the map
DALI's ``coord_transform``; on the CPU one native operator flips, takes the mean and maps in one pass
(:func:`color_map_native`).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .augment_options import AugmentOptions

#: ITU-R 601 luma weights of the official ``utils.Grayscale`` (and PIL's "L").
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
#: AlexNet's ImageNet PCA of RGB in [0, 1], as the official CutMix ``train.py`` passes it to ``utils.Lighting``.
LIGHTING_EIGVAL = (0.2175, 0.0188, 0.0045)
LIGHTING_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))
#: Random erasing's tries per image for a box that fits (torchvision's and timm's 10).
ERASE_ATTEMPTS = 10
#: The parameters ``augment_images(return_params=True)`` hands out (CPU DataNodes), by name.
AUGMENT_PARAM_NAMES = ("mirror", "jitter", "lighting", "policy_op", "policy_magnitude", "erase")
#: timm's ``rand-m9-mstd0.5-inc1`` fills with ImageNet's mean colour (124, 116, 104); DALI's geometric operators
#: take one fill value for all channels: their mean.
RAND_AUGMENT_FILL = 115
#: torchvision's TrivialAugmentWide fills with 0 (its ``fill=None``).
TRIVIAL_AUGMENT_FILL = 0


def color_matrix(jitter, alpha, mean: Sequence[float], std: Sequence[float]) -> Tuple[np.ndarray, np.ndarray,
                                                                                          np.ndarray]:
    """The per-image colour map of ColorJitter factors ``jitter = (b, c, s)``, Lighting's ``alpha`` (3) and
    normalize ``(x - mean) / std`` (pixel units, 0-255), on pixel values ``x`` (0-255): ``y = M x + T0 + k *
    (g . mean_x)``, where ``mean_x`` is the image's per-channel mean. NumPy, float64; returns ``(M, T0, k)``
    (3x3, 3, 3). The reference the graph (:func:`color_jitter_lighting_normalize`) computes in float32."""
    b, c, s = (float(v) for v in jitter)
    g = np.asarray(GRAY_WEIGHTS)
    inv_std = 1.0 / np.asarray(std, dtype=np.float64)
    linear = (1 - b) * (1 - c) * ((1 - s) * np.eye(3) + s * np.outer(np.ones(3), g))
    light = np.asarray(LIGHTING_EIGVEC) @ (np.asarray(alpha, dtype=np.float64) * np.asarray(LIGHTING_EIGVAL))
    return (inv_std[:, None] * linear, (255 * light - np.asarray(mean)) * inv_std, c * (1 - b) * inv_std)


def color_map_params(options: AugmentOptions, *, mean, std):
    """The draws and the per-image colour map of ColorJitter (strength ``options.color_jitter``), Lighting
    (``options.lighting``) and normalize, as CPU DataNodes: ``(jitter, alpha, matrix, offset, mean_weight)``, the
    factors ``(b, c, s) ~ U(-v, v)^3`` and ``alpha ~ N(0, s)^3`` (float32 [3]; zeros when off) and the map
    ``y = matrix x + offset + mean_weight * (g . mean(x))`` on pixel values (:func:`color_matrix`'s, in float32)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    v, sigma = options.color_jitter, options.lighting
    zeros = types.Constant(np.zeros(3, np.float32), device="cpu")
    jitter = fn.random.uniform(range=[-v, v], shape=[3]) if v else zeros
    alpha = fn.random.normal(stddev=sigma, shape=[3]) if sigma else zeros
    inv_std = 1.0 / np.asarray(std, dtype=np.float64)
    g = np.asarray(GRAY_WEIGHTS)
    b, c, s = jitter[0], jitter[1], jitter[2]
    scale = (1 - b) * (1 - c)
    identity = np.diag(inv_std).astype(np.float32)
    gray = (inv_std[:, None] * np.outer(np.ones(3), g)).astype(np.float32)
    matrix = scale * (1 - s) * identity + scale * s * gray
    # The lighting offset eigvec @ (alpha * eigval), in pixel units and divided by std, minus mean / std.
    light = fn.coord_transform(fn.reshape(alpha, shape=[1, 3]),
                               M=(255 * np.asarray(LIGHTING_EIGVEC) * np.asarray(LIGHTING_EIGVAL)
                                  * inv_std[:, None]).astype(np.float32).ravel().tolist(),
                               T=(-np.asarray(mean) * inv_std).astype(np.float32).tolist())
    offset = fn.reshape(light, shape=[3])
    mean_weight = c * (1 - b) * inv_std.astype(np.float32)  # contrast's target, c (1 - b) mean gray, over std
    return jitter, alpha, matrix, offset, mean_weight


def color_map_dali(images, matrix, offset, mean_weight):
    """The colour map of :func:`color_map_params` on uint8 HWC ``images`` with DALI's operators, on the images'
    device (the GPU path; it runs on the CPU too): the per-channel mean by ``reductions.mean`` (moved to the CPU,
    3 floats per image, for the offset), then one ``coord_transform`` into float32."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    channel_mean = fn.reductions.mean(images, axes=[0, 1], dtype=types.FLOAT)
    if channel_mean.device == "gpu":
        channel_mean = channel_mean.cpu()
    mean_gray = fn.coord_transform(fn.reshape(channel_mean, shape=[1, 3]),
                                   M=np.outer(np.ones(3), GRAY_WEIGHTS).astype(np.float32).ravel().tolist())
    offset = offset + mean_weight * fn.reshape(mean_gray, shape=[3])
    return fn.coord_transform(images, M=matrix, T=offset, dtype=types.FLOAT)


def color_map_native(images, matrix, offset, mean_weight, mirror):
    """The colour map of :func:`color_map_params` on uint8 HWC CPU ``images``, each flipped first where ``mirror``
    (int32 per sample) is 1, by the native ``dali_cutmix_color_map`` (:mod:`dali_cutmix.native`): the CPU path, a
    read pass for the mean and one pass into float32."""
    import nvidia.dali.fn as fn

    from .native import load

    load()
    return fn.dali_cutmix_color_map(images, matrix, offset, mean_weight, mirror, gray_weights=list(GRAY_WEIGHTS))


def color_jitter_lighting_normalize(images, options: AugmentOptions, *, mean, std, mirror=None):
    """ColorJitter (strength ``options.color_jitter``), Lighting (``options.lighting``) and normalize of uint8 HWC
    ``images`` (CPU or GPU) as one colour map per image: float32 HWC, ``(jitter(x/255) + lighting - mean/255) /
    (std/255)``, no clamping (the official code clamps nowhere). ``mirror``: an int32 CPU DataNode, 1 to flip an
    image horizontally first (None: no flip). CPU images go through the native operator, GPU ones through DALI's
    operators. Returns ``(images, jitter, alpha)``: the drawn factors (CPU)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    jitter, alpha, matrix, offset, mean_weight = color_map_params(options, mean=mean, std=std)
    if images.device != "gpu":
        flip = mirror if mirror is not None else fn.random.coin_flip(probability=0.0, dtype=types.INT32)
        return color_map_native(images, matrix, offset, mean_weight, flip), jitter, alpha
    if mirror is not None:
        images = fn.flip(images, horizontal=mirror, vertical=0)
    return color_map_dali(images, matrix, offset, mean_weight), jitter, alpha


def _on_device(param, data):
    """``param`` (a CPU DataNode) on ``data``'s device."""
    return param.gpu() if data.device == "gpu" else param


def _pair(first, second):
    """A per-sample float32 ``[first, second]`` from two CPU scalars."""
    import nvidia.dali.fn as fn

    return fn.stack(first, second)


def _auto_contrast(data, level, sign, shape):
    from nvidia.dali.auto_aug import augmentations as a
    return a.auto_contrast.op(data, None)


def _equalize(data, level, sign, shape):
    from nvidia.dali.auto_aug import augmentations as a
    return a.equalize.op(data, None)


def _invert(data, level, sign, shape):
    from nvidia.dali.auto_aug import augmentations as a
    return a.invert.op(data, None)


def _rotate(data, level, sign, shape):
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations as a
    return a.rotate.op(data, sign * level * 3.0, fill_value=RAND_AUGMENT_FILL, interp_type=types.INTERP_LINEAR)


def _posterize_increasing(data, level, sign, shape):
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations as a
    bits = 4.0 - dmath.floor(level * 0.4)  # timm: 4 - int(level / 10 * 4) bits kept
    mask = fn.cast(256.0 - dmath.pow(2.0, 8.0 - bits), dtype=types.UINT8)
    return a.posterize.op(data, _on_device(mask, data))


def _solarize_increasing(data, level, sign, shape):
    import nvidia.dali.math as dmath
    from nvidia.dali.auto_aug import augmentations as a
    threshold = 256.0 - dmath.min(256.0, dmath.floor(level * 25.6))  # timm: 256 - min(256, int(level/10*256))
    return a.solarize.op(data, _on_device(threshold, data))


def _solarize_add(data, level, sign, shape):
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations as a
    shift = fn.cast(dmath.min(128.0, dmath.floor(level * 11.0)), dtype=types.UINT8)  # min(128, int(level/10*110))
    return a.solarize_add.op(data, _on_device(shift, data))


def _enhance(level, sign):
    return 1.0 + sign * level * 0.09  # timm's _enhance_increasing_level_to_arg: 1 +- level / 10 * 0.9


def _color_increasing(data, level, sign, shape):
    from nvidia.dali.auto_aug import augmentations as a
    return a.color.op(data, _enhance(level, sign))


def _contrast_increasing(data, level, sign, shape):
    from nvidia.dali.auto_aug import augmentations as a
    return a.contrast.op(data, _enhance(level, sign))


def _brightness_increasing(data, level, sign, shape):
    from nvidia.dali.auto_aug import augmentations as a
    return a.brightness.op(data, _enhance(level, sign))


def _sharpness_increasing(data, level, sign, shape):
    from nvidia.dali.auto_aug import augmentations as a
    m = sign * level * 0.09
    blur = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13
    ident = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    return a.sharpness.op(data, _on_device((1.0 + m) * ident - m * blur, data))


def _shear_x(data, level, sign, shape):
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations as a
    shear = sign * level * 0.03
    return a.shear_x.op(data, _pair(shear, shear * 0.0), fill_value=RAND_AUGMENT_FILL,
                        interp_type=types.INTERP_LINEAR)


def _shear_y(data, level, sign, shape):
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations as a
    shear = sign * level * 0.03
    return a.shear_y.op(data, _pair(shear * 0.0, shear), fill_value=RAND_AUGMENT_FILL,
                        interp_type=types.INTERP_LINEAR)


def _translate_x_rel(data, level, sign, shape):
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations as a
    pct = sign * level * 0.045  # timm: level / 10 * translate_pct (0.45) of the width
    return a.translate_x.op(data, _pair(pct, pct * 0.0), shape, fill_value=RAND_AUGMENT_FILL,
                            interp_type=types.INTERP_LINEAR)


def _translate_y_rel(data, level, sign, shape):
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug import augmentations as a
    pct = sign * level * 0.045
    return a.translate_y.op(data, _pair(pct * 0.0, pct), shape, fill_value=RAND_AUGMENT_FILL,
                            interp_type=types.INTERP_LINEAR)


def _identity(data, level, sign, shape):
    return data


#: timm's ``_RAND_INCREASING_TRANSFORMS`` (the ``inc1`` op set of ``rand-m9-mstd0.5-inc1``), in timm's order, then
#: ``Identity`` (an op that timm's ``prob=0.5`` skipped). Each takes ``(uint8 HWC data, level, sign, shape)``:
#: ``level`` in [0, 10] and ``sign`` +-1 (timm's ``_randomly_negate``) per sample, CPU float32.
RAND_AUGMENT_OPS = (
    ("AutoContrast", _auto_contrast), ("Equalize", _equalize), ("Invert", _invert), ("Rotate", _rotate),
    ("PosterizeIncreasing", _posterize_increasing), ("SolarizeIncreasing", _solarize_increasing),
    ("SolarizeAdd", _solarize_add), ("ColorIncreasing", _color_increasing),
    ("ContrastIncreasing", _contrast_increasing), ("BrightnessIncreasing", _brightness_increasing),
    ("SharpnessIncreasing", _sharpness_increasing), ("ShearX", _shear_x), ("ShearY", _shear_y),
    ("TranslateXRel", _translate_x_rel), ("TranslateYRel", _translate_y_rel), ("Identity", _identity),
)


def trivial_augment_suite():
    """torchvision's TrivialAugmentWide op set (``_augmentation_space`` of ``TrivialAugmentWide``) as DALI's
    :func:`nvidia.dali.auto_aug.trivial_augment.get_trivial_augment_wide_suite` (translations up to 32 pixels),
    in DALI's order."""
    from nvidia.dali.auto_aug.trivial_augment import get_trivial_augment_wide_suite

    return get_trivial_augment_wide_suite(use_shape=False, max_translate_abs=32)


def trivial_augment_wide(images, *, num_magnitude_bins: int = 31):
    """torchvision's TrivialAugmentWide on uint8 HWC images (CPU or GPU): per image one op of
    :func:`trivial_augment_suite` and one magnitude bin of ``num_magnitude_bins``, each uniform, the magnitude's
    sign a fair coin for the signed ops; bilinear, fill 0. Returns ``(images, op, bin)`` (CPU int32)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug.core import select, signed_bin

    suite = trivial_augment_suite()
    magnitude = fn.random.uniform(values=list(range(num_magnitude_bins)), dtype=types.INT32)
    op = fn.random.uniform(values=list(range(len(suite))), dtype=types.INT32)
    images = select(suite, op, images, magnitude_bin=signed_bin(magnitude), num_magnitude_bins=num_magnitude_bins,
                    fill_value=TRIVIAL_AUGMENT_FILL, interp_type=types.INTERP_LINEAR)
    return images, op, magnitude


def rand_augment(images, *, num_ops: int, magnitude: float, magnitude_std: float):
    """timm's RandAugment (``rand_augment_transform``, ``inc1`` op set) on uint8 HWC images (CPU or GPU):
    ``num_ops`` times per image, an op of timm's 15 (:data:`RAND_AUGMENT_OPS`) drawn uniformly (with replacement),
    applied with probability 0.5 (timm's ``AugmentOp(prob=0.5)``), at the level ``clip(N(magnitude,
    magnitude_std), 0, 10)`` drawn per application (``magnitude`` itself for std 0) and a random sign; bilinear,
    fill :data:`RAND_AUGMENT_FILL`. Needs ``enable_conditionals``. Returns ``(images, ops, levels)``: CPU int32
    ``[num_ops]`` indices into :data:`RAND_AUGMENT_OPS` (its last, ``Identity``, for an op skipped) and float32
    ``[num_ops]`` signed levels (``sign * level``)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug.core import select

    functions = [function for _, function in RAND_AUGMENT_OPS]
    skipped = len(functions) - 1
    shape = [num_ops]
    drawn = fn.random.uniform(values=list(range(skipped)), dtype=types.INT32, shape=shape)
    applied = fn.random.coin_flip(probability=0.5, shape=shape, dtype=types.INT32)
    ops = drawn * applied + skipped * (1 - applied)
    if magnitude_std > 0:
        level = dmath.clamp(fn.random.normal(mean=magnitude, stddev=magnitude_std, shape=shape), 0.0, 10.0)
    else:
        level = types.Constant(np.full(num_ops, magnitude, np.float32), device="cpu")
    sign = 1.0 - 2.0 * fn.cast(fn.random.coin_flip(probability=0.5, shape=shape), dtype=types.FLOAT)
    shape_hw = images.shape(device="cpu")
    for k in range(num_ops):
        images = select(functions, ops[k], images, level=level[k], sign=sign[k], shape=shape_hw)
    return images, ops, level * sign


def erase_boxes(height: int, width: int, *, prob: float, scale: Tuple[float, float], ratio: Tuple[float, float]):
    """Random erasing's boxes for images of ``height`` x ``width`` (CPU DataNodes of Python ints, the images' shape
    read on the CPU), as torchvision's ``RandomErasing.get_params`` and timm's ``RandomErasing._erase`` (count 1)
    draw them: with probability ``prob``, up to :data:`ERASE_ATTEMPTS` tries of an area ``U(scale) * H * W`` and
    an aspect ratio ``exp(U(log ratio))``, ``h = round(sqrt(area * ratio))``, ``w = round(sqrt(area / ratio))``;
    the first with ``h < H`` and ``w < W`` is placed at ``top ~ U{0..H-h}``, ``left ~ U{0..W-w}``; none: nothing
    erased. Returns CPU nodes: the int32 ``[top, left, h, w]`` (zeros when nothing is erased) and a bool "erased".
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    n = ERASE_ATTEMPTS
    height_f, width_f = fn.cast(height, dtype=types.FLOAT), fn.cast(width, dtype=types.FLOAT)
    area = fn.random.uniform(range=list(scale), shape=[n]) * fn.cast(height * width, dtype=types.FLOAT)
    aspect = dmath.exp(fn.random.uniform(range=[float(np.log(ratio[0])), float(np.log(ratio[1]))], shape=[n]))
    h = dmath.floor(dmath.sqrt(area * aspect) + 0.5)  # Python's round() differs only at exact halves
    w = dmath.floor(dmath.sqrt(area / aspect) + 0.5)
    fits = (h < height_f) & (w < width_f) & (h >= 1) & (w >= 1)
    index = types.Constant(np.arange(n, dtype=np.float32), device="cpu")
    first = fn.reductions.min(index + n * (fits ^ True), axes=[0])
    chosen = index == first
    h1, w1 = fn.reductions.sum(h * chosen, axes=[0]), fn.reductions.sum(w * chosen, axes=[0])
    erased = (first < n) & fn.random.coin_flip(probability=prob, dtype=types.BOOL)
    top = dmath.floor(fn.random.uniform(range=[0.0, 1.0]) * (height_f - h1 + 1))
    left = dmath.floor(fn.random.uniform(range=[0.0, 1.0]) * (width_f - w1 + 1))
    box = fn.cast(fn.stack(top, left, h1, w1) * erased, dtype=types.INT32)
    return box, erased


def random_erase(images, options: AugmentOptions):
    """Random erasing of normalized float32 HWC images (CPU or GPU), after normalization as torchvision and timm
    do: the box of :func:`erase_boxes` set to 0 (``erase_mode="const"``) or to N(0, 1) per pixel and channel
    ("pixel"). Needs ``enable_conditionals``. Returns ``(images, box)``: int32 ``[top, left, h, w]`` on the CPU,
    zeros for an image left as it is."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    shape = images.shape(device="cpu")
    box, erased = erase_boxes(shape[0], shape[1], prob=options.erase_prob, scale=options.erase_scale,
                              ratio=options.erase_ratio)
    anchor, size = fn.cast(box[0:2], dtype=types.FLOAT), fn.cast(box[2:4], dtype=types.FLOAT)
    if erased:
        if options.erase_mode == "pixel":
            inside = fn.erase(images * 0.0, anchor=anchor, shape=size, axis_names="HW", fill_value=1.0)
            noise = fn.random.normal(images)
            images = images + (noise - images) * inside
        else:
            images = fn.erase(images, anchor=anchor, shape=size, axis_names="HW", fill_value=0.0)
    return images, box


def augment_images(images, options: AugmentOptions, *, mean: Sequence[float], std: Sequence[float],
                   mirror: bool = True, return_params: bool = False):
    """The per-image augmentation of ``options`` on uint8 HWC RGB ``images`` (random-resized crops; CPU or GPU),
    normalized: float32 HWC ``(x - mean) / std`` (``mean``, ``std`` per channel in pixel units, 0-255) after
    the sources' transforms, on the images' device:

    1. horizontal flip with probability 0.5 (``mirror``);
    2. ``auto_augment``: :func:`trivial_augment_wide` or :func:`rand_augment` (uint8);
    3. ColorJitter, Lighting and normalize in one colour map (:func:`color_jitter_lighting_normalize`);
    4. random erasing (:func:`random_erase`).

    Inside a ``pipeline_def`` with ``enable_conditionals=True`` when a policy or erasing is on. With
    ``return_params``, returns ``(images, params)``: CPU DataNodes by :data:`AUGMENT_PARAM_NAMES`: ``mirror``
    (int32 0/1), ``jitter`` (float32 ``(b, c, s)``), ``lighting`` (float32 alpha), ``policy_op`` and
    ``policy_magnitude`` (int32 and float32 ``[n]``: the ops drawn and their magnitudes, see the policy's
    function: the magnitude bin for TrivialAugmentWide, the signed level for RandAugment; ``[0]`` without a
    policy), ``erase`` (int32 ``[top, left, h, w]``, zeros when nothing is erased).
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali.pipeline import do_not_convert

    params: Dict[str, object] = {}
    flip = fn.random.coin_flip(probability=0.5 if mirror else 0.0, dtype=types.INT32)
    params["mirror"] = flip
    policy = options.auto_augment != "none" and not (options.auto_augment == "rand-augment"
                                                     and options.rand_augment_ops == 0)
    if mirror and policy:  # the policy sees the flipped image; otherwise the colour map flips as it reads
        images = fn.flip(images, horizontal=flip, vertical=0)
    op = types.Constant(np.zeros(1, np.int32), device="cpu")
    magnitude = types.Constant(np.zeros(1, np.float32), device="cpu")
    if options.auto_augment == "trivial-augment-wide":
        images, op, magnitude = trivial_augment_wide(images)
        op, magnitude = fn.reshape(op, shape=[1]), fn.cast(fn.reshape(magnitude, shape=[1]), dtype=types.FLOAT)
    elif options.auto_augment == "rand-augment" and options.rand_augment_ops:
        images, op, magnitude = rand_augment(images, num_ops=options.rand_augment_ops,
                                             magnitude=options.rand_augment_magnitude,
                                             magnitude_std=options.rand_augment_magnitude_std)
    params["policy_op"], params["policy_magnitude"] = op, magnitude
    colour = do_not_convert(color_jitter_lighting_normalize)  # no conditionals inside: plain Python, fast to trace
    images, params["jitter"], params["lighting"] = colour(images, options, mean=mean, std=std,
                                                          mirror=flip if mirror and not policy else None)
    params["erase"] = types.Constant(np.zeros(4, np.int32), device="cpu")
    if options.erase_prob:
        images, params["erase"] = random_erase(images, options)
    return (images, params) if return_params else images


def needs_conditionals(options: Optional[AugmentOptions]) -> bool:
    """Whether ``augment_images`` with ``options`` needs the pipeline's ``enable_conditionals`` (a policy or
    random erasing)."""
    return options is not None and (options.auto_augment != "none" or options.erase_prob > 0)
