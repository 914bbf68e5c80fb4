"""The trainer (``train/``, ``dali-cutmix train``) on the CPU: recipes, schedule, loss, rank discovery, a short run
that learns, a 2-rank gloo run, kill + resume, and the bad inputs of the CLI.

Training runs go through the real command line in a subprocess (the trainer sets process-wide torch state:
threads, deterministic algorithms). Tiny data and models keep the file around two minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import (TINY, TRAIN_PER_CLASS, VAL_PER_CLASS, assert_one_line_error, cli_env, kill_in_epoch_2, load_state,
                      read_records, run_cli)
from conftest import device_id, trainer_flags

from dali_cutmix.errors import UserError
from dali_cutmix.train.plan import free_port

# --------------------------------------------------------------------------------------------- fast unit checks


def test_paper_recipe_and_overrides():
    from dali_cutmix import MixOptions
    from dali_cutmix.train.config import resolve_config

    cfg = resolve_config({"data": "/imagenet"})
    assert cfg.recipe == "paper"
    assert (cfg.arch, cfg.crop, cfg.val_resize, cfg.epochs, cfg.batch_size) == ("resnet50", 224, 256, 300, 256)
    assert (cfg.base_lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.1, 0.9, True, 1e-4)
    assert (cfg.schedule, cfg.milestones, cfg.lr_gamma) == ("step", (75, 150, 225), 0.1)
    assert cfg.mixing is True and cfg.mix_off_epoch is None and cfg.optimizer == "sgd"
    assert cfg.mix == MixOptions(cutmix_alpha=1.0, mixup_alpha=0.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                                 mode="batch", correct_lam=True, label_smoothing=0.0)
    big = resolve_config({"data": "/imagenet", "batch_size": 1024, "mode": "elem", "crop": 160})
    assert big.base_lr == pytest.approx(0.4) and big.mix.mode == "elem" and big.val_resize == 183
    assert big.eval_crop == 160 and big.mix == cfg.mix.replace(mode="elem")
    assert resolve_config({}).recipe == "demo"
    with pytest.raises(UserError, match="--prob"):
        resolve_config({"prob": 1.5})
    with pytest.raises(UserError, match="--milestones"):
        resolve_config({"milestones": (150, 75)})


def test_deit_and_torchvision_recipes_resolve_to_their_published_settings():
    """The values the README's Training section documents (with their sources) for --recipe deit and --recipe
    torchvision-v2."""
    from dali_cutmix.train.config import resolve_config

    deit = resolve_config({"data": "/imagenet", "recipe": "deit"})
    assert (deit.arch, deit.crop, deit.eval_crop, deit.val_resize, deit.min_area) == ("vit_b_16", 224, 224, 256, 0.08)
    assert (deit.epochs, deit.batch_size, deit.optimizer, deit.weight_decay) == (300, 1024, "adamw", 0.05)
    assert deit.base_lr == pytest.approx(5e-4 * 1024 / 512)  # DeiT: lr * batch / 512
    assert (deit.norm_weight_decay, deit.bias_weight_decay, deit.transformer_embedding_decay) == (0.0, 0.0, 0.0)
    assert (deit.schedule, deit.warmup_epochs, deit.mix.label_smoothing) == ("cosine", 5, 0.1)
    assert (deit.mixing, deit.mix.cutmix_alpha, deit.mix.mixup_alpha, deit.mix.switch_prob, deit.mix.prob,
            deit.mix.mode, deit.mix.cutmix_minmax, deit.mix.correct_lam) == (True, 1.0, 0.8, 0.5, 1.0, "batch", None,
                                                                             True)
    assert deit.mix_off_epoch is None and deit.mixing_in_epoch(300)

    tv = resolve_config({"data": "/imagenet", "recipe": "torchvision-v2"})
    assert (tv.arch, tv.crop, tv.eval_crop, tv.val_resize, tv.min_area) == ("resnet50", 176, 224, 232, 0.08)
    assert (tv.epochs, tv.batch_size, tv.base_lr) == (600, 1024, pytest.approx(0.5))
    assert (tv.optimizer, tv.momentum, tv.nesterov, tv.weight_decay) == ("sgd", 0.9, False, 2e-5)
    assert (tv.norm_weight_decay, tv.bias_weight_decay, tv.transformer_embedding_decay) == (0.0, None, None)
    assert (tv.schedule, tv.milestones, tv.warmup_epochs, tv.mix.label_smoothing) == ("cosine", (), 5, 0.1)
    assert (tv.mix.cutmix_alpha, tv.mix.mixup_alpha, tv.mix.switch_prob, tv.mix.prob, tv.mix.mode) == (
        1.0, 0.2, 0.5, 1.0, "batch")

    # every flag overrides its recipe value; the rest stay
    mine = resolve_config({"data": "/imagenet", "recipe": "deit", "arch": "resnet50", "batch_size": 512,
                           "mixup_alpha": 0.4, "cutmix_alpha": 0.0, "mode": "pair", "switch_prob": 0.3,
                           "label_smoothing": 0.0, "mix_off_epoch": 291, "norm_weight_decay": "none"})
    assert (mine.arch, mine.base_lr, mine.weight_decay, mine.optimizer) == ("resnet50", pytest.approx(5e-4), 0.05,
                                                                            "adamw")
    assert (mine.mix.mixup_alpha, mine.mix.cutmix_alpha, mine.mix.mode, mine.mix.switch_prob) == (0.4, 0.0, "pair",
                                                                                                  0.3)
    assert (mine.mix.label_smoothing, mine.norm_weight_decay, mine.bias_weight_decay) == (0.0, None, 0.0)
    assert mine.mix_off_epoch == 291  # epochs 1..291 mixed, off from 292: timm's --mixup-off-epoch 291
    assert mine.mixing_in_epoch(291) and not mine.mixing_in_epoch(292)
    small = resolve_config({"data": "/imagenet", "recipe": "torchvision-v2", "crop": 128})
    assert (small.crop, small.eval_crop, small.val_resize) == (128, 224, 232)  # validation unchanged
    other = resolve_config({"data": "/imagenet", "recipe": "torchvision-v2", "val_crop": 288})
    assert (other.eval_crop, other.val_resize) == (288, 329)
    for bad, flag in (({"mix_off_epoch": 0}, "--mix-off-epoch"), ({"optimizer": "lion"}, "--optimizer"),
                      ({"norm_weight_decay": -1.0}, "--norm-weight-decay"),
                      ({"recipe": "torchvision-v2", "val_resize": 200}, "--val-crop")):
        with pytest.raises(UserError, match=flag):
            resolve_config(bad)


def test_mixing_options_come_from_mix_options():
    """The trainer's mixing options are one MixOptions, named, defaulted and checked there: resolve_config builds it
    from the recipe's values and the user's, and reports its errors with the flags' names."""
    from dali_cutmix import MixOptions
    from dali_cutmix.train.config import MIX_KEYS, SETTINGS, TrainConfig, resolve_config
    from dali_cutmix.train.recipe import RECIPES

    assert MIX_KEYS == tuple(f.name for f in dataclasses.fields(MixOptions))
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert not set(fields) & set(MIX_KEYS)  # no flat copies of the options ...
    assert fields["mix"].default is dataclasses.MISSING and fields["mix"].default_factory is dataclasses.MISSING
    assert set(MIX_KEYS) < set(SETTINGS) and "mix" not in SETTINGS  # ... which resolve_config takes by their names
    for name, recipe in RECIPES.items():
        assert resolve_config({"recipe": name}).mix == MixOptions(**{k: recipe[k] for k in MIX_KEYS}), name

    for bad, message in (
            ({"cutmix_alpha": -1.0}, "--cutmix-alpha must be >= 0 (0 turns CutMix off), got -1.0"),
            ({"cutmix_alpha": 0.0}, "nothing to mix: --cutmix-alpha is 0, no --cutmix-minmax is set and "
                                    "--mixup-alpha is 0"),
            ({"switch_prob": 2.0}, "--switch-prob must be in [0, 1], got 2.0"),
            ({"mode": "pixel"}, "--mode must be one of ('batch', 'elem', 'pair'), got 'pixel'"),
            ({"label_smoothing": 1.0}, "--label-smoothing must be in [0, 1), got 1.0"),
            ({"cutmix_minmax": (0.8, 0.2)}, "--cutmix-minmax must satisfy 0 < lo <= hi <= 1, got (0.8, 0.2)"),
            ({"alpha": 0.5}, "unknown settings: alpha"), ({"mix_mode": "elem"}, "unknown settings: mix_mode"),
            ({"cutmix": False}, "unknown settings: cutmix")):
        with pytest.raises(UserError) as info:
            resolve_config(bad)
        assert str(info.value) == message, bad

    boxes = resolve_config({"cutmix_alpha": 0.0, "cutmix_minmax": (0.2, 0.8)})
    assert boxes.mix.cutmix_minmax == (0.2, 0.8) and boxes.mix.cutmix_on and not boxes.mix.mixup_on
    assert boxes.to_dict()["mix"]["cutmix_minmax"] == [0.2, 0.8]
    assert resolve_config({"cutmix_minmax": "none"}).mix.cutmix_minmax is None  # --cutmix-minmax none
    assert resolve_config({"correct_lam": False}).mix.correct_lam is False

    # the no-mix baseline keeps the recipe's options (its targets are smoothed by their label_smoothing)
    baseline = resolve_config({"recipe": "deit", "mixing": False})
    assert baseline.mixing is False and baseline.mix == resolve_config({"recipe": "deit"}).mix
    assert baseline.mix.label_smoothing == 0.1 and not baseline.mixing_in_epoch(1)
    assert baseline.to_dict()["mixing"] is False and baseline.to_dict()["mix"]["mode"] == "batch"

    # TrainConfig is checked once, on construction, and cannot change afterwards
    cfg = resolve_config({})
    with pytest.raises(UserError) as info:
        dataclasses.replace(cfg, epochs=0)
    assert str(info.value) == "--epochs must be an integer >= 1, got 0"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3


