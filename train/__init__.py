"""The ResNet-50 ImageNet trainer with CutMix inside the DALI pipeline, from one CPU to many GPU nodes.

Modules, one job each:

- :mod:`dali_cutmix.train.recipe`: the named recipes (``paper``: the CutMix paper's ImageNet ResNet-50 settings; ``deit``:
  DeiT's; ``torchvision-v2``: torchvision's ResNet-50 V2 recipe; ``demo``);
- :mod:`dali_cutmix.train.config`: the resolved, checked settings of a run (:class:`dali_cutmix.train.config.TrainConfig`);
- :mod:`dali_cutmix.train.launch`: checks a run before it starts and starts its processes (one, ``--gpus N``, ``--cpu-procs
  K``, several nodes; or joins a ``torchrun`` / SLURM launch);
- :mod:`dali_cutmix.train.distributed`: rank discovery from the environment and the collectives the loop uses;
- :mod:`dali_cutmix.train.data`: each rank's DALI loaders (CutMix training, validation) over its own shards;
- :mod:`dali_cutmix.train.model`, :mod:`dali_cutmix.train.optim`, :mod:`dali_cutmix.train.loss`: network, SGD / AdamW (weight-decay groups) and lr
  schedule, soft-target loss;
- :mod:`dali_cutmix.train.loop`: one rank's epochs: train, validate, log, checkpoint;
- :mod:`dali_cutmix.train.checkpoint`, :mod:`dali_cutmix.train.metrics`, :mod:`dali_cutmix.train.progress`, :mod:`dali_cutmix.train.report`: what a run writes.

Entry point: ``dali-cutmix train`` (see the README's Training section), or :func:`dali_cutmix.train.launch.launch` with a
:class:`dali_cutmix.train.config.TrainConfig`. Importing this package imports nothing heavy.
"""
