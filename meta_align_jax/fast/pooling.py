"""Pooling with hand-written backward passes: the same values and gradients as the plain ops
(`nn.max_pool` after `relu`, tests/test_models.py), with backward passes that do not re-read the
full-resolution input or run XLA's select-and-scatter. Used by the image encoders
(models/image.py) on every backend; speed only, no change to the numbers.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def max_pool_2x2(x, ceil: bool = False):
  """2x2 max-pool with stride 2 over `[B, H, W, C]`, as a reshape and a max.

  The same values as `nn.max_pool(x, (2, 2), (2, 2))` (VALID: an odd last row/column is
  dropped) or, with `ceil`, as `padding='SAME'` (an odd last row/column is pooled alone). The
  gradient goes to the first maximum of each window, as XLA's select-and-scatter does, but as
  elementwise selects (select-and-scatter took 12 % of the Conv-4 step on an H100,
  docs/SPEED.md). The window's maximum is found by comparing its four entries with each other:
  `jnp.max`'s own gradient compares the input with the pooled maximum instead, which can match
  nothing when XLA recomputes the input in another fusion with different rounding, and then
  divides 0 by 0 (seen on XLA:CPU).
  """
  _, h, w, _ = x.shape
  if ceil and (h % 2 or w % 2):
    neg = jnp.asarray(-jnp.inf, x.dtype)
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=neg)
  else:
    x = x[:, :h - h % 2, :w - w % 2]
  return _pool_even(x)


@jax.custom_vjp
def _pool_even(x):
  b, h, w, c = x.shape
  return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def _pool_even_fwd(x):
  return _pool_even(x), x


def _pool_even_bwd(x, g):
  b, h, w, c = x.shape
  xr = x.reshape(b, h // 2, 2, w // 2, 2, c)
  p, q, r, s = xr[:, :, 0, :, 0], xr[:, :, 0, :, 1], xr[:, :, 1, :, 0], xr[:, :, 1, :, 1]
  # The first maximum in window order, from comparisons among the window's own entries: exactly
  # one entry is chosen however XLA rounds or fuses the computation of x.
  sp = (p >= q) & (p >= r) & (p >= s)
  sq = ~sp & (q >= r) & (q >= s)
  sr = ~sp & ~sq & (r >= s)
  ss = ~(sp | sq | sr)
  zero = jnp.zeros((), g.dtype)
  top = jnp.stack([jnp.where(sp, g, zero), jnp.where(sq, g, zero)], axis=3)
  bottom = jnp.stack([jnp.where(sr, g, zero), jnp.where(ss, g, zero)], axis=3)
  return (jnp.stack([top, bottom], axis=2).reshape(b, h, w, c),)


_pool_even.defvjp(_pool_even_fwd, _pool_even_bwd)


def relu_max_pool_2x2(x):
  """`max_pool_2x2(relu(x))` (VALID) as one op whose backward pass does not read `x`.

  The forward pass also stores, per output, which entry of its window was the first maximum
  (int8, a quarter of the output's elements in bytes) and the output itself. The backward pass
  writes the input gradient from those alone, as a broadcast over the 2x2 window (no
  interleaving copies): `g` where the entry is the window's first maximum and the output is
  positive (ReLU's gradient), else 0. Same values and gradients as the two ops in sequence
  (`relu(max(window)) == max(relu(window))`; a window with no positive entry gets no gradient
  either way), but the backward pass reads a quarter-size index instead of the full-resolution
  input: in Conv-4 the first block's input gradient is the largest tensor of the step.
  """
  _, h, w, _ = x.shape
  return _relu_pool_even(x[:, :h - h % 2, :w - w % 2])


def _first_max_index(x):
  """Window position (0..3, row-major) of each 2x2 window's first maximum, as int8."""
  b, h, w, c = x.shape
  xr = x.reshape(b, h // 2, 2, w // 2, 2, c)
  p, q, r, s = xr[:, :, 0, :, 0], xr[:, :, 0, :, 1], xr[:, :, 1, :, 0], xr[:, :, 1, :, 1]
  # Comparisons among the window's own entries (see _pool_even_bwd): exactly one is chosen.
  first = jnp.where((p >= q) & (p >= r) & (p >= s), 0,
                    jnp.where((q >= r) & (q >= s), 1, jnp.where(r >= s, 2, 3)))
  return first.astype(jnp.int8)


@jax.custom_vjp
def _relu_pool_even(x):
  b, h, w, c = x.shape
  return jax.nn.relu(jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4)))


def _relu_pool_even_fwd(x):
  # The op itself, so that a second derivative (MAML) goes through this rule again.
  y = _relu_pool_even(x)
  return y, (_first_max_index(x), y)


def _relu_pool_even_bwd(res, g):
  first, y = res
  b, h2, w2, c = g.shape
  window = (2 * jnp.arange(2).reshape(1, 1, 2, 1, 1, 1)
            + jnp.arange(2).reshape(1, 1, 1, 1, 2, 1)).astype(jnp.int8)
  g = jnp.where(y > 0, g, jnp.zeros((), g.dtype))
  dx = jnp.where(window == first[:, :, None, :, None, :], g[:, :, None, :, None, :],
                 jnp.zeros((), g.dtype))
  return (dx.reshape(b, 2 * h2, 2 * w2, c),)


_relu_pool_even.defvjp(_relu_pool_even_fwd, _relu_pool_even_bwd)


def relu_max_pool_3x3_s2(x):
  """`nn.max_pool(relu(x), (3, 3), (2, 2), padding='SAME')`, the ResNet stem's pool, as one op.

  Even sizes (the stem's 112 and 42 px maps) get a custom VJP like `relu_max_pool_2x2`'s: the
  forward pass stores each window's first-maximum position (int8, 0..8 row-major) and the output;
  the backward pass writes the input gradient from those, with the windows' overlaps (every even
  row and column is in two windows) summed as shifted copies on the output grid. XLA's own
  gradient of a strided max-pool is a select-and-scatter that re-reads the input: 22 ms of the
  reference model's 345 ms step at 224 px (docs/SPEED.md). Same values and derivatives, ties
  included (tests/test_models.py). Odd sizes use the two ops.
  """
  _, h, w, _ = x.shape
  if h % 2 or w % 2:
    return nn.max_pool(jax.nn.relu(x), (3, 3), (2, 2), padding='SAME')
  return _relu_pool_3s2(x)


def _stem_windows(x):
  """The 9 entries of each 3x3 stride-2 window (SAME: one row/column of -inf after the end),
  row-major, each `[B, H/2, W/2, C]`."""
  b, h, w, c = x.shape
  xr = x.reshape(b, h // 2, 2, w // 2, 2, c)
  fill = jnp.full((), -jnp.inf, x.dtype)
  def rows(di):   # window row di of every window: rows 2o + di
    r = xr[:, :, di % 2]
    return r if di < 2 else jnp.concatenate([r[:, 1:], jnp.full_like(r[:, :1], fill)], axis=1)
  def cols(r, dj):
    col = r[:, :, :, dj % 2]
    return col if dj < 2 else jnp.concatenate([col[:, :, 1:], jnp.full_like(col[:, :, :1], fill)],
                                              axis=2)
  return [cols(rows(di), dj) for di in range(3) for dj in range(3)]


@jax.custom_vjp
def _relu_pool_3s2(x):
  return jax.nn.relu(functools.reduce(jnp.maximum, _stem_windows(x)))


def _relu_pool_3s2_fwd(x):
  y = _relu_pool_3s2(x)   # the op itself: a second derivative goes through this rule again
  entries = _stem_windows(x)
  best, first = entries[0], jnp.zeros(entries[0].shape, jnp.int8)
  for k, e in enumerate(entries[1:], 1):   # strict '>': the first maximum keeps its place
    better = e > best
    best, first = jnp.where(better, e, best), jnp.where(better, jnp.int8(k), first)
  return y, (first, y)


def _relu_pool_3s2_bwd(res, g):
  first, y = res
  b, h2, w2, c = g.shape
  zero = jnp.zeros((), g.dtype)
  g = jnp.where(y > 0, g, zero)
  part = lambda di, dj: jnp.where(first == 3 * di + dj, g, zero)
  down = lambda a: jnp.concatenate([jnp.zeros_like(a[:, :1]), a[:, :-1]], axis=1)
  right = lambda a: jnp.concatenate([jnp.zeros_like(a[:, :, :1]), a[:, :, :-1]], axis=2)
  # Input row 2o gets window row 0 of window o and row 2 of window o-1; row 2o+1 gets row 1.
  p00 = part(0, 0) + down(part(2, 0)) + right(part(0, 2)) + down(right(part(2, 2)))
  p01 = part(0, 1) + down(part(2, 1))
  p10 = part(1, 0) + right(part(1, 2))
  p11 = part(1, 1)
  dx = jnp.stack([jnp.stack([p00, p01], axis=3), jnp.stack([p10, p11], axis=3)], axis=2)
  return (dx.reshape(b, 2 * h2, 2 * w2, c),)


_relu_pool_3s2.defvjp(_relu_pool_3s2_fwd, _relu_pool_3s2_bwd)
