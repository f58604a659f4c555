"""Image encoders: Conv-4 (the few-shot standard), ResNet-12 and ResNet-18, width configurable.

Input `[B, H, W, C]` float in [0, 1]; output features `[B, F]` in the compute dtype. All use the
stateless normalisation of `layers.Norm`, so any subset of their parameters can be adapted per task.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from meta_align_jax.models.layers import (Norm, max_pool_2x2, relu_max_pool_2x2,
                                          relu_max_pool_3x3_s2)


ModuleDef = Any


def _conv(features, kernel=3, strides=1, dtype=jnp.float32, name=None, conv: ModuleDef = nn.Conv):
  return conv(features, (kernel, kernel), strides=(strides, strides), padding='SAME',
              use_bias=False, dtype=dtype, name=name)


class Conv4(nn.Module):
  """Four blocks of 3x3 conv -> norm -> ReLU -> 2x2 max-pool; global average pool at the end."""
  width: int = 64
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv        # set by build_model from the execution (fast/execution.py)
  blocks: int = 4
  # Blocks `first..blocks-1` only, and the feature map instead of its global average when
  # `pool_output` is False: the pieces of a shared encoder (`ConvStem` and the shared tower of
  # `config.model.shared_encoder`, models/registry.py).
  first: int = 0
  pool_output: bool = True

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for i in range(self.first, self.blocks):
      x = _conv(self.width, dtype=self.dtype, name=f'conv{i}', conv=self.conv)(x)
      x = Norm(self.norm, self.dtype, name=f'norm{i}')(x)
      if x.shape[1] > 1 and x.shape[2] > 1:
        x = relu_max_pool_2x2(x)   # = max_pool_2x2(relu(x)), a cheaper backward pass
      else:
        x = nn.relu(x)
    return x.mean(axis=(1, 2)) if self.pool_output else x


class BasicBlock(nn.Module):
  """ResNet-18 basic block: two 3x3 convs with a projected shortcut when the shape changes."""
  features: int
  strides: int = 1
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv        # set by build_model from the execution (fast/execution.py)

  @nn.compact
  def __call__(self, x):
    y = _conv(self.features, 3, self.strides, self.dtype, conv=self.conv)(x)
    y = nn.relu(Norm(self.norm, self.dtype)(y))
    y = _conv(self.features, 3, 1, self.dtype, conv=self.conv)(y)
    y = Norm(self.norm, self.dtype)(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = _conv(self.features, 1, self.strides, self.dtype, name='shortcut', conv=self.conv)(x)
      x = Norm(self.norm, self.dtype, name='shortcut_norm')(x)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18 (He et al. 2016); `width` is the first stage's channels (64 in the original).

  Images of 64 px or more get the ImageNet stem (7x7/2 conv + 3x3/2 max-pool), smaller ones a
  3x3/1 stem as in CIFAR ResNets.
  """
  width: int = 64
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv        # set by build_model from the execution (fast/execution.py)
  stage_sizes: Sequence[int] = (2, 2, 2, 2)

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    if x.shape[1] >= 64:
      x = _conv(self.width, 7, 2, self.dtype, name='stem', conv=self.conv)(x)
      x = relu_max_pool_3x3_s2(Norm(self.norm, self.dtype, name='stem_norm')(x))   # ReLU, pool
    else:
      x = _conv(self.width, 3, 1, self.dtype, name='stem', conv=self.conv)(x)
      x = nn.relu(Norm(self.norm, self.dtype, name='stem_norm')(x))
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        strides = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(self.width * 2**i, strides, self.norm, self.dtype, self.conv)(x)
    return x.mean(axis=(1, 2))


class ResNet12Block(nn.Module):
  features: int
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv        # set by build_model from the execution (fast/execution.py)

  @nn.compact
  def __call__(self, x):
    y = x
    for i in range(3):
      y = _conv(self.features, 3, 1, self.dtype, conv=self.conv)(y)
      y = Norm(self.norm, self.dtype)(y)
      if i < 2:
        y = nn.leaky_relu(y, 0.1)
    x = _conv(self.features, 1, 1, self.dtype, name='shortcut', conv=self.conv)(x)
    x = Norm(self.norm, self.dtype, name='shortcut_norm')(x)
    y = nn.leaky_relu(x + y, 0.1)
    return max_pool_2x2(y, ceil=True)


class ResNet12(nn.Module):
  """ResNet-12 of the few-shot literature (Oreshkin et al. 2018): widths w, 2.5w, 5w, 10w."""
  width: int = 64
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv        # set by build_model from the execution (fast/execution.py)

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for mult in (1.0, 2.5, 5.0, 10.0):
      x = ResNet12Block(int(self.width * mult), self.norm, self.dtype, self.conv)(x)
    return x.mean(axis=(1, 2))
