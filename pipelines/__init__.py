"""Complete pipelines built from the dali_cutmix plugin: ImageNet train/val, the no-mix baseline, the
torchvision reference loader used by the profiler, and the embedded demo dataset."""
