"""Audio, speech and text encoders.

- `MelCNN`: 2-D CNN over a log-mel spectrogram `[B, frames, mels]` (a one-channel image).
- `TemporalConv`: 1-D convolutions over time with mel bins as channels, masked global pooling.
- `RNNEncoder`: (bi)LSTM over a sequence, masked max- or mean-pooling. Used for text (token ids
  `[B, L]` int, 0 = padding, or token features `[B, L, D]` float, all-zero rows = padding, as in
  the reference's 768-d token features) and for audio/speech frames.
- `TransformerEncoder`: small pre-LN Transformer with a padding mask, masked pooling.

Every sequence encoder takes an optional explicit `mask` `[B, L]` (True = valid); without one the
mask comes from the input (id 0 or an all-zero frame is padding). Padded positions never affect
the output: the recurrence stops at each sequence's length, attention ignores them and pooling
skips them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from meta_align_jax.models.image import Conv4, ModuleDef
from meta_align_jax.models.layers import Norm
from meta_align_jax.fast.lstm import lstm_recurrence


def sequence_mask(x):
  """Valid positions `[B, L]` of token ids (`!= 0`) or of float frames (any non-zero value)."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x != 0
  return jnp.any(x != 0, axis=-1)


def masked_pool(h, mask, how: str):
  """Pools `[B, L, F]` over valid positions; an all-padding row pools to zeros."""
  m = mask[..., None]
  if how == 'max':
    neg = jnp.asarray(jnp.finfo(h.dtype).min, h.dtype)
    out = jnp.max(jnp.where(m, h, neg), axis=1)
    return jnp.where(jnp.any(mask, axis=1)[:, None], out, jnp.zeros_like(out))
  if how == 'mean':
    count = jnp.maximum(mask.sum(axis=1, keepdims=True), 1).astype(h.dtype)
    return jnp.where(m, h, 0).sum(axis=1) / count
  raise ValueError(f"config.model.text_pool={how!r}: use 'max' or 'mean'.")


class _Inputs(nn.Module):
  """Token embedding (int ids) or a linear map of float features to `hidden`."""
  vocab_size: int
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if jnp.issubdtype(x.dtype, jnp.integer):
      return nn.Embed(self.vocab_size, self.hidden, dtype=self.dtype)(x)
    return nn.Dense(self.hidden, dtype=self.dtype)(x.astype(self.dtype))


class MelCNN(nn.Module):
  """Log-mel `[B, frames, mels]` treated as a one-channel image through Conv-4 blocks."""
  width: int = 32
  norm: str = 'group'
  dtype: Any = jnp.float32
  conv: ModuleDef = nn.Conv        # set by build_model from the execution (fast/execution.py)

  @nn.compact
  def __call__(self, x, mask=None):
    del mask  # silence (zero frames) is part of the signal for a spectrogram CNN
    return Conv4(self.width, self.norm, self.dtype, self.conv)(x[..., None])


class TemporalConv(nn.Module):
  """1-D convolutions over frames (mels as channels), then masked pooling over time."""
  width: int = 64
  norm: str = 'group'
  dtype: Any = jnp.float32
  layers: int = 3
  pool: str = 'max'
  conv: ModuleDef = nn.Conv        # set by build_model from the execution (fast/execution.py)

  @nn.compact
  def __call__(self, x, mask=None):
    mask = sequence_mask(x) if mask is None else mask
    h = x.astype(self.dtype) * mask[..., None].astype(self.dtype)
    for i in range(self.layers):
      h = self.conv(self.width * 2**min(i, 2), (5,), padding='SAME', dtype=self.dtype)(h)
      h = nn.relu(Norm('layer' if self.norm == 'group' else self.norm, self.dtype)(h))
      h = h * mask[..., None].astype(self.dtype)   # keep padding from leaking into neighbours
    return masked_pool(h, mask, self.pool)


def reverse_valid(x, lengths):
  """Reverses each row's first `lengths[b]` steps (padding stays in place); its own inverse."""
  steps = jnp.arange(x.shape[1])[None, :]
  idx = jnp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


class LSTM(nn.Module):
  """One LSTM direction over `[B, L, D]` with a mask `[B, L]`; returns `[B, L, H]` float32.

  The gates of `flax.linen.OptimizedLSTMCell`; masked steps carry the state through unchanged.
  The recurrence has a hand-written backward pass (fast/lstm.py, the same numbers)."""
  hidden: int
  dtype: Any = jnp.float32
  unroll: int = 1

  @nn.compact
  def __call__(self, x, mask):
    gx = nn.Dense(4 * self.hidden, dtype=self.dtype, name='wi')(x)   # all steps in one GEMM
    wh = self.param('wh', nn.initializers.orthogonal(), (self.hidden, 4 * self.hidden))
    return lstm_recurrence(gx, wh, mask, self.dtype, self.unroll)


class RNNEncoder(nn.Module):
  """(Bi)LSTM over a masked sequence; pooled over valid positions."""
  vocab_size: int = 512
  hidden: int = 128
  layers: int = 1
  bidirectional: bool = True
  pool: str = 'max'
  dtype: Any = jnp.float32
  unroll: int = 1                  # time steps per loop iteration (config.execution.rnn_unroll)

  @nn.compact
  def __call__(self, x, mask=None):
    mask = sequence_mask(x) if mask is None else mask
    lengths = mask.sum(axis=1).astype(jnp.int32)
    h = _Inputs(self.vocab_size, self.hidden, self.dtype)(x)
    for _ in range(self.layers):
      out = LSTM(self.hidden, self.dtype, self.unroll)(h, mask)
      if self.bidirectional:
        back = LSTM(self.hidden, self.dtype, self.unroll)(reverse_valid(h, lengths), mask)
        out = jnp.concatenate([out, reverse_valid(back, lengths)], axis=-1)
      h = out.astype(self.dtype)
    return masked_pool(h, mask, self.pool)


class TransformerEncoder(nn.Module):
  """Pre-LN Transformer encoder with learned positions and a key padding mask."""
  vocab_size: int = 512
  hidden: int = 128
  layers: int = 2
  heads: int = 4
  pool: str = 'mean'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    mask = sequence_mask(x) if mask is None else mask
    h = _Inputs(self.vocab_size, self.hidden, self.dtype)(x)
    pos = self.param('pos', nn.initializers.normal(0.02), (x.shape[1], self.hidden))
    h = h + pos.astype(self.dtype)
    attn_mask = nn.make_attention_mask(mask, mask)
    for _ in range(self.layers):
      y = nn.LayerNorm(dtype=self.dtype)(h)
      y = nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype)(y, y, mask=attn_mask)
      h = h + y
      y = nn.LayerNorm(dtype=self.dtype)(h)
      y = nn.Dense(4 * self.hidden, dtype=self.dtype)(y)
      y = nn.Dense(self.hidden, dtype=self.dtype)(nn.gelu(y))
      h = h + y
    h = nn.LayerNorm(dtype=self.dtype)(h)
    return masked_pool(h, mask, self.pool)
