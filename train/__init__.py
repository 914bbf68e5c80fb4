"""The ResNet-50 ImageNet trainer with CutMix inside the DALI pipeline, from one CPU to many GPU nodes.

Modules, one job each:

- :mod:`train.recipe`: the named recipes (``paper``: the CutMix paper's ImageNet ResNet-50 settings; ``deit``:
  DeiT's; ``torchvision-v2``: torchvision's ResNet-50 V2 recipe; ``demo``);
- :mod:`train.config`: the resolved, checked settings of a run (:class:`train.config.TrainConfig`);
- :mod:`train.launch`: checks a run before it starts and starts its processes (one, ``--gpus N``, ``--cpu-procs
  K``, several nodes; or joins a ``torchrun`` / SLURM launch);
- :mod:`train.distributed`: rank discovery from the environment and the collectives the loop uses;
- :mod:`train.data`: each rank's DALI loaders (CutMix training, validation) over its own shards;
- :mod:`train.model`, :mod:`train.optim`, :mod:`train.loss`: network, SGD / AdamW (weight-decay groups) and lr
  schedule, soft-target loss;
- :mod:`train.loop`: one rank's epochs: train, validate, log, checkpoint;
- :mod:`train.checkpoint`, :mod:`train.metrics`, :mod:`train.progress`, :mod:`train.report`: what a run writes.

Entry point: ``dali-cutmix train`` (see the README's Training section), or :func:`train.launch.launch` with a
:class:`train.config.TrainConfig`. Importing this package imports nothing heavy.
"""
