"""Loss and accuracy."""

from __future__ import annotations


def soft_target_cross_entropy(logits, targets):
    """Mean over the batch of ``-sum_c targets[:, c] * log_softmax(logits)[:, c]``, computed in float32.

    ``targets`` are the pipeline's soft labels (rows summing to 1): CutMix's ``lam * onehot(y_i) +
    (1 - lam) * onehot(y_j)``, smoothed if asked. For one-hot targets this equals ``F.cross_entropy``.
    """
    import torch

    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(targets.float() * log_probs).sum(dim=-1).mean()


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
