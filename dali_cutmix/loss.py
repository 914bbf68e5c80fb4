"""The loss that goes with soft labels."""

from __future__ import annotations


def soft_target_cross_entropy(logits, targets):
    """Mean over the batch of ``-sum_c targets[:, c] * log_softmax(logits)[:, c]``, computed in float32.

    Args:
        logits: (N, C) tensor, any float dtype, any device.
        targets: (N, C) soft labels on the same device, rows summing to 1 (what the pipeline emits).

    Returns:
        A float32 scalar tensor. For one-hot targets it equals ``torch.nn.functional.cross_entropy``; for CutMix
        targets it equals the official ``lam * CE(y_i) + (1 - lam) * CE(y_j)``.
    """
    import torch

    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(targets.float() * log_probs).sum(dim=-1).mean()
