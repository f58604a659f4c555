"""Losses: classification and cross-modal alignment.

Conventions: labels are int arrays `[B]`; a label < 0 marks a padded example that contributes
nothing (not to the value, not to class prototypes, not to gradients). Embeddings are float
`[B, D]`. Every loss returns a scalar float32.

Alignment losses on weakly paired data (examples of two modalities that only share a class):
- `proto_triplet_loss`: the reference algorithm's loss. Per-class prototypes of L2-normalised
  embeddings from each modality; with S = P_source P_target^T (cosine similarities of
  prototypes), sum over present classes i != k of relu(margin + S[i, k] - S[k, k]), divided by
  the number of valid examples (the reference divides by the batch size).
- `cosine_alignment_loss`: mean over present classes of 1 - cos(p_source_c, p_target_c).
For strongly paired data (row i of each modality is the same instance):
- `info_nce_loss`: symmetric InfoNCE with temperature over the valid rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from meta_align_jax.registry import Registry


def _valid(labels):
  return labels >= 0


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy over valid examples (labels < 0 are ignored)."""
  valid = _valid(labels)
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.where(valid, labels, 0))
  return jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(valid.sum(), 1)


def accuracy(logits, labels):
  valid = _valid(labels)
  hit = (jnp.argmax(logits, -1) == labels) & valid
  return hit.sum() / jnp.maximum(valid.sum(), 1)


def l2_normalize(x, eps: float = 1e-8):
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def class_prototypes(emb, labels, num_classes: int, normalize: bool = True):
  """Per-class means `[C, D]` and a presence mask `[C]`; padded examples are left out."""
  if normalize:
    emb = l2_normalize(emb)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)   # label < 0 -> zero row
  counts = onehot.sum(0)
  protos = onehot.T @ emb.astype(jnp.float32) / jnp.maximum(counts, 1.0)[:, None]
  return protos, counts > 0


def proto_triplet_loss(source_emb, target_emb, labels, num_classes: int, margin: float = 0.5,
                       target_labels=None):
  """The reference's prototype triplet (hinge) loss; see the module docstring.

  `target_labels` defaults to `labels` (weak pairs share a label); pass it when the target side
  carries other (e.g. noisy) labels.
  """
  target_labels = labels if target_labels is None else target_labels
  p_s, present_s = class_prototypes(source_emb, labels, num_classes)
  p_t, present_t = class_prototypes(target_emb, target_labels, num_classes)
  sim = p_s @ p_t.T
  present = (present_s & present_t).astype(jnp.float32)
  hinge = jax.nn.relu(margin + sim - jnp.diagonal(sim)[None, :])
  mask = present[:, None] * present[None, :] * (1.0 - jnp.eye(num_classes))
  n = jnp.maximum(_valid(labels).sum(), 1)
  return jnp.sum(hinge * mask) / n


def cosine_alignment_loss(source_emb, target_emb, labels, num_classes: int, target_labels=None):
  """Mean over classes present in both modalities of 1 - cos(prototype_s, prototype_t)."""
  target_labels = labels if target_labels is None else target_labels
  p_s, present_s = class_prototypes(source_emb, labels, num_classes)
  p_t, present_t = class_prototypes(target_emb, target_labels, num_classes)
  cos = jnp.sum(l2_normalize(p_s) * l2_normalize(p_t), axis=-1)
  present = (present_s & present_t).astype(jnp.float32)
  return jnp.sum((1.0 - cos) * present) / jnp.maximum(present.sum(), 1.0)


def info_nce_loss(source_emb, target_emb, valid=None, temperature: float = 0.1):
  """Symmetric InfoNCE for strong pairs: row i of each modality is the same instance."""
  n = source_emb.shape[0]
  valid = jnp.ones([n], bool) if valid is None else valid
  logits = l2_normalize(source_emb) @ l2_normalize(target_emb).T / temperature
  pair_ok = valid[:, None] & valid[None, :]
  logits = jnp.where(pair_ok, logits, -1e9)
  idx = jnp.arange(n)
  l_st = optax.softmax_cross_entropy_with_integer_labels(logits, idx)
  l_ts = optax.softmax_cross_entropy_with_integer_labels(logits.T, idx)
  per_row = jnp.where(valid, 0.5 * (l_st + l_ts), 0.0)
  return per_row.sum() / jnp.maximum(valid.sum(), 1)


# Alignment losses by `config.align.loss`. Each takes `(source_emb, target_emb, labels, *,
# num_classes, margin, temperature, target_labels)` and returns a scalar; a new one is a function
# and its `@register_loss(name)`.
ALIGN_LOSSES = Registry('alignment loss', 'config.align.loss')
register_loss = ALIGN_LOSSES.register   # @register_loss(name): a new alignment loss


@register_loss('proto_triplet')
def _proto_triplet(source_emb, target_emb, labels, *, num_classes, margin=0.5, temperature=0.1,
                   target_labels=None):
  del temperature
  return proto_triplet_loss(source_emb, target_emb, labels, num_classes, margin, target_labels)


@register_loss('cosine')
def _cosine(source_emb, target_emb, labels, *, num_classes, margin=0.5, temperature=0.1,
            target_labels=None):
  del margin, temperature
  return cosine_alignment_loss(source_emb, target_emb, labels, num_classes, target_labels)


@register_loss('infonce')
def _infonce(source_emb, target_emb, labels, *, num_classes, margin=0.5, temperature=0.1,
             target_labels=None):
  del num_classes, margin, target_labels
  return info_nce_loss(source_emb, target_emb, _valid(labels), temperature)


def alignment_loss(kind: str, source_emb, target_emb, labels, *, num_classes: int,
                   margin: float = 0.5, temperature: float = 0.1, target_labels=None):
  """The registered alignment loss `kind` (`config.align.loss`)."""
  return ALIGN_LOSSES.get(kind)(source_emb, target_emb, labels, num_classes=num_classes,
                                margin=margin, temperature=temperature,
                                target_labels=target_labels)


def proto_logits(support_emb, support_labels, query_emb, num_classes: int):
  """ProtoNet logits: negative squared Euclidean distance to per-class support means."""
  protos, present = class_prototypes(support_emb, support_labels, num_classes, normalize=False)
  d = (jnp.sum(query_emb**2, -1, keepdims=True) - 2 * query_emb @ protos.T
       + jnp.sum(protos**2, -1)[None, :])
  return jnp.where(present[None, :], -d, -1e9)
