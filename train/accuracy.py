"""Accuracy counts (the loss is :func:`dali_cutmix.soft_target_cross_entropy`)."""

from __future__ import annotations


def topk_correct(logits, labels, ks=(1, 5)):
    """Number of samples whose label is among the top-k logits, for each k (k capped at the class count).

    Returns a float tensor ``[len(ks)]`` on the logits' device (sum over the batch, not a mean, so counts add up
    over batches and ranks).
    """
    import torch

    labels = labels.reshape(-1).long()
    kmax = min(max(ks), logits.shape[-1])
    top = logits.topk(kmax, dim=-1).indices
    hits = top.eq(labels[:, None])
    return torch.stack([hits[:, :min(k, kmax)].any(dim=-1).sum() for k in ks]).float()
