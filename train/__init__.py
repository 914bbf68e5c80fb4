"""The image classifier trainer (ResNet-50 by default) with CutMix and MixUp inside the DALI pipeline, from one CPU
to many GPU nodes.

Modules, one job each:

- :mod:`dali_cutmix.train.recipe`: the named recipes, each a table of every setting a recipe sets (``paper``: the
  CutMix paper's ImageNet ResNet-50 settings; ``deit``: DeiT's; ``torchvision-v2``: torchvision's ResNet-50 V2
  recipe; ``demo``);
- :mod:`dali_cutmix.train.config`: every setting declared once, as a field of
  :class:`~dali_cutmix.train.config.TrainConfig` (help, recipe or not, locked on resume or not, nullable, its
  check: the ``train`` flags, the recipe tables' check and the lock list come from it), resolved from a recipe and
  the user's overrides;
- :mod:`dali_cutmix.train.runstate`: a run's whole state as one object with ``state_dict()`` /
  ``load_state_dict()`` (model, EMA, optimizer, schedule, scaler, position, each rank's DALI and RNG state);
- :mod:`dali_cutmix.train.checkpoint`: ``--resume`` resolved, the checkpoint read and checked, the run's settings
  on resume (flags given again change what a resumed run may change), checkpoints written and the run folder
  rewound;
- :mod:`dali_cutmix.train.plan`: checks a run against the machine, the data and the output folder before it starts,
  and resolves where it runs (:class:`~dali_cutmix.train.plan.RunPlan`);
- :mod:`dali_cutmix.train.launch`: starts the run's processes (one, ``--gpus N``, ``--cpu-procs K``, several
  nodes), or joins a ``torchrun`` / SLURM launch; a rank's failure comes back through torch's launcher;
- :mod:`dali_cutmix.train.distributed`: rank discovery from the environment and the collectives the loop uses;
- :mod:`dali_cutmix.train.datalists`: the data scanned before the first epoch, the files skipped named, the DALI
  file lists every rank reads;
- :mod:`dali_cutmix.train.loaders`: each rank's DALI loaders (mixed training batches, validation) over its own shards;
- :mod:`dali_cutmix.train.model`, :mod:`dali_cutmix.train.optim`: the network; SGD / AdamW with weight-decay groups
  and the lr schedule;
- :mod:`dali_cutmix.train.loop`: one rank's epochs: train, validate, log, checkpoint;
- :mod:`dali_cutmix.train.accuracy`: top-k accuracy counts (the loss is :func:`dali_cutmix.soft_target_cross_entropy`);
- :mod:`dali_cutmix.train.metrics`, :mod:`dali_cutmix.train.run_record`: what a run writes and shows.

Entry point: ``dali-cutmix train`` (see the README's Training section), or
:func:`dali_cutmix.train.launch.launch` with a :class:`~dali_cutmix.train.config.TrainConfig` from
:func:`~dali_cutmix.train.config.resolve_config`. Importing this package imports nothing heavy.
"""
