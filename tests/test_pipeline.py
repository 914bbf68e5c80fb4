"""The training pipeline builder and the PyTorch loader: outputs, sharding, epochs, checkpoints, the GPU graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import host, skip_where_roi_decoding_is_off, write_jpeg_tree

from dali_cutmix import CutMixLoader, build_cutmix_pipeline
from dali_cutmix.errors import UserError



@pytest.fixture
def on(device):
    """The builder's arguments for this test's device (the GPU case skipped with its reason without one)."""
    return dict(device=device, num_threads=2, crop=32)


@pytest.fixture(scope="session")
def one_per_class(tmp_path_factory):
    """26 classes with one image each, so that a class id names its file."""
    return write_jpeg_tree(tmp_path_factory.mktemp("ids") / "train", classes=26, per_class=1)


def epoch_ids(loader):
    """Class ids of one epoch, batch by batch (the last output of a ``return_params`` pipeline)."""
    return [batch[-1].reshape(-1).tolist() for batch in loader]


def test_outputs_are_normalized_chw_images_and_soft_labels(jpeg_tree, on):
    loader = CutMixLoader(build_cutmix_pipeline(jpeg_tree, batch_size=5, **on))
    images, targets = next(iter(loader))
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32
    assert targets.shape == (5, 4) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(5, device=targets.device))
    assert -3 < images.min() < 0 < images.max() < 3, "mean/std normalized"
    half = CutMixLoader(build_cutmix_pipeline(jpeg_tree, batch_size=5, dtype="float16", **on))
    assert next(iter(half))[0].dtype == torch.float16


def test_full_image_decoding_gives_the_same_kind_of_batches(jpeg_tree, on):
    """decode="full" (decode the whole image, then random-resized-crop): the way around a failing ROI decoder."""
    skip_where_roi_decoding_is_off(on["device"])
    roi = CutMixLoader(build_cutmix_pipeline(jpeg_tree, batch_size=5, stop_after="crop", decode="roi", **on))
    full = CutMixLoader(build_cutmix_pipeline(jpeg_tree, batch_size=5, stop_after="crop", decode="full", **on))
    (a, ids_a), (b, ids_b) = next(iter(roi)), next(iter(full))
    assert a.shape == b.shape == (5, 32, 32, 3) and a.dtype == b.dtype == torch.uint8
    assert torch.equal(ids_a, ids_b), "the same samples: decoding does not touch the reader"
    assert not torch.equal(a, b), "crops drawn by another operator"
    images, targets = next(iter(CutMixLoader(build_cutmix_pipeline(jpeg_tree, batch_size=5, decode="full", **on))))
    assert images.shape == (5, 3, 32, 32) and targets.shape == (5, 4)


@pytest.mark.parametrize("stop_after, shape", [("crop", (5, 32, 32, 3)), ("mix", (5, 32, 32, 3)),
                                               ("normalize", (5, 3, 32, 32))])
def test_the_pipeline_cut_after_a_named_stage(jpeg_tree, stop_after, shape, on):
    full = build_cutmix_pipeline(jpeg_tree, batch_size=5, return_params=True, **on)
    cut = build_cutmix_pipeline(jpeg_tree, batch_size=5, stop_after=stop_after, **on)
    images, labels = next(iter(CutMixLoader(cut)))[:2]
    assert tuple(images.shape) == shape
    reference = next(iter(CutMixLoader(full)))
    if stop_after == "crop":
        assert images.dtype == torch.uint8 and torch.equal(labels.reshape(-1), reference[-1].reshape(-1).int())
    else:
        torch.testing.assert_close(labels, reference[1])  # the same soft labels as the whole pipeline
    if stop_after == "normalize":
        assert torch.equal(images, reference[0])


def test_without_the_stage_labels_are_smoothed_one_hots(jpeg_tree, on):
    pipe = build_cutmix_pipeline(jpeg_tree, batch_size=6, mixing=False, mix_options=dict(label_smoothing=0.2),
                                 return_params=True, **on)
    images, targets, class_id = next(iter(CutMixLoader(pipe)))
    expected = np.full((6, 4), 0.05) + 0.8 * np.eye(4)[host(class_id).reshape(-1)]
    np.testing.assert_allclose(host(targets), expected, atol=1e-6)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_shards_of_an_epoch_are_disjoint_and_cover_the_data(one_per_class, num_shards, on):
    loaders = [CutMixLoader(build_cutmix_pipeline(one_per_class, batch_size=4, shard_id=s, num_shards=num_shards,
                                                  return_params=True, **on)) for s in range(num_shards)]
    orders = []
    for _ in range(2):  # two epochs
        shards = [sum(epoch_ids(loader), []) for loader in loaders]
        seen = sum(shards, [])
        assert sorted(seen) == list(range(26)), "each sample exactly once per epoch"
        orders.append(seen)
    assert orders[0] != orders[1], "a new shuffle every epoch"


def test_last_batch_policies(one_per_class, on):
    def sizes(policy):
        loader = CutMixLoader(build_cutmix_pipeline(one_per_class, batch_size=4, return_params=True, **on),
                              last_batch=policy)
        batches = epoch_ids(loader)
        assert len(loader) == len(batches)
        return [len(b) for b in batches], sum(batches, [])

    partial, ids = sizes("partial")
    assert partial == [4] * 6 + [2] and sorted(ids) == list(range(26))
    drop, ids = sizes("drop")
    assert drop == [4] * 6 and len(set(ids)) == 24
    fill, ids = sizes("fill")
    assert fill == [4] * 7 and set(ids) == set(range(26))
    with pytest.raises(UserError, match="last_batch must be one of"):
        CutMixLoader(build_cutmix_pipeline(one_per_class, batch_size=4, **on), last_batch="keep")


def test_same_seed_same_batches(jpeg_tree, on):
    def first(seed):
        return next(iter(CutMixLoader(build_cutmix_pipeline(jpeg_tree, batch_size=6, seed=seed, **on))))

    a, b, c = first(3), first(3), first(4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_checkpoint_resumes_the_same_stream(jpeg_tree, on):
    options = dict(batch_size=5, mix_options=dict(mode="elem"), enable_checkpointing=True, **on)
    loader = CutMixLoader(build_cutmix_pipeline(jpeg_tree, **options))
    it = iter(loader)
    for _ in range(2):
        next(it)
    state = loader.checkpoint()
    expected = list(it) + list(iter(loader))  # the rest of this epoch and the whole next one
    resumed = CutMixLoader(build_cutmix_pipeline(jpeg_tree, checkpoint=state, **options))
    got = list(iter(resumed)) + list(iter(resumed))
    assert len(got) == len(expected)
    for (xa, ya), (xb, yb) in zip(expected, got):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_checkpoint_taken_at_the_end_of_an_epoch_resumes_with_the_next_epoch(jpeg_tree, on):
    options = dict(batch_size=5, mix_options=dict(mode="elem"), enable_checkpointing=True, **on)
    loader = CutMixLoader(build_cutmix_pipeline(jpeg_tree, **options))
    list(loader)
    state = loader.checkpoint()
    expected = list(loader)
    resumed = CutMixLoader(build_cutmix_pipeline(jpeg_tree, checkpoint=state, **options))
    got = list(resumed)
    assert len(got) == len(expected) == len(resumed)
    for (xa, ya), (xb, yb) in zip(expected, got):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_missing_or_empty_data_path_is_named(tmp_path, on):
    with pytest.raises(UserError, match="does-not-exist"):
        build_cutmix_pipeline(tmp_path / "does-not-exist", batch_size=2, **on)
    (tmp_path / "empty" / "some_class").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        build_cutmix_pipeline(tmp_path / "empty", batch_size=2, **on)


@pytest.mark.parametrize("options, message", [
    (dict(device="tpu"), "device must be one of"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(crop=0), "crop must be a positive int"),
    (dict(shard_id=2, num_shards=2), "shard_id must be in"),
    (dict(mix_options=dict(cutmix_alpha=-1.0)), "cutmix_alpha must be >= 0"),
    (dict(mix_options=dict(cutmix_alpha=0.0)), "nothing to mix"),
    (dict(mix_options=dict(mode="sample")), "mode must be one of"),
    (dict(mix_options=dict(alpha=0.5)), "unknown mixing option"),
    (dict(mix_options=0.5), "mixing options must be MixOptions or a mapping"),
    (dict(num_classes=0), "num_classes must be an integer >= 1"),
    (dict(stop_after="resize"), "stop_after must be one of"),
    (dict(decode="nvjpeg"), "decode must be one of"),
])
def test_bad_builder_arguments_are_named(jpeg_tree, options, message, on):
    args = {**on, "batch_size": 2, **options}
    with pytest.raises(UserError, match=message):
        build_cutmix_pipeline(jpeg_tree, **args)


@pytest.mark.parametrize("options, error, message", [
    (dict(crop=32.0), UserError, "crop must be a positive int or (height, width) of positive ints, got 32.0"),
    (dict(crop=(32, 0)), UserError, "crop must be a positive int or (height, width) of positive ints, got (32, 0)"),
    (dict(crop=True), UserError, "crop must be a positive int or (height, width) of positive ints, got True"),
    (dict(seed=-1), UserError, "seed must be an integer in [0, 4294967295], got -1"),
    (dict(seed=1.5), UserError, "seed must be an integer in [0, 4294967295], got 1.5"),
    (dict(foo=1), TypeError, "build_cutmix_pipeline got an unknown argument 'foo' (neither its own nor one of "
                             "nvidia.dali.Pipeline's)"),
    (dict(exec_dynamic=False), TypeError, "build_cutmix_pipeline sets the pipeline argument 'exec_dynamic' itself"),
])
def test_misleading_builder_errors_are_exact(jpeg_tree, options, error, message, on):
    """Issue 10.4: a float crop used to fail with "'float' object is not iterable", an unknown keyword with
    DALI's "This shouldn't happen"."""
    with pytest.raises(error) as err:
        build_cutmix_pipeline(jpeg_tree, **{**on, "batch_size": 2, **options})
    assert str(err.value) == message