def test_weight_decay_groups_and_adamw():
    """torchvision's set_weight_decay rules: embeddings, then biases, then norm layers; DeiT's (timm's) filter is
    the three at 0."""
    import torch
    import torchvision

    from dali_cutmix.train.optim import build_optimizer, parameter_groups

    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2,
                                               hidden_dim=8, mlp_dim=16, num_classes=4)
    names = {id(p): n for n, p in vit.named_parameters()}
    groups = {g["name"]: (g["weight_decay"], sorted(names[id(p)] for p in g["params"]))
              for g in parameter_groups(vit, weight_decay=0.05, norm_weight_decay=0.0, bias_weight_decay=0.0,
                                        transformer_embedding_decay=0.0)}
    assert groups["embedding"] == (0.0, ["class_token", "encoder.pos_embedding"])
    assert all(n.endswith("bias") for n in groups["bias"][1]) and groups["bias"][0] == 0.0
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj_bias" in groups["bias"][1]
    assert groups["norm"][1] and all(n.endswith(".weight") and "ln" in n for n in groups["norm"][1])
    assert groups["other"][0] == 0.05 and all(n.endswith("weight") for n in groups["other"][1])
    timm_no_decay = {n for n, p in vit.named_parameters() if p.ndim == 1 or n.endswith(".bias")} | {
        "class_token", "encoder.pos_embedding"}
    assert set(groups["other"][1]) == {n for n, _ in vit.named_parameters()} - timm_no_decay

    resnet = torchvision.models.resnet18(num_classes=4)
    tv = {g["name"]: g for g in parameter_groups(resnet, weight_decay=2e-5, norm_weight_decay=0.0)}
    bn = {id(p) for m in resnet.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in tv["norm"]["params"]} == bn and tv["norm"]["weight_decay"] == 0.0
    assert {id(p) for p in tv["other"]["params"]} == {id(p) for p in resnet.parameters()} - bn  # fc.bias: 2e-5
    assert set(tv) == {"other", "norm"}

    # every public norm class counts, told apart without torch's private base classes
    nn = torch.nn
    layers = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm1d(4), nn.BatchNorm2d(4), nn.BatchNorm3d(4),
                           nn.SyncBatchNorm(4), nn.InstanceNorm2d(4, affine=True), nn.LayerNorm(4),
                           nn.GroupNorm(2, 4), nn.Linear(4, 2))
    split = {g["name"]: sorted(n for n, p in layers.named_parameters() if any(p is q for q in g["params"]))
             for g in parameter_groups(layers, weight_decay=0.1, norm_weight_decay=0.0)}
    assert split == {"other": ["0.bias", "0.weight", "8.bias", "8.weight"],
                     "norm": sorted(f"{i}.{w}" for i in range(1, 8) for w in ("weight", "bias"))}

    adamw = build_optimizer(vit, optimizer="adamw", lr=1e-3, weight_decay=0.05, norm_weight_decay=0.0,
                            bias_weight_decay=0.0, transformer_embedding_decay=0.0)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.9, 0.999)


def test_one_weight_decay_is_one_group_that_trains_as_sgd_over_all_parameters():
    """Without extra decays the groups collapse to one, over model.parameters() in their order: the same optimizer
    (and the same weights, bit for bit) as ``SGD(model.parameters(), ...)``, the paper's."""
    import torch
    import torchvision

    from dali_cutmix.train.optim import build_optimizer

    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(torchvision.models.resnet18(num_classes=4))
    ours = build_optimizer(models[0], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    plain = torch.optim.SGD(models[1].parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    assert isinstance(ours, torch.optim.SGD) and len(ours.param_groups) == 1
    group = ours.param_groups[0]
    assert [id(p) for p in group["params"]] == [id(p) for p in models[0].parameters()]
    assert (group["weight_decay"], group["momentum"], group["nesterov"], group["lr"]) == (1e-4, 0.9, True, 0.1)
    torch.manual_seed(1)
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 4, (4,))) for _ in range(3)]
    for model, optimizer in zip(models, (ours, plain)):
        model.train()
        for images, labels in batches:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert a.equal(b), name
    assert all(ours.state[p]["momentum_buffer"].equal(plain.state[q]["momentum_buffer"])
               for p, q in zip(models[0].parameters(), models[1].parameters()))


