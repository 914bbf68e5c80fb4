"""The per-image augmentation (dali_cutmix/augment.py) against NumPy references of its sources' definitions: the
official CutMix ColorJitter and Lighting (clovaai/CutMix-PyTorch utils.py), torchvision's TrivialAugmentWide and
RandomErasing, timm's RandAugment (``rand-m9-mstd0.5-inc1``) and per-pixel random erasing; the presets and the
builder's ``augment`` argument."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import device_id, skip_without_gpu, to_numpy
from scipy import stats

from dali_cutmix.augment import (AUGMENT_PARAM_NAMES, GRAY_WEIGHTS, LIGHTING_EIGVAL, LIGHTING_EIGVEC,
                                 RAND_AUGMENT_FILL, RAND_AUGMENT_OPS, augment_images, color_matrix, random_erase,
                                 trivial_augment_suite)
from dali_cutmix.augment_options import PRESETS, AugmentOptionError, AugmentOptions
from dali_cutmix.builder import IMAGENET_MEAN, IMAGENET_STD
from dali_cutmix.errors import UserError

MEAN01, STD01 = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


# ---------------------------------------------------------------------------------------------- references


def official_jitter_lighting_normalize(img01, factors, order, alpha):
    """clovaai/CutMix-PyTorch utils.py, literally, in float32 on a CHW [0, 1] image: ColorJitter with the given
    factors (brightness, contrast, saturation) applied in ``order`` (a permutation of "bcs"), Lighting with
    ``alpha``, then Normalize (train.py's ImageNet mean and std)."""
    img = img01.astype(np.float32)

    def grayscale(x):
        gs = x.copy()
        gs[0] = 0.299 * gs[0] + 0.587 * gs[1] + 0.114 * gs[2]
        gs[1], gs[2] = gs[0], gs[0]
        return gs

    def lerp(x, target, a):  # torch.lerp(x, target, a) = x + a * (target - x)
        return (x + np.float32(a) * (target - x)).astype(np.float32)

    ops = {"b": lambda x, a: lerp(x, np.zeros_like(x), a),
           "c": lambda x, a: lerp(x, np.full_like(x, grayscale(x).mean()), a),
           "s": lambda x, a: lerp(x, grayscale(x), a)}
    by_name = dict(zip("bcs", factors))
    for name in order:
        img = ops[name](img, by_name[name])
    eigvec = np.asarray(LIGHTING_EIGVEC, np.float32)
    rgb = (eigvec * np.asarray(alpha, np.float32)[None, :] * np.asarray(LIGHTING_EIGVAL, np.float32)[None, :]).sum(1)
    img = img + rgb[:, None, None]
    return ((img - MEAN01[:, None, None]) / STD01[:, None, None]).astype(np.float32)


def timm_posterize_increasing(x, level):
    bits = 4 - int(level / 10 * 4)
    return x & np.uint8((0xFF << (8 - bits)) & 0xFF if bits > 0 else 0)


def timm_solarize_increasing(x, level):
    threshold = 256 - min(256, int(level / 10 * 256))
    return np.where(x < threshold, x, 255 - x).astype(np.uint8)  # PIL's ImageOps.solarize


def timm_solarize_add(x, level):
    add = min(128, int(level / 10 * 110))
    return np.where(x < 128, np.minimum(255, x.astype(np.int32) + add), x).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- pipelines


def run_pipeline(device, graph, arrays, *, iterations=1, seed=3, conditionals=True):
    """Run ``graph(images)`` over the fixed ``arrays`` (a batch, on ``device``) ``iterations`` times; each output as
    NumPy stacked over the iterations' samples."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    skip_without_gpu(device)

    @pipeline_def(batch_size=len(arrays), num_threads=1, device_id=device_id(device), seed=seed,
                  enable_conditionals=conditionals, exec_dynamic=True)
    def pipe():
        images = fn.external_source(source=lambda: arrays, batch=True, layout="HWC", device=device)
        return graph(images)

    p = pipe()
    p.build()
    runs = [[to_numpy(out) for out in p.run()] for _ in range(iterations)]
    return [np.concatenate(parts) for parts in zip(*runs)]


def random_images(n, h=12, w=10, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def augmented(options, *, mirror=False):
    def graph(images):
        out, params = augment_images(images, options, mean=IMAGENET_MEAN, std=IMAGENET_STD, mirror=mirror,
                                     return_params=True)
        return (out,) + tuple(params[name] for name in AUGMENT_PARAM_NAMES)
    return graph


# ---------------------------------------------------------------------------------------------- options


def test_presets_name_their_sources_settings():
    assert PRESETS["none"] == AugmentOptions() and not PRESETS["none"].active
    assert (PRESETS["paper"].color_jitter, PRESETS["paper"].lighting) == (0.4, 0.1)
    deit = PRESETS["deit"]
    assert (deit.auto_augment, deit.rand_augment_ops, deit.rand_augment_magnitude,
            deit.rand_augment_magnitude_std) == ("rand-augment", 2, 9.0, 0.5)
    assert (deit.erase_prob, deit.erase_mode, deit.erase_scale, deit.erase_ratio) == (0.25, "pixel", (0.02, 1 / 3),
                                                                                      (0.3, 1 / 0.3))
    tv = PRESETS["torchvision-v2"]
    assert (tv.auto_augment, tv.erase_prob, tv.erase_mode, tv.erase_scale, tv.erase_ratio) == (
        "trivial-augment-wide", 0.1, "const", (0.02, 0.33), (0.3, 3.3))
    assert all(PRESETS[name].active for name in ("paper", "deit", "torchvision-v2"))


@pytest.mark.parametrize("value, message", [
    ("imagenet", "unknown augmentation preset 'imagenet'; the presets are: none, paper, deit, torchvision-v2"),
    (dict(color_jitter=-0.1), "color_jitter must be in [0, 1], got -0.1"),
    (dict(lighting=float("nan")), "lighting must be a finite number, got nan"),
    (dict(auto_augment="autoaugment"), "auto_augment must be one of ('none', 'trivial-augment-wide', "
                                       "'rand-augment'), got 'autoaugment'"),
    (dict(rand_augment_ops=1.5), "rand_augment_ops must be an integer in [0, 16], got 1.5"),
    (dict(erase_prob=2), "erase_prob must be in [0, 1], got 2"),
    (dict(erase_mode="rand"), "erase_mode must be one of ('const', 'pixel'), got 'rand'"),
    (dict(erase_scale=(0.5, 0.2)), "erase_scale must satisfy 0 < lo <= hi <= 1, got (0.5, 0.2)"),
    (dict(jitter=0.4), "unknown augmentation option(s) ['jitter']; the options are: color_jitter, lighting, "),
    (3, "augment must be a preset name, AugmentOptions or a mapping of its fields, got 'int'"),
])
def test_bad_options_are_user_errors_naming_the_option(value, message):
    with pytest.raises(AugmentOptionError) as e:
        AugmentOptions.coerce(value)
    assert isinstance(e.value, UserError) and str(e.value).startswith(message)


def test_an_option_error_names_the_flag_when_rendered_for_the_command_line():
    with pytest.raises(AugmentOptionError) as e:
        AugmentOptions(erase_prob=1.5)
    assert e.value.render(lambda name: "--" + name.replace("_", "-")) == "--erase-prob must be in [0, 1], got 1.5"


def test_coerce_takes_a_name_an_object_or_a_mapping():
    assert AugmentOptions.coerce("paper") is PRESETS["paper"]
    assert AugmentOptions.coerce(None) == AugmentOptions()
    assert AugmentOptions.coerce(dict(lighting=0.1)) == AugmentOptions(lighting=0.1)
    assert AugmentOptions.coerce(dict(erase_scale=[0.1, 0.2])).erase_scale == (0.1, 0.2)
    assert PRESETS["deit"].as_dict()["erase_ratio"] == [0.3, 1 / 0.3]


# ---------------------------------------------------------------------------------------------- paper


def test_the_paper_jitter_and_lighting_match_the_official_code_for_the_drawn_factors(device):
    """Each image's output equals the official ColorJitter (in every one of the six orders: the three maps
    commute), Lighting and Normalize for the factors the graph drew."""
    arrays = random_images(6, seed=1)
    out, _, jitter, alpha, *_ = run_pipeline(device, augmented(PRESETS["paper"]), arrays, iterations=2)
    inputs = np.concatenate([np.stack(arrays)] * 2)
    assert out.dtype == np.float32 and out.shape == inputs.shape
    assert np.all(np.abs(jitter) <= 0.4) and np.abs(jitter).max() > 0.05 and np.abs(alpha).max() > 0
    for x, y, factors, a in zip(inputs, out, jitter, alpha):
        for order in itertools.permutations("bcs"):
            reference = official_jitter_lighting_normalize(x.transpose(2, 0, 1) / np.float32(255), factors, order, a)
            np.testing.assert_allclose(y.transpose(2, 0, 1), reference, atol=2e-5, rtol=1e-5)


def test_the_gpu_path_and_the_native_cpu_path_give_the_same_colour_map(device):
    """DALI's operators (the GPU path: flip, reductions.mean, coord_transform; on ``device``) and the native CPU
    operator (flip and map in one pass) give the official code's pixels for the same draws."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from dali_cutmix.augment import color_map_dali, color_map_native, color_map_params

    skip_without_gpu(device)
    arrays = random_images(8, h=9, w=7, seed=9)

    @pipeline_def(batch_size=len(arrays), num_threads=1, device_id=device_id(device), seed=4, exec_dynamic=True)
    def pipe():
        cpu = fn.external_source(source=lambda: arrays, batch=True, layout="HWC")
        on_device = cpu.gpu() if device == "gpu" else cpu
        jitter, alpha, matrix, offset, weight = color_map_params(PRESETS["paper"], mean=IMAGENET_MEAN,
                                                                 std=IMAGENET_STD)
        flip = fn.random.coin_flip(probability=0.5, dtype=types.INT32)
        dali = color_map_dali(fn.flip(on_device, horizontal=flip, vertical=0), matrix, offset, weight)
        return dali, color_map_native(cpu, matrix, offset, weight, flip), jitter, alpha, flip

    p = pipe()
    p.build()
    dali, native, jitter, alpha, flip = [to_numpy(o) for o in p.run()]
    assert 0 < flip.sum() < len(arrays)
    for x, a, b, factors, al, f in zip(arrays, dali, native, jitter, alpha, flip):
        x = x[:, ::-1] if f else x
        reference = official_jitter_lighting_normalize(x.transpose(2, 0, 1) / np.float32(255), factors, "bcs", al)
        np.testing.assert_allclose(a.transpose(2, 0, 1), reference, atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(b.transpose(2, 0, 1), reference, atol=2e-5, rtol=1e-5)


def test_the_colour_map_reference_is_the_official_code():
    """color_matrix (the map the graph builds) equals the official code for every order, without clamping
    (factors that push values outside [0, 1])."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (7, 5, 3)).astype(np.float64)
    for _ in range(20):
        factors, alpha = rng.uniform(-0.4, 0.4, 3), rng.normal(0, 0.1, 3)
        m, t0, k = color_matrix(factors, alpha, IMAGENET_MEAN, IMAGENET_STD)
        ours = x @ m.T + t0 + k * (np.asarray(GRAY_WEIGHTS) @ x.reshape(-1, 3).mean(0))
        for order in itertools.permutations("bcs"):
            ref = official_jitter_lighting_normalize((x / 255).transpose(2, 0, 1), factors, order, alpha)
            np.testing.assert_allclose(ours.transpose(2, 0, 1), ref, atol=2e-5)


def test_the_paper_factors_are_distributed_as_the_official_code_draws_them(device):
    """On images of one known colour, each output colour is distributed as the official code's for factors
    U(-0.4, 0.4) and alpha N(0, 0.1) (two-sample KS tests, per channel), and the drawn factors are U and N."""
    colour = np.array([200, 120, 40], np.uint8)
    arrays = [np.broadcast_to(colour, (4, 4, 3)).copy() for _ in range(256)]
    out, _, jitter, alpha, *_ = run_pipeline(device, augmented(PRESETS["paper"]), arrays, iterations=4)
    ours = out[:, 0, 0, :]
    assert np.all(out == out[:, :1, :1, :])  # a colour map: one colour in, one colour out
    rng = np.random.default_rng(0)
    reference = np.stack([
        official_jitter_lighting_normalize(np.broadcast_to(colour / np.float32(255), (2, 2, 3)).transpose(2, 0, 1),
                                           rng.uniform(-0.4, 0.4, 3), "".join(rng.permutation(list("bcs"))),
                                           rng.normal(0, 0.1, 3))[:, 0, 0] for _ in range(4000)])
    for c in range(3):
        assert stats.ks_2samp(ours[:, c], reference[:, c]).pvalue > 1e-3, c
    for c in range(3):
        assert stats.kstest(jitter[:, c], stats.uniform(-0.4, 0.8).cdf).pvalue > 1e-3
        assert stats.kstest(alpha[:, c], stats.norm(0, 0.1).cdf).pvalue > 1e-3


def test_the_flip_is_a_fair_coin_applied_before_the_colour_map(device):
    arrays = random_images(64, h=6, w=5, seed=2)
    options = AugmentOptions()  # no colour change: the output is the normalized, maybe flipped, image
    out, mirror, *_ = run_pipeline(device, augmented(options, mirror=True), arrays, iterations=2)
    inputs = np.concatenate([np.stack(arrays)] * 2).astype(np.float32)
    expected = np.where(mirror[:, None, None, None] == 1, inputs[:, :, ::-1], inputs)
    np.testing.assert_allclose(out, (expected - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD), atol=1e-5)
    assert 0.3 < mirror.mean() < 0.7


# ---------------------------------------------------------------------------------------------- policies


def test_trivial_augment_wide_draws_every_op_and_bin_and_bin_zero_of_a_geometric_op_changes_nothing(device):
    suite = trivial_augment_suite()
    names = [aug.name for aug in suite]
    assert sorted(names) == sorted(["translate_x", "translate_y", "shear_x", "shear_y", "rotate", "brightness",
                                    "contrast", "color", "sharpness", "posterize", "solarize", "equalize",
                                    "auto_contrast", "identity"])
    arrays = random_images(128, seed=3)
    options = AugmentOptions(auto_augment="trivial-augment-wide")
    out, _, _, _, op, magnitude, _ = run_pipeline(device, augmented(options), arrays, iterations=4)
    op, magnitude = op[:, 0], magnitude[:, 0]
    assert set(op) == set(range(len(suite)))
    assert set(magnitude.astype(int)) == set(range(31))
    inputs = np.concatenate([np.stack(arrays)] * 4).astype(np.float32)
    unchanged = (inputs - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    same = np.all(np.abs(out - unchanged) < 1e-4, axis=(1, 2, 3))
    for i, (k, m) in enumerate(zip(op, magnitude)):
        if names[k] == "identity" or (m == 0 and names[k] in ("translate_x", "translate_y", "shear_x", "shear_y",
                                                               "rotate", "posterize", "solarize")):
            assert same[i], (names[k], m)
        if names[k] in ("solarize", "posterize") and m >= 8:
            assert not same[i], (names[k], m)
    assert not same.all()


@pytest.fixture(scope="module")
def rand_augment_runs():
    """One op per image (so each output is one op's), magnitude 9 with std 0.5, per device."""
    cache = {}

    def run(device):
        if device not in cache:
            arrays = random_images(128, seed=4)
            options = AugmentOptions(auto_augment="rand-augment", rand_augment_ops=1)
            out, _, _, _, op, level, _ = run_pipeline(device, augmented(options), arrays, iterations=4)
            inputs = np.concatenate([np.stack(arrays)] * 4)
            cache[device] = inputs, out, op[:, 0], level[:, 0]
        return cache[device]
    return run


def test_rand_augment_draws_timms_op_set_half_of_the_time_at_magnitude_9_std_half(device, rand_augment_runs):
    names = [name for name, _ in RAND_AUGMENT_OPS]
    assert names == ["AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                     "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                     "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "Identity"]
    _, _, op, level = rand_augment_runs(device)
    assert set(op) == set(range(16))
    assert stats.binomtest(int((op == 15).sum()), len(op), 0.5).pvalue > 1e-3  # timm's prob=0.5 per op
    magnitude = np.abs(level)
    clipped = stats.truncnorm(-np.inf, (10 - 9) / 0.5, loc=9, scale=0.5)  # clip at 10 only moves mass onto 10
    assert np.all((magnitude >= 0) & (magnitude <= 10))
    below = magnitude[magnitude < 10]
    assert stats.kstest(below, clipped.cdf).pvalue > 1e-3
    assert 0.3 < (level < 0).mean() < 0.7  # timm's _randomly_negate


def test_rand_augment_ops_match_timms_definitions(device, rand_augment_runs):
    """The ops with an exact NumPy definition (timm's PIL ops on uint8) give exactly its pixels."""
    inputs, out, op, level = rand_augment_runs(device)
    names = [name for name, _ in RAND_AUGMENT_OPS]
    pixels = np.rint(out * np.float32(IMAGENET_STD) + np.float32(IMAGENET_MEAN)).astype(np.uint8)
    references = {"Invert": lambda x, m: 255 - x, "Identity": lambda x, m: x,
                  "PosterizeIncreasing": timm_posterize_increasing, "SolarizeIncreasing": timm_solarize_increasing,
                  "SolarizeAdd": timm_solarize_add}
    checked = 0
    for x, y, k, m in zip(inputs, pixels, op, level):
        if names[k] in references:
            np.testing.assert_array_equal(y, references[names[k]](x, abs(float(m))), err_msg=names[k])
            checked += 1
        elif names[k] in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
                          "BrightnessIncreasing", "ContrastIncreasing"):
            assert not np.array_equal(y, x), names[k]  # magnitude ~9: every one of these changes the image
    assert checked > 100


def test_rand_augment_at_magnitude_zero_leaves_geometric_ops_unchanged(device):
    arrays = random_images(64, seed=6)
    options = AugmentOptions(auto_augment="rand-augment", rand_augment_ops=2, rand_augment_magnitude=0.0,
                             rand_augment_magnitude_std=0.0)
    out, _, _, _, op, level, _ = run_pipeline(device, augmented(options), arrays, iterations=2)
    names = [name for name, _ in RAND_AUGMENT_OPS]
    neutral = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
               "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "SolarizeIncreasing",
               "SolarizeAdd", "Identity"}  # not PosterizeIncreasing: timm's keeps 4 bits at level 0
    assert np.all(level == 0)
    inputs = np.concatenate([np.stack(arrays)] * 2).astype(np.float32)
    unchanged = (inputs - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    checked = 0
    for x, y, ops in zip(unchanged, out, op):
        if all(names[k] in neutral for k in ops):
            np.testing.assert_allclose(y, x, atol=1e-4, err_msg=str([names[k] for k in ops]))
            checked += 1
    assert checked > 40
    assert RAND_AUGMENT_FILL == round(np.mean([124, 116, 104]))


# ---------------------------------------------------------------------------------------------- erasing


@pytest.mark.parametrize("mode", ["const", "pixel"])
def test_random_erasing_rate_box_and_fill(device, mode):
    """An image is erased with probability p, in a box of area U(scale) and log-uniform aspect ratio that fits;
    inside it 0 ("const", torchvision's value=0) or N(0, 1) per pixel and channel ("pixel", timm's); outside it
    nothing changes."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    h, w = 40, 32
    rng = np.random.default_rng(7)
    arrays = [rng.normal(5.0, 0.1, (h, w, 3)).astype(np.float32) for _ in range(128)]  # far from N(0, 1)
    options = AugmentOptions(erase_prob=0.25, erase_mode=mode, erase_scale=(0.02, 1 / 3), erase_ratio=(0.3, 1 / 0.3))

    def graph(images):
        return random_erase(fn.cast(images, dtype=types.FLOAT), options)

    out, box = run_pipeline(device, graph, arrays, iterations=4)
    inputs = np.concatenate([np.stack(arrays)] * 4)
    erased = box[:, 2] > 0
    assert stats.binomtest(int(erased.sum()), len(erased), 0.25).pvalue > 1e-3
    inside_values = []
    for x, y, (top, left, bh, bw), e in zip(inputs, out, box, erased):
        mask = np.zeros((h, w), bool)
        if e:
            assert 0 < bh < h and 0 < bw < w and top + bh <= h and left + bw <= w
            assert 0.02 * h * w - bh - bw <= bh * bw <= h * w / 3 + bh + bw  # area up to the rounding of the sides
            mask[top:top + bh, left:left + bw] = True
        np.testing.assert_array_equal(y[~mask], x[~mask])
        if e:
            inside_values.append(y[mask].ravel())
    inside = np.concatenate(inside_values)
    if mode == "const":
        assert np.all(inside == 0)
    else:
        assert stats.kstest(inside[:5000], stats.norm().cdf).pvalue > 1e-3


# ---------------------------------------------------------------------------------------------- builder


def test_the_builder_takes_augment_and_none_is_todays_pipeline(device, jpeg_tree):
    """augment="none" (or None, or the defaults) builds exactly today's graph: the same pixels and no conditionals;
    "paper" works without mixing and with it."""
    from dali_cutmix.builder import build_cutmix_pipeline

    skip_without_gpu(device)
    common = dict(batch_size=4, crop=32, device=device, num_threads=1, seed=5)

    def first_batch(**kwargs):
        p = build_cutmix_pipeline(jpeg_tree, **common, **kwargs)
        p.build()
        return p, [to_numpy(o) for o in p.run()]

    p0, today = first_batch()
    assert p0._conditionals_enabled is False
    for spelling in ("none", None, AugmentOptions()):
        p, outputs = first_batch(augment=spelling)
        assert p._conditionals_enabled is False
        for a, b in zip(today, outputs):
            np.testing.assert_array_equal(a, b)
    _, (images, labels) = first_batch(mixing=False, augment="paper")
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32 and labels.shape[0] == 4
    assert not np.allclose(images, today[0])
    _, (images, labels) = first_batch(augment="paper", layout="NHWC", dtype="float16")
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.float16
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-6)
    _, (plain, _) = first_batch(layout="NHWC", dtype="float16")  # mixed too: the paper's colours still reach it
    assert not np.allclose(images, plain)


@pytest.mark.one_device("the builder refuses the preset before any pipeline exists")
def test_the_builder_refuses_an_unknown_preset_naming_it(jpeg_tree):
    from dali_cutmix.builder import build_cutmix_pipeline

    with pytest.raises(UserError, match="unknown augmentation preset 'paperr'"):
        build_cutmix_pipeline(jpeg_tree, batch_size=2, device="cpu", augment="paperr")


# ---------------------------------------------------------------------------------------------- command line


@pytest.mark.parametrize("preset", ["paper", "torchvision-v2"])
def test_preview_takes_the_augment_flags(jpeg_tree, tmp_path, capsys, device, preset):
    from PIL import Image

    from dali_cutmix.cli import main

    out = tmp_path / "grid.png"
    assert main(["preview", "--data", str(jpeg_tree), "--out", str(out), "--count", "4", "--crop", "48",
                 "--device", device, "--augment", preset, "--erase-prob", "0.5"]) == 0
    image = np.asarray(Image.open(out))
    assert image.ndim == 3 and image.shape[0] > 48 and "wrote" in capsys.readouterr().out
    plain = tmp_path / "plain.png"  # the same grid without the flags: they reached the pipeline
    assert main(["preview", "--data", str(jpeg_tree), "--out", str(plain), "--count", "4", "--crop", "48",
                 "--device", device]) == 0
    plain = np.asarray(Image.open(plain))
    assert plain.shape == image.shape and not np.array_equal(plain, image)


def test_an_augment_flag_out_of_range_is_one_line_naming_it(capsys):
    from dali_cutmix.cli import main

    for args, fragment in ((["--augment", "paper", "--color-jitter", "1.5"],
                            "--color-jitter must be in [0, 1], got 1.5"),
                           (["--erase-mode", "rand"], "--erase-mode must be one of ('const', 'pixel'), got 'rand'"),
                           (["--augment", "imagenet"], "Invalid value for '--augment'")):
        assert main(["preview", "--count", "2"] + args) == 2, args
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], (args, lines)


def test_the_flags_override_the_preset():
    from dali_cutmix.cli.augmenting import build_augment_options

    assert build_augment_options({"augment": "deit", "erase_prob": 0.0}) == PRESETS["deit"].replace(erase_prob=0.0)
    assert build_augment_options({}) == PRESETS["none"]
    assert build_augment_options({"lighting": 0.1}, preset="paper") == PRESETS["paper"]


@pytest.mark.parametrize("preset", ["paper", "deit", "torchvision-v2"])
def test_the_loader_reads_an_augmented_pipeline_and_its_checkpoint_resumes_the_same_stream(jpeg_tree, device,
                                                                                          preset):
    """CutMixLoader over each preset's pipeline (conditionals on for deit and torchvision-v2): batches of the
    right shape, and a checkpoint taken mid-epoch resumes the same images and labels, every draw included."""
    import torch

    from dali_cutmix.builder import build_cutmix_pipeline
    from dali_cutmix.loader import CutMixLoader

    skip_without_gpu(device)
    options = dict(batch_size=5, crop=32, device=device, num_threads=1, enable_checkpointing=True, augment=preset,
                   mix_options=dict(mode="elem", mixup_alpha=0.5))
    loader = CutMixLoader(build_cutmix_pipeline(jpeg_tree, **options))
    it = iter(loader)
    images, labels = next(it)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (5, 4)
    state = loader.checkpoint()
    expected = list(it)
    resumed = CutMixLoader(build_cutmix_pipeline(jpeg_tree, checkpoint=state, **options))
    got = list(iter(resumed))
    assert len(got) == len(expected) > 0
    for (xa, ya), (xb, yb) in zip(expected, got):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