def test_pipeline_arguments_reach_the_pipeline(jpeg_tree, on):
    pipe = build_cutmix_pipeline(jpeg_tree, batch_size=2, prefetch_queue_depth=3, exec_pipelined=True, **on)
    assert pipe.prefetch_queue_depth == 3


@pytest.mark.one_device("the GPU graph, inspected unbuilt (no GPU needed): the same on every machine")
@pytest.mark.parametrize("mixup_alpha", [0.0, 0.4])
def test_the_gpu_pipeline_puts_every_pixel_operator_on_the_gpu(jpeg_tree, mixup_alpha):
    """CI has no GPU: check the GPU variant's graph, built by the same builder, operator by operator."""
    from nvidia.dali.ops import _registry

    pipe = build_cutmix_pipeline(jpeg_tree, batch_size=4, device="gpu",
                                 mix_options=dict(mixup_alpha=mixup_alpha))
    pipe._build_graph()  # the Python graph only; building the backend would need a GPU
    # ExternalSource: the stage's gate (padding, mix_off_epoch), per-sample integers on the CPU
    argument_ops = {"readers__File", "random__Uniform", "random__CoinFlip", "_Shape", "DaliCutmixParams",
                    "ExternalSource"}
    used = set()
    for op in pipe._ops:
        name, device = getattr(op._op, "schema_name", type(op._op).__name__), op._op.device
        used.add(name)
        if name in argument_ops:
            assert device == "cpu"
        elif device == "mixed":
            assert name in _registry.mixed_ops(), name
        else:
            assert device == "gpu" and name in _registry.gpu_ops(), f"{name} runs on {device}"
    assert {"decoders__ImageRandomCrop", "MultiPaste", "CropMirrorNormalize", "DaliCutmixParams",
            "ExternalSource"} <= used
    assert "DaliCutmixApply" not in used
    assert [o.device for o in pipe._graph_outputs] == ["gpu", "gpu"], "images and soft labels on the GPU"


@pytest.mark.one_device("the GPU graph, inspected unbuilt (no GPU needed): the same on every machine")
@pytest.mark.parametrize("decode, decoder", [("roi", "decoders__ImageRandomCrop"), ("full", "decoders__Image")])
def test_the_gpu_decoder_leaves_its_memory_to_dali(jpeg_tree, decode, decoder):
    """No preallocation hint or padding reaches the "mixed" decoder: its hardware decoder would reserve a hint
    for every sample of the batch, in each pipeline a rank holds."""
    pipe = build_cutmix_pipeline(jpeg_tree, batch_size=4, device="gpu", decode=decode)
    pipe._build_graph()  # the Python graph only; building the backend would need a GPU
    decoders = [op._op for op in pipe._ops if getattr(op._op, "schema_name", "") == decoder]
    assert len(decoders) == 1 and decoders[0].device == "mixed"
    memory = {"preallocate_width_hint", "preallocate_height_hint", "device_memory_padding",
              "host_memory_padding", "device_memory_padding_jpeg2k", "host_memory_padding_jpeg2k"}
    assert not memory & set(decoders[0]._init_args), decoders[0]._init_args
    assert decoders[0]._init_args["hw_decoder_load"] == pytest.approx(0.65)