def test_each_recipe_augments_as_its_source_and_a_resumed_run_keeps_it():
    """``augment``: each recipe's preset (the per-image augmentation of its source), overridden by --augment and by
    each option's flag, stored in the checkpoint's settings and locked on resume (the DALI graph its state restores
    into)."""
    from dali_cutmix.augment_options import PRESETS
    from dali_cutmix.train.checkpoint import check_locked, saved_settings
    from dali_cutmix.train.config import flag_value, resolve_config

    for recipe in ("paper", "deit", "torchvision-v2", "demo"):
        expected = PRESETS["none" if recipe == "demo" else recipe]
        assert resolve_config({"data": "/imagenet", "recipe": recipe}).augment == expected, recipe
    paper = resolve_config({"recipe": "paper", "color_jitter": 0.2})
    assert paper.augment == PRESETS["paper"].replace(color_jitter=0.2)
    assert flag_value("augment", paper.augment) == "--augment color_jitter=0.2 lighting=0.1"
    assert resolve_config({"recipe": "demo", "augment": "deit", "erase_prob": 0.5}).augment == PRESETS["deit"].replace(
        erase_prob=0.5)
    with pytest.raises(UserError, match=r"^--erase-prob must be in \[0, 1\], got 2.0$"):
        resolve_config({"recipe": "paper", "erase_prob": 2.0})

    state = dict(config=resolve_config({"recipe": "deit"}).to_dict())
    assert state["config"]["augment"] == PRESETS["deit"].as_dict()
    saved = resolve_config({}, base=saved_settings(state, "last.pt"))
    assert saved.augment == PRESETS["deit"]
    check_locked(saved, resolve_config({"augment": "deit"}, base=saved_settings(state, "last.pt")), "checkpoint")
    with pytest.raises(UserError) as info:
        check_locked(saved, resolve_config({"augment": "none"}, base=saved_settings(state, "last.pt")),
                     "checkpoint 'last.pt'")
    assert str(info.value) == ("--augment none: checkpoint 'last.pt' was trained with --augment deit, which a resumed "
                               "run keeps (leave --augment out, or start a new run in another --output)")


def test_resume_keeps_mixing_methods_on_or_off():
    """A checkpoint holds the DALI pipeline's state: CutMix or MixUp may not be switched on or off on resume (their
    alphas may change); the stage, the mode and the optimizer are locked (the one lock list, checked when the
    resumed run's settings are resolved)."""
    from dali_cutmix.train.checkpoint import CheckpointError, check_compatible, check_locked
    from dali_cutmix.train.config import resolve_config

    def check(saved, **now):
        state = dict(world_size=1, classes=["a"], config=saved)
        check_compatible(state, "last.pt", config=resolve_config(now), world_size=1, classes=["a"])

    def refused(saved, **now):
        with pytest.raises(CheckpointError) as info:
            check(saved, **now)
        return str(info.value)

    def locked(saved, **now):
        with pytest.raises(UserError) as info:
            check_locked(resolve_config(saved), resolve_config(now), "checkpoint 'last.pt'")
        return str(info.value)

    deit = resolve_config({"recipe": "deit"}).to_dict()
    check(deit, recipe="deit", mixup_alpha=0.2, cutmix_alpha=0.5, mix_off_epoch=200)  # values may change
    check(deit, recipe="deit", cutmix_alpha=0.0, cutmix_minmax=(0.3, 0.7))  # CutMix on by its boxes
    assert refused(deit, recipe="deit", mixup_alpha=0.0) == (
        "checkpoint 'last.pt' was written with MixUp on (--mixup-alpha 0.8), this run has it off: turning MixUp on "
        "or off changes the DALI pipeline whose state the checkpoint holds; resume with MixUp on (its alpha may "
        "change)")
    assert "was written with CutMix on (--cutmix-alpha 1, --cutmix-minmax none), this run has it off" in refused(
        deit, recipe="deit", cutmix_alpha=0.0)
    assert locked({"recipe": "deit"}, recipe="deit", optimizer="sgd") == (
        "--optimizer sgd: checkpoint 'last.pt' was trained with --optimizer adamw, which a resumed run keeps (leave "
        "--optimizer out, or start a new run in another --output)")
    assert locked({"recipe": "deit"}, recipe="deit", mode="elem").startswith(
        "--mode elem: checkpoint 'last.pt' was trained with --mode batch, which a resumed run keeps")
    assert locked({"recipe": "deit"}, recipe="deit", mixing=False).startswith(
        "--no-mixing: checkpoint 'last.pt' was trained with --mixing, which a resumed run keeps")
    baseline = resolve_config({"recipe": "deit", "mixing": False}).to_dict()
    check(baseline, recipe="deit", mixing=False, mixup_alpha=0.0)  # no stage in the graph: nothing to keep
    # a config of another layout (the trainer's before MixOptions) is refused in one line, not with a KeyError
    older = {k: v for k, v in deit.items() if k not in ("mix", "mixing")}
    older.update(cutmix=True, cutmix_alpha=1.0, mixup_alpha=0.8, mix_mode="batch")
    assert refused(older, recipe="deit") == ("checkpoint 'last.pt' holds no mixing options: it was not written by "
                                             "this version of the trainer")


def test_help_shows_each_recipe_value():
    """``train --help`` lists each recipe's value in every flag's help, made from the recipe table: each value
    read back from the help text equals the table's."""
    from click.testing import CliRunner

    from dali_cutmix.cli.train import train
    from dali_cutmix.train.config import MIX_KEYS, RECIPE_KEYS
    from dali_cutmix.train.recipe import RECIPES

    assert all(set(r) == set(RECIPE_KEYS) for r in RECIPES.values())
    assert list(RECIPES) == ["paper", "deit", "torchvision-v2", "demo"]

    def same(text, value):
        """Whether the help's ``text`` states the recipe's ``value``."""
        if isinstance(value, bool):
            return text == ("on" if value else "off")
        if value is None or value == ():
            return text == "none"
        if isinstance(value, tuple):
            return [float(v) for v in text.split(",")] == [float(v) for v in value]
        if isinstance(value, (int, float)):
            return float(text) == float(value)
        return text == value

    helps = {param.name: " ".join((param.help or "").split()) for param in train.params}
    for key in RECIPE_KEYS:
        flag = "lr" if key == "lr_per_256" else key  # --lr's default is the lr per 256 images x batch/256
        match = re.search(r"paper: ([^;]+); deit: ([^;]+); torchvision-v2: ([^;]+); demo: ([^\]]+)\]$", helps[flag])
        assert match, (key, helps[flag])
        for text, recipe in zip(match.groups(), RECIPES.values()):
            assert same(text, recipe[key]), (key, match.group(0))
    assert "batch/256 x the recipe's lr per 256 images" in helps["lr"]
    assert "crop * 256/224" in helps["val_resize"]
    assert set(MIX_KEYS) <= set(helps) and "mixing" in helps
    text = CliRunner().invoke(train, ["--help"], terminal_width=200).output
    for flag in ("--data", "--output", "--gpus", "--cpu-procs", "--nnodes", "--node-rank", "--master-addr",
                 "--master-port", "--resume", "--workers", "--seed", "--recipe", "--compile", "--amp",
                 "--mixing / --no-mixing", "--cutmix-alpha FLOAT", "--mixup-alpha", "--cutmix-minmax LO,HI|none",
                 "--prob", "--switch-prob", "--mode batch|elem|pair", "--correct-lam / --no-correct-lam",
                 "--label-smoothing", "--mix-off-epoch", "torchvision-v2"):
        assert flag in text, flag
    for gone in ("--alpha", "--mix-mode", "--no-cutmix", "former name"):
        assert gone not in text, gone


