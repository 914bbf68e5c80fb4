"""The ``dynamic`` variant: the whole training input in DALI Dynamic mode, as a torchdata.nodes graph
(:func:`dali_cutmix.dynamic_nodes.training_loader`), with the ``loader`` variant's data and settings."""

from __future__ import annotations

from dali_cutmix.errors import UserError

from .settings import ProfileSettings
from .timing import Timing, VariantUnavailable, endless, time_batches, wait_until_idle


class DynamicRunner:
    """Times :func:`dali_cutmix.dynamic_nodes.training_loader` over the settings' data, batch size, crop, device,
    threads, seed, decode and mixing options (the ``loader`` variant's), to torch tensors on the device. Each
    :meth:`measure` times ``batches`` batches (a new epoch starts when one ends; its short last batch counts its
    images), then waits, untimed, until nothing runs."""

    def __init__(self, settings: ProfileSettings, num_classes: int):
        if settings.augment.active:
            raise VariantUnavailable("the DALI Dynamic input applies no augmentation beyond crop, flip and "
                                     "normalize: it runs with --augment none only")
        try:
            from dali_cutmix.dynamic_nodes import training_loader
        except UserError as e:  # torchdata is not installed: the message says what to install
            raise VariantUnavailable(str(e)) from None
        self.device = settings.device
        self.loader = training_loader(
            settings.data, batch_size=settings.batch_size, num_classes=num_classes, crop=settings.crop,
            device=settings.device, device_id=settings.device_id,
            mix_options=settings.mix, num_threads=settings.threads, seed=settings.seed, decode=settings.decode)
        self.batches = endless(self.loader)
        self.next_batch()  # first batch: allocations
        wait_until_idle(self.device)

    def next_batch(self):
        """The next ``(images, targets)``, starting a new epoch when one ends."""
        return next(self.batches)

    def measure(self, batches: int) -> Timing:
        """Take ``batches`` batches of torch tensors."""
        return time_batches(lambda: int(self.next_batch()[0].shape[0]), batches, self.device)

    def close(self) -> None:
        """Free the loader, its reader and buffers."""
        self.batches = self.loader = None
