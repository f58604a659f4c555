"""LSTM recurrence for per-task adaptation: input projections outside the time loop and a hand-written
backward pass whose weight gradient is one matrix product, not a sum built inside the loop.

Why: under `vmap` over tasks every task has its own LSTM weights. Differentiating a `lax.scan`
accumulates the recurrent weights' gradient in the loop carry, so each of the L time steps of
every inner step reads and writes a `[tasks, H, 4H]` float32 buffer (in the reference model,
32 MB per step, 1152 loop iterations per meta-step: 30 % of the step on an H100,
docs/SPEED.md). Here the loop computes only what must be sequential (`h @ W_h` and the gates);
the backward loop emits the gate gradients per step, and `dW_h = sum_t h_{t-1}^T dgates_t` and
the input-projection gradients are single large GEMMs after it.

Same maths as `flax.linen.OptimizedLSTMCell` (gates i, f, g, o; c' = f c + i g; h' = o tanh c'),
with masked steps carrying the state through unchanged (the recurrence stops at each sequence's
length). Differentiable to any order in reverse mode (second-order MAML differentiates the
backward pass, which is ordinary JAX).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _cell(pre, c_prev):
  """Gate pre-activations `[B, 4H]` (f32) -> (h, c, activations)."""
  i, f, g, o = jnp.split(pre, 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  c = f * c_prev + i * g
  return o * jnp.tanh(c), c, (i, f, g, o)


def _scan_forward(gx, wh, mask, dtype, unroll=1):
  """Plain forward recurrence: gx `[B, L, 4H]` input pre-activations, wh `[H, 4H]`, mask `[B, L]`.

  Returns outputs `[B, L, H]` (f32) and what the backward pass needs: the state before each step,
  the new cell state and the gate activations."""
  b, _, g4 = gx.shape
  h0 = jnp.zeros((b, g4 // 4), jnp.float32)
  whc = wh.astype(dtype)   # cast once: XLA does not hoist a cast out of the loop body

  def step(carry, inp):
    h, c = carry
    gx_t, m_t = inp
    pre = gx_t.astype(jnp.float32) + jnp.dot(h.astype(dtype), whc,
                                             preferred_element_type=jnp.float32)
    h_new, c_new, acts = _cell(pre, c)
    m = m_t[:, None]
    h_next, c_next = jnp.where(m, h_new, h), jnp.where(m, c_new, c)
    return (h_next, c_next), (h_next, h, c, c_new, jnp.concatenate(acts, axis=-1))

  _, outs = jax.lax.scan(step, (h0, h0), (jnp.swapaxes(gx, 0, 1), jnp.swapaxes(mask, 0, 1)),
                         unroll=unroll)
  # hs, h_prev, c_prev, c_new, gate activations (i, f, g, o): each [B, L, .]
  return tuple(jnp.swapaxes(a, 0, 1) for a in outs)


def lstm_recurrence_reference(gx, wh, mask, dtype=jnp.float32):
  """The recurrence differentiated by JAX through `lax.scan` (tests compare against it)."""
  return _scan_forward(gx, wh, mask, dtype)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _recurrence(gx, wh, mask, dtype, unroll):
  return _scan_forward(gx, wh, mask, dtype, unroll)[0]


def _fwd(gx, wh, mask, dtype, unroll):
  hs, h_prev, c_prev, c_new, acts = _scan_forward(gx, wh, mask, dtype, unroll)
  return hs, (gx, wh, mask, h_prev, c_prev, c_new, acts)


def _bwd(dtype, unroll, res, d_hs):
  gx, wh, mask, h_prev, c_prev, c_new_all, acts = res
  b, _, g4 = gx.shape
  whT = wh.astype(dtype).T   # cast once, outside the loop

  def step(carry, inp):
    dh, dc = carry
    m_t, cp, c_new, act, dout = inp
    i, f, g, o = jnp.split(act, 4, axis=-1)
    m = m_t[:, None]
    dh_tot = dh + dout
    tc = jnp.tanh(c_new)
    dc_new = dh_tot * o * (1.0 - tc * tc) + dc
    dpre = jnp.concatenate([dc_new * g * i * (1.0 - i), dc_new * cp * f * (1.0 - f),
                            dc_new * i * (1.0 - g * g), dh_tot * tc * o * (1.0 - o)], axis=-1)
    dpre = jnp.where(m, dpre, 0.0)
    dh_prev = jnp.dot(dpre.astype(dtype), whT, preferred_element_type=jnp.float32)
    # A masked step passed h and c through unchanged: their gradients pass through too.
    dh_prev = jnp.where(m, dh_prev, dh_tot)
    dc_prev = jnp.where(m, dc_new * f, dc)
    return (dh_prev, dc_prev), dpre

  z = jnp.zeros((b, g4 // 4), jnp.float32)
  sw = lambda a: jnp.swapaxes(a, 0, 1)
  _, dpre = jax.lax.scan(step, (z, z), (sw(mask), sw(c_prev), sw(c_new_all), sw(acts), sw(d_hs)),
                         reverse=True, unroll=unroll)
  dpre = sw(dpre)                                            # [B, L, 4H] f32
  dwh = jnp.einsum('blh,blg->hg', h_prev.astype(dtype), dpre.astype(dtype),
                   preferred_element_type=jnp.float32).astype(wh.dtype)
  dmask = np.zeros(mask.shape, jax.dtypes.float0)
  return dpre.astype(gx.dtype), dwh, dmask


_recurrence.defvjp(_fwd, _bwd)


def lstm_recurrence(gx, wh, mask, dtype=jnp.float32, unroll: int = 1):
  """Hidden states `[B, L, H]` (float32) of an LSTM with input pre-activations `gx`.

  `unroll`: time steps per loop iteration (`lax.scan`'s unroll; `config.execution.rnn_unroll`).
  """
  return _recurrence(gx, wh, mask.astype(bool), jnp.dtype(dtype), int(unroll))