def test_step_and_cosine_schedules():
    from dali_cutmix.train.optim import lr_at

    paper = dict(base_lr=0.1, epochs=300, schedule="step", milestones=(75, 150, 225), gamma=0.1)
    assert [lr_at(e, **paper) for e in (0, 74.99, 75, 149.5, 150, 225, 299.9)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-4, 1e-4])
    cos = dict(base_lr=1.0, epochs=10, schedule="cosine", warmup_epochs=2)
    assert lr_at(1, **cos) == pytest.approx(0.5)
    assert lr_at(2, **cos) == pytest.approx(1.0)
    assert lr_at(6, **cos) == pytest.approx(0.5)
    assert lr_at(10, **cos) == pytest.approx(0.0, abs=1e-12)


def test_soft_target_cross_entropy():
    import torch
    import torch.nn.functional as F

    from dali_cutmix import soft_target_cross_entropy
    from dali_cutmix.train.accuracy import topk_correct

    torch.manual_seed(0)
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    onehot = F.one_hot(labels, 5).float()
    assert soft_target_cross_entropy(logits, onehot).item() == pytest.approx(F.cross_entropy(logits, labels).item())
    other = torch.randint(0, 5, (8,))
    mixed = 0.3 * onehot + 0.7 * F.one_hot(other, 5).float()
    want = 0.3 * F.cross_entropy(logits, labels) + 0.7 * F.cross_entropy(logits, other)
    assert soft_target_cross_entropy(logits, mixed).item() == pytest.approx(want.item(), rel=1e-6)
    hits = topk_correct(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.2]]), torch.tensor([0, 0]), ks=(1, 5))
    assert hits.tolist() == [1.0, 2.0]  # top-5 capped at 3 classes


def test_metrics_rewind_keeps_each_epoch_once(tmp_path):
    from dali_cutmix.train.metrics import MetricsLog, read_metrics

    log = MetricsLog(tmp_path)
    for epoch in (1, 2, 2, 3):
        log.append({"epoch": epoch, "train_loss": float(epoch)})
    with open(log.path, "a") as f:
        f.write('{"epoch": 4, "train_lo')  # a line cut by a kill
    log.rewind(2)
    assert [r["epoch"] for r in read_metrics(log.path)] == [1, 2]
    log.rewind(3, {"epoch": 3, "train_loss": 3.0})  # the checkpoint's own record fills a missing line
    assert [r["epoch"] for r in read_metrics(log.path)] == [1, 2, 3]


