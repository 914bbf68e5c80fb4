"""Complete pipelines built from the dali_cutmix plugin: ImageNet train/val, the no-mix baseline, the
torchvision reference loader used by the profiler, the embedded demo dataset, and the data scan that finds the
files DALI cannot read before a run does (``dali-cutmix scan``)."""
