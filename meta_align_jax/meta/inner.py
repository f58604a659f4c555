"""The inner loop shared by every meta-learner: K optax steps on a subtree of the parameters.

`adapt` is a pure function of the parameters, so it can be differentiated through (second-order
MAML), stopped (first-order MAML) or differenced (Reptile). The loop is a `lax.scan`; `unroll`
unrolls it fully (faster on XLA:CPU, see DESIGN.md) and `remat` rematerialises each step's
activations in the backward pass (second-order MAML memory goes from O(K) to O(1) activations).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import optax

PARAM_GROUPS = ('source', 'target', 'shared', 'head', 'global_head')


def make_inner_optimizer(name: str, lr: float) -> optax.GradientTransformation:
  """`sgd`, or `adam` with the reference's betas (0, 0.999)."""
  if name == 'sgd':
    return optax.sgd(lr)
  if name == 'adam':
    return adam_b1_zero(lr, b2=0.999)
  raise ValueError(f"config.meta.inner_opt={name!r}: use 'sgd' or 'adam'.")


class AdamB1ZeroState(NamedTuple):
  count: jax.Array     # int32 scalar
  nu: optax.Updates    # second moment


def adam_b1_zero(lr: float, b2: float = 0.999, eps: float = 1e-8
                 ) -> optax.GradientTransformation:
  """`optax.adam(lr, b1=0, b2=b2, eps=eps)` without its first-moment buffer.

  With b1 = 0 Adam's first moment is the current gradient: `mu = (1 - 0) g + 0 mu`, and its
  bias correction divides by `1 - 0**t = 1`. The buffer is dead weight that is read and written
  at every inner step, for every adapted parameter of every task. In the reference model that
  is 11.7 M parameters x 64 tasks per step, and the inner updates were the largest kernels of
  its profile (bench/README.md). The same computation on the same values as optax's
  (`optax.tree.update_moment_per_elem_norm`, `bias_correction`), tested step by step against
  `optax.adam` in tests/test_meta.py.
  """

  def init(params):
    return AdamB1ZeroState(count=jnp.zeros([], jnp.int32), nu=optax.tree.zeros_like(params))

  def update(updates, state, params=None):
    del params
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    updates = jax.tree.map(lambda g, v: g / (jnp.sqrt(v) + eps), updates, nu_hat)
    return updates, AdamB1ZeroState(count=count, nu=nu)

  return optax.chain(optax.GradientTransformation(init, update),
                     optax.scale_by_learning_rate(lr))


def resolve_adapt(spec: str, side: str, available: Sequence[str], field: str = 'config.meta.adapt'
                  ) -> tuple[str, ...]:
  """Which top-level parameter groups adapt in a task of `side`.

  'all' = the side's tower (and the shared encoder, when the model has one: group 'shared') and
  the head (ANIL-style 'head' = the head only); otherwise a comma list of group names.
  """
  if spec == 'all':
    keys = (side,) + (('shared',) if 'shared' in available else ()) + ('head',)
  elif spec == 'head':
    keys = ('head',)
  else:
    keys = tuple(k.strip() for k in spec.split(',') if k.strip())
  unknown = [k for k in keys if k not in available]
  if not keys or unknown:
    raise ValueError(f"{field}={spec!r}: use 'all', 'head' or a comma list of parameter groups "
                     f'from {tuple(available)}.')
  return keys


def split(params: dict, keys: Sequence[str]) -> tuple[dict, dict]:
  adapted = {k: params[k] for k in keys}
  frozen = {k: v for k, v in params.items() if k not in adapted}
  return adapted, frozen


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
  bench/README.md).

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

  n = jax.tree.leaves(batch)[0].shape[0]
  minibatch = 0 < batch_size < n
  index = (jnp.arange(steps)[:, None] * batch_size + jnp.arange(batch_size)[None, :]) % n
  step_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      ((batch_size,) if minibatch else x.shape[:1]) + x.shape[1:], x.dtype), batch)
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
