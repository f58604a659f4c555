"""The inner loop shared by every meta-learner: K optax steps on a subtree of the parameters.

`adapt` is a pure function of the parameters, so it can be differentiated through (second-order
MAML), stopped (first-order MAML) or differenced (Reptile). The loop is a `lax.scan`; `unroll`
unrolls it fully (faster on XLA:CPU, see DESIGN.md) and `remat` rematerialises each step's
activations in the backward pass (second-order MAML memory goes from O(K) to O(1) activations).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
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
          unroll: bool = False, remat: bool = False, zero_head: bool = False,
          batch_size: int = 0):
  """Runs `steps` inner steps of `optimizer` on `loss_fn(params, batch)` over groups `keys`.

  `batch_size` > 0 takes minibatches that cycle through the task's examples in order (the
  reference's `DataLoader` over one task, without reshuffling: tasks arrive shuffled); 0 uses
  the whole batch at every step. Returns `(adapted_params, losses)`: the full parameter dict
  with the `keys` groups replaced by their adapted values, and the loss before each step.
  """
  if zero_head and 'head' in params:
    params = {**params, 'head': jax.tree.map(jnp.zeros_like, params['head'])}
  fast, frozen = split(params, keys)

  n = jax.tree.leaves(batch)[0].shape[0]
  minibatch = 0 < batch_size < n
  index = (jnp.arange(steps)[:, None] * batch_size + jnp.arange(batch_size)[None, :]) % n

  def step(carry, idx):
    fast, opt_state = carry
    data = jax.tree.map(lambda x: x[idx], batch) if minibatch else batch
    loss, grads = jax.value_and_grad(lambda f: loss_fn({**frozen, **f}, data))(fast)
    updates, opt_state = optimizer.update(grads, opt_state, fast)
    return (optax.apply_updates(fast, updates), opt_state), loss

  if remat:
    step = jax.checkpoint(step)
  if steps == 0:
    return params, jnp.zeros([0], jnp.float32)
  (fast, _), losses = jax.lax.scan(step, (fast, optimizer.init(fast)),
                                   index if minibatch else None, length=steps,
                                   unroll=True if unroll else 1)
  return {**frozen, **fast}, losses
