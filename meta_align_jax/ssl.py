"""Self-supervised target training (`config.ssl`): SimCLR-style InfoNCE between two random
augmentations of the unlabelled target clips of the strong pairs (the alignment batch's
`target_x`; no label is used). The self-supervised-pretraining baseline of the low-resource
protocol trains it jointly with target-only Reptile on the labelled set (`lr_ssl_target`), with the
cross-modal alignment weighted 0.

Augmentations (per example, from the step's key): a random circular shift along the first input
axis (time for log-mels, rows for images, positions for token ids is not supported), a random block
of `mask_frac` of that axis set to the clip's mean, and Gaussian noise of `noise_std` times the
clip's standard deviation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meta_align_jax import losses


def augment(key, x, *, mask_frac: float = 0.2, noise_std: float = 0.1, max_shift: float = 0.2):
  """One random view of each example of `x` `[B, L, ...]` (float inputs)."""
  b, length = x.shape[0], x.shape[1]
  k_shift, k_mask, k_noise = jax.random.split(key, 3)
  limit = int(round(max_shift * length))
  shifts = jax.random.randint(k_shift, [b], -limit, limit + 1)
  pos = jnp.arange(length)
  idx = (pos[None, :] - shifts[:, None]) % length                       # [B, L]
  x = jax.vmap(lambda xi, ii: xi[ii])(x, idx)
  width = min(length, int(round(mask_frac * length)))   # 0: no mask
  start = jax.random.randint(k_mask, [b], 0, length - width + 1)
  masked = (pos[None, :] >= start[:, None]) & (pos[None, :] < start[:, None] + width)
  axes = tuple(range(1, x.ndim))
  mean = jnp.mean(x, axis=axes, keepdims=True)
  std = jnp.std(x, axis=axes, keepdims=True)
  masked = masked.reshape(masked.shape + (1,) * (x.ndim - 2))
  x = jnp.where(masked, mean, x)
  return x + noise_std * std * jax.random.normal(k_noise, x.shape, x.dtype)


def ssl_loss(model, params, x, key, ssl_cfg):
  k1, k2 = jax.random.split(key)
  kw = {'mask_frac': ssl_cfg.mask_frac, 'noise_std': ssl_cfg.noise_std}
  z1 = model.embed(params, augment(k1, x, **kw), 'target')
  z2 = model.embed(params, augment(k2, x, **kw), 'target')
  return losses.info_nce_loss(z1, z2, temperature=ssl_cfg.temperature)


def ssl_gradient(model, ssl_cfg, params, align_batch, key):
  """Gradient of the self-supervised loss on one task's unlabelled target clips."""
  loss, grads = jax.value_and_grad(ssl_loss, argnums=1)(model, params, align_batch['target_x'],
                                                        key, ssl_cfg)
  return grads, {'ssl_loss': loss}


def enabled(config) -> bool:
  ssl = config.get('ssl', None)
  return bool(ssl is not None and ssl.get('enabled', False))


def check(config) -> None:
  if not enabled(config):
    return
  if not config.align.enabled:
    raise ValueError('config.ssl.enabled=True trains on the alignment batch\'s unlabelled target '
                     'clips: set config.align.enabled=True (config.align.weight=0 for SSL alone; '
                     "with config.lowres, lowres.pairs='strong').")
  if config.target.modality == 'text':
    raise ValueError('config.ssl: the augmentations need continuous inputs; the target is text.')
