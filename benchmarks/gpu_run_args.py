"""Check the arguments ``benchmarks/gpu_run.sh`` passes, on any machine (no GPU needed), through the checkers the
commands themselves use: the demo set's sizes (:func:`dali_cutmix.pipelines.demo.check_sizes`), ``dali-cutmix
train``'s flags (its click parsing, :func:`dali_cutmix.train.checkpoint.resolve_run`, the model's dry forward pass on
the meta device for the batch each rank takes, and the batch against the demo set's training images) and
``dali-cutmix profile``'s flags (its click parsing, the mixing options, the model, :class:`ProfileSettings`).

    python benchmarks/gpu_run_args.py plan gpu -- demo 6 128 16 256 -- train FLAGS... -- profile FLAGS... [-- ...]

Groups are separated by ``--``; ``plan NAME`` labels the groups after it (the script's mode), ``demo`` takes
CLASSES TRAIN_PER_CLASS VAL_PER_CLASS SIZE and comes before the ``train`` groups of its plan. Prints one line per
group checked; exit code 0 when every group is valid, else 1 with one line naming the plan, the group and the
bad argument. What only the machine can say (the GPUs there, free disk) is not checked here.
"""

from __future__ import annotations

import sys

import click


def check_demo(sizes):
    from dali_cutmix.pipelines.demo import check_sizes

    try:
        classes, train, val, size = (int(v) for v in sizes)
    except ValueError:
        raise click.UsageError(f"demo takes 4 integers (classes, train per class, val per class, size), got "
                               f"{' '.join(sizes)!r}") from None
    check_sizes(num_classes=classes, train_per_class=train, val_per_class=val, size=size)
    return dict(classes=classes, train_images=classes * train, val_images=classes * val)


def check_train(flags, demo):
    from dali_cutmix.cli.train import train
    from dali_cutmix.train.model import check_arch, check_model_input
    from dali_cutmix.train.plan import check_batch_fits
    from dali_cutmix.train.checkpoint import resolve_run

    if demo is None:
        raise click.UsageError("train needs the demo group of its plan first (its classes and images)")
    with train.make_context("train", list(flags)) as ctx:
        options = dict(ctx.params)
    cfg = resolve_run(options)[0]
    ranks = cfg.gpus if cfg.gpus else cfg.cpu_procs
    if cfg.batch_size % ranks:
        raise click.UsageError(f"--batch-size {cfg.batch_size} does not split over {ranks} ranks")
    check_arch(cfg.arch)
    check_model_input(cfg.arch, crop=cfg.crop, eval_crop=cfg.eval_crop, batch=cfg.batch_size // ranks,
                      num_classes=demo["classes"])
    check_batch_fits(cfg, demo["train_images"], ranks)
    return f"{cfg.arch}, batch {cfg.batch_size} over {ranks} rank(s), crop {cfg.crop}, decode {cfg.decode}"


def check_profile(flags):
    from dali_cutmix.cli.mixing import build_mix_options, pop_mix_options
    from dali_cutmix.cli.profile import profile
    from dali_cutmix.errors import UserError, first_line
    from dali_cutmix.profiler.settings import ProfileSettings
    from dali_cutmix.profiler.training import check_model

    with profile.make_context("profile", list(flags)) as ctx:
        params = dict(ctx.params)
    mix = build_mix_options(pop_mix_options(params))
    if params["model"] is not None:
        try:
            check_model(params["model"], params["crop"])
        except UserError as e:  # as `dali-cutmix profile` says it: the trainer's checks name --arch
            raise UserError(first_line(e).replace("--arch", "--model")) from None
    if params["device"] is None:
        raise click.UsageError("gpu_run.sh names the profile's --device")
    settings = ProfileSettings(data=params["data"] or "(generated)", device=params["device"],
                               batch_size=params["batch_size"], threads=params["threads"] or 1,
                               batches=params["batches"], repeats=params["repeats"], crop=params["crop"],
                               seed=params["seed"], mix=mix, decode=params["decode"],
                               async_stages=params["async_stages"]).check()
    images = params["images"] or 0
    if params["data"] is None and images < settings.batch_size:
        raise click.UsageError(f"--images {images} is fewer than one batch of {settings.batch_size}")
    return f"{settings.device}, batch {settings.batch_size}, {settings.batches} batches x {settings.repeats}, " \
           f"model {params['model']}, cutmix_alpha {mix.cutmix_alpha:g}, mixup_alpha {mix.mixup_alpha:g}, " \
           f"switch_prob {mix.switch_prob:g}, decode {settings.decode}"


def groups(argv):
    """``argv`` split at each ``--`` into lists (empty ones dropped)."""
    group = []
    for arg in argv:
        if arg == "--":
            if group:
                yield group
            group = []
        else:
            group.append(arg)
    if group:
        yield group


def main(argv) -> int:
    from dali_cutmix.errors import UserError, first_line

    plan, demo, checked = "?", None, 0
    for name, *args in groups(argv):
        try:
            if name == "plan":
                plan, demo = args[0], None
                continue
            if name == "demo":
                demo = check_demo(args)
                what = f"{demo['classes']} classes, {demo['train_images']} train / {demo['val_images']} val images"
            elif name == "train":
                what = check_train(args, demo)
            elif name == "profile":
                what = check_profile(args)
            else:
                raise click.UsageError(f"unknown group {name!r} (plan, demo, train, profile)")
        except (UserError, ValueError) as e:
            print(f"gpu_run_args: {plan} mode's {name} arguments are invalid: {first_line(e)}", file=sys.stderr)
            return 1
        except click.ClickException as e:
            print(f"gpu_run_args: {plan} mode's {name} arguments are invalid: {e.format_message()}", file=sys.stderr)
            return 1
        checked += 1
        print(f"ok  {plan:<8} {name:<8} {what}")
    if not checked:
        print("gpu_run_args: nothing to check", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
