"""The inner loop with two speed-ups, the same numbers as `meta/inner.py:adapt` (tests/test_meta.py).

- A peeled first step (`peel_first`): under `vmap` over tasks the first step's products read one
  unbatched copy of the weights.
- Narrow copies carried through the loop (`carry_casts`): adapted weights a bfloat16 model only
  ever casts are carried in bfloat16 too (`castable_leaves` reads the casts from the jaxpr).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import optax

from meta_align_jax.meta.inner import minibatches, split


def adapt(loss_fn: Callable[[dict, dict], jax.Array], params: dict, batch: dict, *,
          steps: int, optimizer: optax.GradientTransformation, keys: Sequence[str],
          unroll: bool | int = False, remat: bool = False, zero_head: bool = False,
          batch_size: int = 0, carry_casts: bool = True, peel_first: bool = True):
  """Runs `steps` inner steps of `optimizer` on `loss_fn(params, batch)` over groups `keys`.

  `batch_size` > 0 takes minibatches that cycle through the task's examples in order (the
  reference's `DataLoader` over one task, without reshuffling: tasks arrive shuffled); 0 uses
  the whole batch at every step. `unroll`: True unrolls the loop, an integer k runs k steps per
  loop iteration. Returns `(adapted_params, losses)`: the full parameter dict with the `keys`
  groups replaced by their adapted values, and the loss before each step.

  `carry_casts`: adapted parameters that `loss_fn` only ever casts to a narrower compute dtype
  (the kernels of a bfloat16 model; found in its jaxpr, `castable_leaves`) are carried through
  the loop in that dtype too, written by the optimiser update that makes them. The loss reads
  the narrow copy and its gradient comes back narrow, as it did through the cast. The values are
  the same as without it; what goes is a separate cast kernel per parameter and step, which
  re-read every float32 weight of every task (8 ms of the reference model's step,
  docs/SPEED.md).

  `peel_first`: the first step runs before the scanned loop, not in it. Every task of a
  vmapped batch starts from the same parameters, and outside the loop `vmap` keeps them
  unbatched there: the first step's forward and input-gradient products read one copy of the
  weights for all tasks (one large GEMM instead of a GEMM per task), the optimiser's zero state
  is not materialised per task, and the per-task copies appear only as that step's output. In a
  scan the carry is batched from the start, so step 0 reads a broadcast copy per task. Same
  values; a fully unrolled loop (`unroll=True`) gets this anyway.
  """
  if zero_head and 'head' in params:
    params = {**params, 'head': jax.tree.map(jnp.zeros_like, params['head'])}
  fast, frozen = split(params, keys)

  index, step_batch = minibatches(batch, steps, batch_size)
  minibatch = index is not None
  narrow = castable_leaves(loss_fn, frozen, fast, step_batch) if carry_casts and steps else None

  def step(carry, idx):
    fast, opt_state = carry
    data = jax.tree.map(lambda x: x[idx], batch) if minibatch else batch
    loss, grads = jax.value_and_grad(lambda f: loss_fn({**frozen, **f}, data))(fast)
    updates, opt_state = optimizer.update(grads, opt_state, fast)
    return (optax.apply_updates(fast, updates), opt_state), loss

  def step_narrow(carry, idx):
    (fast, low), opt_state = carry
    data = jax.tree.map(lambda x: x[idx], batch) if minibatch else batch
    leaves, treedef = jax.tree.flatten(fast)
    def loss_of(low, wide):   # the model sees the narrow copies where it would have cast
      mixed = [lo if dt is not None else wi for lo, wi, dt in zip(low, wide, narrow)]
      return loss_fn({**frozen, **treedef.unflatten(mixed)}, data)
    wide = [None if dt is not None else x for x, dt in zip(leaves, narrow)]
    loss, (g_low, g_wide) = jax.value_and_grad(loss_of, (0, 1))(low, wide)
    grads = treedef.unflatten([gl.astype(x.dtype) if dt is not None else gw
                               for gl, gw, x, dt in zip(g_low, g_wide, leaves, narrow)])
    updates, opt_state = optimizer.update(grads, opt_state, fast)
    fast = optax.apply_updates(fast, updates)
    return ((fast, _narrow_copies(fast, narrow)), opt_state), loss

  if steps == 0:
    return params, jnp.zeros([0], jnp.float32)
  if narrow is not None:
    body, init = step_narrow, ((fast, _narrow_copies(fast, narrow)), optimizer.init(fast))
  else:
    body, init = step, (fast, optimizer.init(fast))
  if remat:
    body = jax.checkpoint(body)
  xs = index if minibatch else None
  peel = peel_first and unroll is not True
  if peel:
    init, loss0 = body(init, None if xs is None else xs[0])
    xs = None if xs is None else xs[1:]
  (fast, _), losses = jax.lax.scan(body, init, xs, length=steps - int(peel),
                                   unroll=True if unroll is True else max(1, int(unroll)))
  if peel:
    losses = jnp.concatenate([loss0[None], losses])
  if narrow is not None:
    fast = fast[0]
  return {**frozen, **fast}, losses


def _narrow_copies(fast, narrow):
  return [x.astype(dt) if dt is not None else None
          for x, dt in zip(jax.tree.leaves(fast), narrow)]


def castable_leaves(loss_fn, frozen: dict, fast: dict, data) -> list | None:
  """Per leaf of `fast`: the narrower dtype `loss_fn` casts it to at its every use, else None.

  Read from the jaxpr of `loss_fn({**frozen, **fast}, data)`: a leaf qualifies when all its uses
  at the top level are `convert_element_type` to one floating dtype of smaller width (Flax
  modules with `dtype=bfloat16` cast their float32 kernels so). Leaves used any other way, or
  inside a nested call (custom VJPs, remat, loops), do not. Returns None when no leaf does.
  """
  spec = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  closed = jax.make_jaxpr(lambda f, fr, d: loss_fn({**fr, **f}, d))(
      spec(fast), spec(frozen), spec(data))
  jaxpr = closed.jaxpr
  uses: dict = {}
  for eqn in jaxpr.eqns:
    for v in eqn.invars:
      if isinstance(v, jex_core.Var):
        uses.setdefault(v, []).append(eqn)
  outs = {v for v in jaxpr.outvars if isinstance(v, jex_core.Var)}
  result = []
  for v in jaxpr.invars[:len(jax.tree.leaves(fast))]:
    eqns = uses.get(v, [])
    dtypes = {e.params.get('new_dtype') for e in eqns}
    dt = next(iter(dtypes)) if len(dtypes) == 1 else None
    ok = (eqns and v not in outs and all(e.primitive.name == 'convert_element_type' for e in eqns)
          and dt is not None and jnp.issubdtype(dt, jnp.floating)
          and jnp.dtype(dt).itemsize < v.aval.dtype.itemsize)
    result.append(jnp.dtype(dt) if ok else None)
  return result if any(d is not None for d in result) else None
