"""Building blocks shared by the encoders: normalisation that is sound under per-task adaptation.

Why not BatchNorm with running averages: meta-learners adapt a copy of the parameters per task,
and running statistics are state that would have to be adapted, averaged and checkpointed too;
their values mix tasks, so an adapted model would be scored with another task's statistics.
The choices here are all stateless:

- `group` (default): GroupNorm, statistics per example; identical at train and test time, and
  independent of how many examples a task has.
- `layer`: LayerNorm over channels.
- `task_batch`: batch normalisation with statistics computed over the examples of the current
  call only (one task's support, or its queries), with learnable scale and bias and no running
  averages: the transductive setting of the original MAML code. Under `vmap` over tasks each
  task is normalised with its own statistics.
- `none`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# The encoders' pooling ops: the values of `nn.max_pool` (after ReLU), with hand-written backward
# passes (fast/pooling.py).
from meta_align_jax.fast.pooling import (max_pool_2x2, relu_max_pool_2x2,  # noqa: F401
                                         relu_max_pool_3x3_s2)

NORMS = ('group', 'layer', 'task_batch', 'none')


class TaskBatchNorm(nn.Module):
  """Batch normalisation over all axes but the last, using this call's statistics only."""
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    xf = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    if mask is None:
      mean = xf.mean(axes)
      var = jnp.square(xf - mean).mean(axes)
    else:  # mask: [batch] of valid examples; padded examples do not move the statistics
      m = mask.reshape(mask.shape + (1,) * (x.ndim - 1)).astype(jnp.float32)
      count = jnp.maximum(m.sum() * (xf.size / (x.shape[0] * features)), 1.0)
      mean = (xf * m).sum(axes) / count
      var = (jnp.square(xf - mean) * m).sum(axes) / count
    y = (xf - mean) * (scale / jnp.sqrt(var + self.epsilon)) + bias
    return y.astype(self.dtype)


class Norm(nn.Module):
  """The configured normalisation; `kind` is one of NORMS."""
  kind: str = 'group'
  dtype: Any = jnp.float32
  groups: int = 8

  @nn.compact
  def __call__(self, x):
    if self.kind == 'group':
      # At least 4 channels per group: with one channel per group a 1x1 feature map (deep
      # layers of small inputs) would normalise to exactly zero.
      groups = _largest_divisor_at_most(x.shape[-1], min(self.groups, max(1, x.shape[-1] // 4)))
      return nn.GroupNorm(num_groups=groups, dtype=self.dtype)(x)
    if self.kind == 'layer':
      return nn.LayerNorm(dtype=self.dtype)(x)
    if self.kind == 'task_batch':
      return TaskBatchNorm(dtype=self.dtype)(x)
    if self.kind == 'none':
      return x
    raise ValueError(f'config.model.norm={self.kind!r}: use one of {NORMS}.')


def _largest_divisor_at_most(n: int, k: int) -> int:
  for g in range(min(n, k), 0, -1):
    if n % g == 0:
      return g
  return 1