def test_rank_discovery_from_torchrun_and_slurm():
    from dali_cutmix.train.distributed import RankInfo, export_slurm_env, first_slurm_host, rank_info

    assert rank_info({}) == RankInfo()
    torchrun = {"RANK": "5", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8"}
    assert rank_info(torchrun) == RankInfo(5, 16, 1, 8)
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "8",
             "SLURM_JOB_NODELIST": "gpu[007-008]"}
    assert rank_info(slurm) == RankInfo(9, 16, 1, 8)
    export_slurm_env(slurm)
    assert (slurm["RANK"], slurm["WORLD_SIZE"], slurm["LOCAL_RANK"]) == ("9", "16", "1")
    assert (slurm["MASTER_ADDR"], slurm["MASTER_PORT"]) == ("gpu007", "29500")
    assert first_slurm_host("node-a,node-b") == "node-a"
    assert first_slurm_host("x[1,3-4],y2") == "x1"
    # a batch script (one task, no srun step) is not a distributed launch
    assert rank_info({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == RankInfo()


def test_progress_redraws_on_a_terminal_and_prints_lines_elsewhere():
    import io

    from dali_cutmix.helpers.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    bar = Progress(4, "epoch 1/2", stream=tty)
    bar.interval_s = 0
    for step in range(1, 5):
        bar.update(step, lambda: "loss 1.0")
    bar.close()
    assert "\repoch 1/2 [" + "#" * 24 + "] 4/4 loss 1.0" in tty.getvalue() and tty.getvalue().endswith("\r\033[K")
    log = io.StringIO()
    bar = Progress(10, "epoch 1/2", stream=log, every=4)
    for step in range(1, 11):
        bar.update(step, lambda: "loss 1.0")
    bar.close()
    assert log.getvalue().splitlines() == ["epoch 1/2 step 4/10 loss 1.0", "epoch 1/2 step 8/10 loss 1.0"]
    quiet = io.StringIO()
    Progress(3, "x", stream=quiet, enabled=False).update(3)  # ranks other than 0
    assert quiet.getvalue() == ""


# ------------------------------------------------------------------------------------------------ training runs


def test_short_run_lowers_loss_and_beats_chance(tiny_imagenet, tmp_path, device):
    out = tmp_path / "run"
    result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(out), "--epochs", "4",
                      "--batch-size", "16", "--prob", "0.5", "--mode", "elem", *trainer_flags(device), *TINY],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    records = read_records(out)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    losses = [r["train_loss"] for r in records]
    assert losses[-1] < losses[0], losses
    # --prob 0.5 per sample: about half the targets mix two classes (a partner of the same class does not count)
    assert all(r["mixing"] is True and 0.15 < r["mixed_targets"] < 0.6 for r in records), records
    assert max(r["val_top1"] for r in records) > 50.0, records  # 4 classes: chance is 25%
    last = records[-1]
    assert last["val_images"] == 4 * VAL_PER_CLASS and last["train_images"] == 4 * TRAIN_PER_CLASS
    assert 0.0 <= last["data_wait"] <= 1.0 and last["images_per_s"] > 0
    state = load_state(out / "last.pt")  # weights_only=True loads it
    assert state["epoch"] == 4 and isinstance(state["dali"][0], str)
    assert (out / "best.pt").exists() and "val top-1" in result.stdout


def test_two_ranks_have_disjoint_shards_and_identical_weights(tiny_imagenet, tmp_path, device):
    """Two CPU ranks (gloo), or two GPUs (NCCL; skipped where DALI sees fewer)."""
    out = tmp_path / "ddp"
    result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(out), "--epochs", "2",
                      "--batch-size", "16", *trainer_flags(device, ranks=2), *TINY], tmp_path)
    assert result.returncode == 0, result.stderr
    ranks = json.loads((out / "ranks.json").read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    assert sorted(r["reader"]["shard_id"] for r in ranks) == [0, 1]
    assert all(r["reader"]["number_of_shards"] == 2 for r in ranks)
    assert ranks[0]["state_digest"] == ranks[1]["state_digest"]  # DDP kept the replicas identical
    assert sum(r["train_samples_per_epoch"] for r in ranks) == 4 * TRAIN_PER_CLASS
    records = read_records(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["val_images"] == 4 * VAL_PER_CLASS  # every val image once over both ranks
    assert len(load_state(out / "last.pt")["dali"]) == 2  # each rank's own DALI state

    # The readers the ranks reported read disjoint shards that cover the data, in every epoch.
    shards = [_shard_sample_hashes(tiny_imagenet / "train", shard, 2, epochs=2) for shard in (0, 1)]
    for epoch in range(2):
        assert not shards[0][epoch] & shards[1][epoch]
        assert len(shards[0][epoch] | shards[1][epoch]) == 4 * TRAIN_PER_CLASS


def _shard_sample_hashes(train_dir, shard_id, num_shards, *, epochs):
    """Per epoch, the set of file-content hashes the trainer's reader configuration gives shard ``shard_id``."""
    from nvidia.dali import pipeline_def

    from dali_cutmix.builder import reader

    @pipeline_def(batch_size=8, num_threads=1, device_id=None)
    def probe():
        jpegs, _ = reader(train_dir, shard_id=shard_id, num_shards=num_shards, shuffle=True, seed=3)
        return jpegs

    pipe = probe()
    pipe.build()
    size = pipe.reader_meta("Reader")["epoch_size_padded"] // num_shards
    out = []
    for _ in range(epochs):
        seen, count = set(), 0
        while count < size:
            (batch,) = pipe.run()
            for i in range(len(batch)):
                if count < size:
                    seen.add(hashlib.sha1(batch.at(i).tobytes()).hexdigest())
                    count += 1
        out.append(seen)
    return out


def test_runs_unchanged_under_torchrun(tiny_imagenet, tmp_path, device):
    """torchrun starts the 2 processes; each reads RANK / WORLD_SIZE / LOCAL_RANK and starts none itself (on the
    GPU, each drives the GPU of its local rank: skipped where DALI sees fewer than 2). (SLURM's variables are
    mapped onto the same ones: see test_rank_discovery_from_torchrun_and_slurm.)"""
    trainer_flags(device, ranks=2)  # only to skip the GPU case without 2 GPUs: under torchrun, --gpus says on/off
    out = tmp_path / "torchrun"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(free_port()), "-m", "dali_cutmix.cli",
           "train", "--data", str(tiny_imagenet), "--output", str(out), "--epochs", "1", "--batch-size", "16",
           "--gpus", "1" if device == "gpu" else "0", *TINY]
    result = subprocess.run(cmd, cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    ranks = json.loads((out / "ranks.json").read_text())
    assert [r["reader"]["shard_id"] for r in ranks] == [0, 1]
    assert ranks[0]["state_digest"] == ranks[1]["state_digest"]
    assert [r["epoch"] for r in read_records(out)] == [1]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tiny_imagenet, tmp_path, device):
    """On the GPU with ``--deterministic`` (deterministic cuDNN, cuBLAS and torch kernels, no autotuning, no TF32):
    bit-identical weights there too."""
    args = ["train", "--data", str(tiny_imagenet), "--epochs", "3", "--batch-size", "16", "--log-every", "1",
            *trainer_flags(device), *(["--deterministic"] if device == "gpu" else []), *TINY]
    # Reference: the same seed, never interrupted.
    ref = tmp_path / "ref"
    result = run_cli(args + ["--output", str(ref)], tmp_path)
    assert result.returncode == 0, result.stderr

    # Killed with SIGKILL after epoch 1's checkpoint, two steps into epoch 2.
    out = tmp_path / "killed"
    kill_in_epoch_2(args + ["--output", str(out)], tmp_path)
    assert load_state(out / "last.pt")["epoch"] == 1

    result = run_cli(args + ["--output", str(out), "--resume", "auto"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 1" in result.stdout
    assert [r["epoch"] for r in read_records(out)] == [1, 2, 3]  # every epoch logged exactly once

    got, want = load_state(out / "last.pt"), load_state(ref / "last.pt")
    assert got["epoch"] == want["epoch"] == 3
    for name, tensor in want["model"].items():
        assert got["model"][name].equal(tensor), name  # bit-identical weights (deterministic kernels)
    for i, s in want["optimizer"]["state"].items():
        assert got["optimizer"]["state"][i]["momentum_buffer"].equal(s["momentum_buffer"])
    assert got["dali"] == want["dali"]  # and the data stream is at the same place
    assert [r["train_loss"] for r in read_records(out)] == [r["train_loss"] for r in read_records(ref)]


def test_failure_inside_a_worker_is_one_line_and_exit_2(tiny_imagenet, tmp_path, device):
    """Each of 2 ranks gets 64 images per step but its shard holds 64: fine; 160 per rank is not (checked by
    the worker, which knows its shard): the parent prints the worker's one line. On the GPU: two GPUs (skipped
    where DALI sees fewer)."""
    out = tmp_path / "big"
    result = run_cli(["train", "--data", str(tiny_imagenet), "--output", str(out), "--epochs", "1",
                      "--batch-size", "320", *trainer_flags(device, ranks=2), *TINY], tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "--batch-size 320", "shard")


# ------------------------------------------------------------------------------------------------ mixing schedule


def _target_kinds(loader, on_value, epochs):
    """Per epoch: (batches, samples whose target mixes two classes, samples whose target is a smoothed one-hot)."""
    import torch

    out = []
    for _ in range(epochs):
        batches = mixed = plain = 0
        for _, targets in loader:
            batches += 1
            assert torch.allclose(targets.sum(dim=1), torch.ones(len(targets), device=targets.device), atol=1e-5)
            top = targets.max(dim=1).values
            mixed += int((top < on_value - 1e-4).sum())
            plain += int(((top - on_value).abs() < 1e-6).sum())
        out.append((batches, mixed, plain))
    return out


def test_decode_full_reaches_the_training_pipeline_and_is_kept_on_resume(tiny_imagenet, device):
    """--decode full: the trainer's training pipeline decodes whole images (decoders.image + random_resized_crop,
    no ROI decoder); the default is ROI. A resumed run keeps it: its DALI checkpoint only fits that graph."""
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.loaders import build_rank_data
    from dali_cutmix.train.config import LOCKED

    kw = dict(train_dir=tiny_imagenet / "train", val_dir=tiny_imagenet / "val", num_classes=4, info=RankInfo(),
              device=device, device_id=device_id(device))

    def decoders(decode):
        options = {"data": str(tiny_imagenet), "arch": "resnet18", "crop": 32, "batch_size": 16, "workers": 1}
        cfg = resolve_config({**options, "decode": decode} if decode else options)
        pipe = build_rank_data(cfg, **kw).train.pipeline
        names = {getattr(op._op, "schema_name", type(op._op).__name__) for op in pipe._ops}
        return sorted(n for n in names if "decoders" in n or "RandomResizedCrop" in n)

    assert decoders(None) == decoders("roi") == ["decoders__ImageRandomCrop"]
    assert decoders("full") == ["RandomResizedCrop", "decoders__Image"]
    assert "decode" in LOCKED
    with pytest.raises(UserError, match="--decode must be one of roi, full, got 'crop'"):
        resolve_config({"decode": "crop"})


def test_mix_off_epoch_makes_the_loader_targets_one_hot_from_that_epoch(tiny_imagenet, device):
    """The trainer's own loader (train.loaders.build_rank_data): with --mix-off-epoch 2, the user's epochs 1 and 2
    (the reader's 0 and 1) are mixed and epoch 3 on are smoothed one-hots; a loader rebuilt from the DALI
    checkpoint after epoch 1 (a resume) keeps that schedule. 24 images per step on 128: the reader's last, partial
    batch of each epoch is dropped and the epochs stay in step with the reader's."""
    from dali_cutmix import CutMixLoader
    from dali_cutmix.pipelines.imagenet import build_imagenet_train_pipeline
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.loaders import build_rank_data

    cfg = resolve_config({"data": str(tiny_imagenet), "arch": "resnet18", "crop": 32, "batch_size": 24,
                          "workers": 1, "seed": 3, "mixup_alpha": 0.4, "cutmix_alpha": 1.0, "mode": "elem",
                          "label_smoothing": 0.1, "mix_off_epoch": 2})
    assert [cfg.mixing_in_epoch(e) for e in (1, 2, 3, 4)] == [True, True, False, False]
    on = 1 - 0.1 + 0.1 / 4
    kw = dict(train_dir=tiny_imagenet / "train", val_dir=tiny_imagenet / "val", num_classes=4, info=RankInfo(),
              device=device, device_id=device_id(device))
    data = build_rank_data(cfg, **kw)
    steps = 4 * TRAIN_PER_CLASS // 24
    assert len(data.train) == steps
    kinds = _target_kinds(data.train, on, epochs=1)
    state = data.train.checkpoint()  # after the user's epoch 1
    kinds += _target_kinds(data.train, on, epochs=3)
    assert [k[0] for k in kinds] == [steps] * 4
    for epoch, (_, mixed, plain) in enumerate(kinds, 1):
        if cfg.mixing_in_epoch(epoch):
            assert mixed > steps * 24 // 2, (epoch, kinds)  # per sample, prob 1: most mix two classes
        else:
            assert (mixed, plain) == (0, steps * 24), (epoch, kinds)  # every target a smoothed one-hot

    resumed = build_rank_data(cfg, dali_checkpoint=state, **kw)
    again = _target_kinds(resumed.train, on, epochs=3)
    assert again == kinds[1:]  # the same targets, the same schedule
    # resumed with another --mix-off-epoch (or none): the gate is always in the graph, so the checkpoint fits
    later = build_rank_data(dataclasses.replace(cfg, mix_off_epoch=3), dali_checkpoint=state, **kw)
    later_kinds = _target_kinds(later.train, on, epochs=3)  # the user's epochs 2, 3 (now mixed) and 4
    assert later_kinds[0] == kinds[1] and later_kinds[1][1] > steps * 24 // 2 and later_kinds[2] == kinds[3]
    # the pipeline builder takes the same number: mix_off_epoch=1 mixes epoch 1 only
    pipe = build_imagenet_train_pipeline(tiny_imagenet / "train", batch_size=24, num_classes=4, crop=32,
                                         device=device, num_threads=1, mix_options=dict(mixup_alpha=0.4),
                                         mix_off_epoch=1)
    first, second = _target_kinds(CutMixLoader(pipe, last_batch="drop"), 1.0, epochs=2)
    assert first[1] > steps * 24 // 2 and second == (steps, 0, steps * 24)


def test_mixup_pair_flags_and_mix_off_epoch_through_the_cli_and_a_resume(tiny_imagenet, tmp_path, device):
    """MixUp only, per pair, smoothed, --mix-off-epoch 1 (epoch 1 mixed, off from epoch 2): epoch 1 runs, then
    --resume auto runs epochs 2-3 from the DALI checkpoint; metrics.jsonl reports the schedule (mixing) and what the targets were (mixed_targets)."""
    out = tmp_path / "mix"
    args = ["train", "--data", str(tiny_imagenet), "--output", str(out), "--batch-size", "16", "--mixup-alpha", "0.4",
            "--cutmix-alpha", "0", "--mode", "pair", "--switch-prob", "0.5", "--label-smoothing", "0.1",
            "--mix-off-epoch", "1", *trainer_flags(device), *TINY]
    result = run_cli(args + ["--epochs", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MixUp 0.4, prob 1 per pair, label smoothing 0.1, mixed through epoch 1, off from epoch 2" in result.stdout
    result = run_cli(args + ["--epochs", "3", "--resume", "auto"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 1" in result.stdout
    records = read_records(out)
    assert [(r["epoch"], r["mixing"]) for r in records] == [(1, True), (2, False), (3, False)]
    assert records[0]["mixed_targets"] > 0.5, records  # pairs of other classes: ~3/4 of the samples
    assert [r["mixed_targets"] for r in records[1:]] == [0.0, 0.0]
    run = json.loads((out / "run.json").read_text())
    config, plan = run["config"], run["plan"]
    assert config["mix"] == dict(cutmix_alpha=0.0, mixup_alpha=0.4, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                                 mode="pair", correct_lam=True, label_smoothing=0.1, self_pairs=True)
    assert (config["mixing"], config["mix_off_epoch"]) == (True, 1)
    if device == "gpu":  # one GPU rank: what it holds once its pipelines are built
        (memory,) = run["gpu_memory"]
        assert set(memory) == {"reserved", "used", "total"} and 0 < memory["used"] <= memory["total"]
    else:
        assert run["gpu_memory"] == [None]  # one CPU rank
    assert (plan["data_root"], plan["output"], plan["classes"]) == (str(tiny_imagenet), str(out),
                                                                   [f"class{c}" for c in range(4)])
    assert (plan["world_size"], plan["nproc"], plan["launcher"], plan["use_gpu"]) == (1, 1, "local",
                                                                                       device == "gpu")
    assert plan["resume_path"] == str(out / "last.pt")  # run.json is rewritten by the resumed run


# ------------------------------------------------------------------------------------------------ bad inputs


def _main(args, capsys):
    from dali_cutmix.cli import main

    code = main(["train", *args])
    return code, capsys.readouterr().err


def _copy_layout(src, dst, *, drop_val_class=None):
    import shutil

    shutil.copytree(src, dst)
    if drop_val_class:
        shutil.rmtree(dst / "val" / drop_val_class)
    return dst


def test_missing_or_empty_data(tmp_path, capsys):
    code, err = _main(["--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert_one_line_error(err, "nope")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    code, err = _main(["--data", str(tmp_path / "empty"), "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert_one_line_error(err, "holds no images")
    (tmp_path / "noval" / "train").mkdir(parents=True)
    code, err = _main(["--data", str(tmp_path / "noval"), "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert_one_line_error(err, "val")
    assert not (tmp_path / "o").exists()  # nothing written for a run that cannot start


def test_class_mismatch(tiny_imagenet, tmp_path, capsys):
    data = _copy_layout(tiny_imagenet, tmp_path / "data", drop_val_class="class3")
    code, err = _main(["--data", str(data), "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert_one_line_error(err, "class folders differ", "only in train: class3")


def test_more_gpus_than_present(tiny_imagenet, tmp_path, capsys):
    import torch

    present = torch.cuda.device_count() if torch.cuda.is_available() else 0
    code, err = _main(["--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), "--gpus", str(present + 1)],
                      capsys)
    assert code == 2
    assert_one_line_error(err, f"--gpus {present + 1}: torch {torch.__version__}", f"sees {present} GPU",
                          "run `dali-cutmix doctor` to see why")
    assert not (tmp_path / "o").exists()


def test_a_run_that_falls_back_to_the_cpu_says_so_first(tiny_imagenet, tmp_path, capsys):
    """Without --gpus on a machine where torch sees no GPU, the first line says the run is on the CPU and why."""
    import torch

    from dali_cutmix.train.plan import cpu_fallback_line

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the run would not fall back")
    line = cpu_fallback_line(0)
    assert line.startswith(f"no GPU: torch {torch.__version__} (") and "sees 0 GPUs" in line
    assert "trains on the CPU" in line and "dali-cutmix doctor" in line
    from dali_cutmix.cli import main

    code = main(["train", "--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), "--batch-size", "4096"])
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == line
    assert code == 2, "and then the run stops on its too-large batch, in one line"
    assert_one_line_error(captured.err, "--batch-size 4096 is too large")


def test_batch_that_does_not_split(tiny_imagenet, tmp_path, capsys):
    code, err = _main(["--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), "--gpus", "0",
                       "--cpu-procs", "3", "--batch-size", "16"], capsys)
    assert code == 2
    assert_one_line_error(err, "--batch-size 16", "3 ranks")


def test_unreadable_checkpoint_is_not_touched(tiny_imagenet, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint\n" * 10)
    before = bad.read_bytes()
    code, err = _main(["--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), "--resume", str(bad)], capsys)
    assert code == 2
    assert_one_line_error(err, "cannot read checkpoint", "bad.pt")
    assert bad.read_bytes() == before
    code, err = _main(["--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), "--resume",
                       str(tmp_path / "missing.pt")], capsys)
    assert code == 2
    assert_one_line_error(err, "missing.pt")
    # a truncated last.pt in the run folder, found by --resume auto
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"PK\x03\x04truncated")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    code, err = _main(["--data", str(tiny_imagenet), "--output", str(run), "--resume", "auto"], capsys)
    assert code == 2
    assert_one_line_error(err, "cannot read checkpoint", "last.pt")
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n'


def test_existing_run_is_not_overwritten(tiny_imagenet, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    code, err = _main(["--data", str(tiny_imagenet), "--output", str(run)], capsys)
    assert code == 2
    assert_one_line_error(err, "already holds a run", "--resume auto")
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n'
    code, err = _main(["--data", str(tiny_imagenet), "--resume", "auto"], capsys)
    assert code == 2
    assert_one_line_error(err, "--resume auto needs --output")


def test_several_nodes_need_a_master_address(tiny_imagenet, tmp_path, capsys):
    code, err = _main(["--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), "--gpus", "0", "--nnodes", "2",
                       "--batch-size", "16"], capsys)
    assert code == 2
    assert_one_line_error(err, "--nnodes 2 needs --master-addr")


def test_bad_flag_values(tiny_imagenet, tmp_path, capsys):
    for args, fragment in ((["--arch", "resnet5O"], "--arch"), (["--lr", "-1"], "--lr"),
                           (["--mode", "pixel"], "--mode"),
                           (["--label-smoothing", "1.5"], "--label-smoothing"),
                           (["--optimizer", "lion"], "--optimizer"),
                           (["--recipe", "timm"], "--recipe"), (["--norm-weight-decay", "x"], "--norm-weight-decay")):
        code, err = _main(["--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), *args], capsys)
        assert code == 2, args
        assert "Traceback" not in err and fragment in err, (args, err)


def test_bad_mixing_values_are_one_line_naming_the_flag(tiny_imagenet, tmp_path, capsys):
    for args, fragment in ((["--switch-prob", "2"], "--switch-prob"), (["--mix-off-epoch", "-1"], "--mix-off-epoch"),
                           (["--mix-off-epoch", "0"], "--mix-off-epoch must be an integer >= 1 (epochs 1..N are "
                                                      "mixed, off from N+1, as timm's --mixup-off-epoch N), got 0"),
                           (["--mixup-alpha", "-0.2"], "--mixup-alpha must be >= 0 (0 turns MixUp off), got -0.2"),
                           (["--cutmix-alpha", "-1"], "--cutmix-alpha must be >= 0 (0 turns CutMix off), got -1.0"),
                           (["--cutmix-alpha", "0"], "nothing to mix: --cutmix-alpha is 0, no --cutmix-minmax is set "
                                                     "and --mixup-alpha is 0"),
                           (["--cutmix-minmax", "0.9,0.1"], "--cutmix-minmax must satisfy 0 < lo <= hi <= 1"),
                           (["--prob", "1.5"], "--prob must be in [0, 1], got 1.5"),
                           (["--mixup-alpha", "nan"], "--mixup-alpha must be a finite number, got nan"),
                           (["--recipe", "deit", "--crop", "40"], "--crop 40"),
                           (["--recipe", "deit", "--val-crop", "256", "--val-resize", "292"], "--val-crop (256)")):
        code, err = _main(["--data", str(tiny_imagenet), "--output", str(tmp_path / "o"), *args], capsys)
        assert code == 2, args
        assert_one_line_error(err, fragment)
    assert not (tmp_path / "o").exists()


def test_former_flag_names_are_unknown(capsys):
    """``--alpha``, ``--mix-mode`` and ``--cutmix/--no-cutmix`` are gone (``--cutmix-alpha``, ``--mode``,
    ``--mixing/--no-mixing``): click refuses them before anything runs."""
    for args in (["--alpha", "0.5"], ["--mix-mode", "elem"], ["--cutmix"], ["--no-cutmix"]):
        code, err = _main(args, capsys)
        assert code == 2, args
        assert_one_line_error(err, f"No such option '{args[0]}'", "dali-cutmix train --help lists the options")


def test_bad_mode_is_refused_naming_the_flag(tmp_path, capsys):
    """A --mode outside batch/elem/pair: one line naming the flag and the choices, exit 2, nothing written."""
    code, err = _main(["--output", str(tmp_path / "o"), "--mode", "pixel"], capsys)
    assert code == 2
    assert_one_line_error(err, "--mode must be one of ('batch', 'elem', 'pair'), got 'pixel'")
    assert not (tmp_path / "o").exists()


def test_prepare_plans_the_run(tiny_imagenet, tmp_path):
    """prepare() checks a run and returns its RunPlan (typed, frozen); it writes nothing but the output folder and,
    in it, the file lists every rank reads (our class list, the usable files) and skipped.txt."""
    from dali_cutmix.folder_reader import read_file_list
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.plan import RunPlan, prepare

    out = tmp_path / "o"
    cfg = resolve_config({"data": str(tiny_imagenet), "output": str(out), "gpus": 0, "cpu_procs": 2,
                          "batch_size": 16, "master_port": 29512})
    plan = prepare(cfg)
    assert plan == RunPlan(data_root=str(tiny_imagenet), classes=tuple(f"class{c}" for c in range(4)),
                           output=str(out), resume_path=None, use_gpu=False, nproc=2, world_size=2,
                           launcher="elastic", master_port=29512, train_list=str(out / "train-files.txt"),
                           val_list=str(out / "val-files.txt"), skipped=())
    assert sorted(p.name for p in out.iterdir()) == ["skipped.txt", "train-files.txt", "val-files.txt"]
    files, labels = read_file_list(out / "train-files.txt")
    assert len(files) == 4 * TRAIN_PER_CLASS and sorted(set(labels)) == [0, 1, 2, 3]
    assert (out / "skipped.txt").read_text() == ""
    before = {p: p.read_bytes() for p in out.iterdir()}
    assert prepare(dataclasses.replace(cfg, cpu_procs=1, master_port=None), main=False).train_list is None
    assert {p: p.read_bytes() for p in out.iterdir()} == before  # only the main process writes the lists
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.world_size = 1
    one = prepare(dataclasses.replace(cfg, cpu_procs=1, master_port=None, output=str(tmp_path / "p")))
    assert (one.nproc, one.world_size, one.launcher) == (1, 1, "local") and 1 <= one.master_port <= 65535


@pytest.mark.parametrize("deterministic", [False, True])
def test_gpu_determinism_settings_work_for_every_architecture(deterministic):
    """--deterministic on a GPU asks for deterministic kernels without refusing architectures that have an op with
    none (VGG's and AlexNet's adaptive pooling backward): PyTorch warns, naming the op, instead of raising."""
    import torch

    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.distributed import RankInfo
    from dali_cutmix.train.loop import configure_torch

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        configure_torch(resolve_config({"deterministic": deterministic or None}), RankInfo(), torch.device("cuda", 0))
        assert torch.are_deterministic_algorithms_enabled() == deterministic
        if deterministic:
            assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.benchmark == (not deterministic)
        assert torch.backends.cuda.matmul.allow_tf32 == torch.backends.cudnn.allow_tf32 == (not deterministic)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = before[2], before[3]
        torch.backends.cudnn.allow_tf32 = before[4]


# ------------------------------------------------------------------------------------------------------ model EMA


def _ema_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))


def _ema_steps(model, ema_update, steps: int, *, epochs: int = 2):
    """Train ``model`` with SGD for ``epochs`` x ``steps`` steps, calling ``ema_update(epoch, index)`` (1-based)
    after each."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for epoch in range(1, epochs + 1):
        for index in range(1, steps + 1):
            images, labels = torch.randn(4, 3, 8, 8, generator=generator), torch.randint(0, 3, (4,), generator=generator)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
            ema_update(epoch, index)


def _same_floats(ours, theirs):
    """Every floating-point parameter and buffer equal, bit for bit (integer buffers: ours are copies)."""
    theirs = dict(theirs)
    for name, tensor in ours.items():
        if tensor.is_floating_point():
            assert tensor.equal(theirs[name]), name


def test_model_ema_is_torchvisions_exponential_moving_average():
    """--model-ema-adjust: torchvision's reference (references/classification/train.py): the decay adjusted as
    ``adjust = world_size * batch_size * model_ema_steps / epochs; alpha = min(1, (1 - decay) * adjust)``;
    ``utils.ExponentialMovingAverage``, an AveragedModel with use_buffers=True and ``decay * avg + (1 - decay) *
    param``, updated when ``i % model_ema_steps == 0`` (0-based steps) and reset during the warmup epochs.
    Ours gives the same weights, bit for bit."""
    import copy

    import torch

    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.ema import build_ema, effective_decay

    # the torchvision-v2 recipe: 8 GPUs x 128, 32 steps, 600 epochs, 0.99998
    tv = resolve_config({"recipe": "torchvision-v2", "data": "/imagenet"})
    world_size, per_gpu = 8, 128
    alpha = min(1.0, (1.0 - 0.99998) * (world_size * per_gpu * 32 / 600))
    assert effective_decay(tv.model_ema, adjust=tv.model_ema_adjust, global_batch=tv.batch_size,
                           every=tv.model_ema_steps, epochs=tv.epochs) == 1.0 - alpha
    assert effective_decay(0.5, adjust=True, global_batch=1024, every=32, epochs=1) == 0.0  # alpha at most 1
    assert effective_decay(0.99996, adjust=False, global_batch=1024, every=1, epochs=300) == 0.99996

    cfg = resolve_config({"arch": "resnet18", "batch_size": 4, "epochs": 3, "warmup_epochs": 1, "model_ema": 0.9,
                          "model_ema_steps": 3, "model_ema_adjust": True})
    decay = effective_decay(0.9, adjust=True, global_batch=4, every=3, epochs=3)
    assert decay == pytest.approx(1 - 0.1 * 4 * 3 / 3)
    ours, theirs = _ema_model(), _ema_model()
    ema = build_ema(cfg, ours)

    def ema_avg(avg_model_param, model_param, num_averaged):  # torchvision's utils.ExponentialMovingAverage
        return decay * avg_model_param + (1 - decay) * model_param

    reference = torch.optim.swa_utils.AveragedModel(copy.deepcopy(theirs), "cpu", ema_avg, use_buffers=True)

    def torchvision_update(epoch, index):
        i = index - 1
        if i % cfg.model_ema_steps == 0:
            reference.update_parameters(theirs)
            if epoch - 1 < cfg.warmup_epochs:  # torchvision's epochs count from 0
                reference.n_averaged.fill_(0)

    _ema_steps(theirs, torchvision_update, steps=7, epochs=3)
    _ema_steps(ours, lambda epoch, index: ema.update(ours, epoch) if ema.due(index) else None, steps=7, epochs=3)
    _same_floats(ours.state_dict(), theirs.state_dict())  # the same training
    _same_floats(ema.module.state_dict(), reference.module.state_dict())
    assert ema.updates == int(reference.n_averaged) == 6  # epochs 2 and 3: steps 1, 4, 7
    assert not any(p.requires_grad for p in ema.module.parameters())


class TimmModelEma:
    """timm's ``timm.utils.ModelEma`` (timm 1.0, ``utils/model_ema.py``; what DeiT's ``--model-ema`` uses), as it
    defines it: a deep copy of the model, then for every entry of its state dict, buffers included,
    ``ema_v.copy_(ema_v * decay + (1. - decay) * model_v)`` under ``no_grad``."""

    def __init__(self, model, decay: float):
        import copy

        self.ema, self.decay = copy.deepcopy(model).eval(), decay
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def update(self, model):
        import torch

        with torch.no_grad():
            msd = model.state_dict()
            for k, ema_v in self.ema.state_dict().items():
                ema_v.copy_(ema_v * self.decay + (1. - self.decay) * msd[k].detach())


def test_model_ema_is_timms_model_ema():
    """--no-model-ema-adjust: timm's ModelEma (DeiT's --model-ema): a copy of the initial model, then ``ema *
    decay + (1 - decay) * model`` after every --model-ema-steps step (DeiT: every step), the decay as given."""
    from dali_cutmix.train.config import resolve_config
    from dali_cutmix.train.ema import build_ema

    deit = resolve_config({"recipe": "deit", "data": "/imagenet"})
    assert (deit.model_ema, deit.model_ema_steps, deit.model_ema_adjust) == (0.99996, 1, False)
    cfg = resolve_config({"arch": "resnet18", "batch_size": 4, "epochs": 2, "model_ema": 0.8, "model_ema_steps": 1,
                          "model_ema_adjust": False})
    ours, theirs = _ema_model(), _ema_model()
    ema = build_ema(cfg, ours)
    reference = TimmModelEma(theirs, decay=0.8)
    assert ema.decay == 0.8
    _ema_steps(theirs, lambda epoch, index: reference.update(theirs), steps=5)
    _ema_steps(ours, lambda epoch, index: ema.update(ours, epoch) if ema.due(index) else None, steps=5)
    _same_floats(ema.module.state_dict(), reference.ema.state_dict())
    assert resolve_config({}).model_ema is None and build_ema(resolve_config({}), ours) is None  # demo: off
    with pytest.raises(UserError, match=r"--model-ema must be in \(0, 1\), got 1.0"):
        resolve_config({"model_ema": 1.0})
    assert resolve_config({"recipe": "deit", "model_ema": "none"}).model_ema is None
