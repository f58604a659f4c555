"""Encoders that run task by task under `vmap` (`config.execution.map_encoders`).

`mapped_over_batch(fn)` is `fn` outside vmap; under vmap over tasks its convolutions run one task
after the other (a `lax.map`) instead of as grouped convolutions. `side_fn(model, side)` gives one
function object per model and side, so the mapped wrapper is built (and traced) once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import sequential_vmap


def mapped_over_batch(fn):
  """`fn(p, x)` whose vmap (e.g. over tasks) runs as a `lax.map`, forward and backward.

  Under `vmap` with per-task parameters `p` a convolution becomes a grouped convolution, which
  cuDNN runs on slow kernels; this keeps the convolutions of `fn` ungrouped, one task after the
  other, while the rest of the step stays vmapped (`config.execution.map_encoders`). The backward
  pass recomputes the forward (a third more encoder FLOPs) and gives no gradient for `x` (inputs
  are data). Outside vmap it is `fn`. Differentiable once: second-order MAML through it fails
  (`jax.custom_batching` has no reverse-mode rule); Reptile, first-order MAML and alignment work.
  """
  fwd = sequential_vmap(fn)

  @sequential_vmap
  def bwd(p, x, g):
    return jax.vjp(lambda q: fn(q, x), p)[1](g)[0]

  @jax.custom_vjp
  def f(p, x):
    return fwd(p, x)

  f.defvjp(lambda p, x: (fwd(p, x), (p, x)),
           lambda res, g: (bwd(*res, g), jax.tree.map(_zero_cotangent, res[1])))
  return f


def _zero_cotangent(x):
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return jnp.zeros_like(x)
  return np.zeros(x.shape, jax.dtypes.float0)


_SIDE_FNS: dict = {}
_MAPPED: dict = {}


def side_fn(model, side: str):
  """`fn(p, x) -> z` for `side`, `p` holding the groups it reads; one function object per model
  and side (the modules are kept alive with it, so ids are not reused)."""
  tower = model.source if side == 'source' else model.target
  key = (side, id(tower), id(model.shared))
  if key not in _SIDE_FNS:
    shared = model.shared
    if shared is None:
      fn = lambda p, x: tower.apply({'params': p[side]}, x)
    else:
      fn = lambda p, x: shared.apply({'params': p['shared']},
                                     tower.apply({'params': p[side]}, x))
    _SIDE_FNS[key] = (tower, shared, fn)
  return _SIDE_FNS[key][2]


def mapped(fn):
  if id(fn) not in _MAPPED:
    _MAPPED[id(fn)] = (fn, mapped_over_batch(fn))
  return _MAPPED[id(fn)][1]
