"""The inner loop shared by every meta-learner: K optax steps on a subtree of the parameters.

`adapt` is a pure function of the parameters, so it can be differentiated through (second-order
MAML), stopped (first-order MAML) or differenced (Reptile). The loop is a `lax.scan`; `unroll`
unrolls it (True: fully; k: k steps per loop iteration) and `remat` rematerialises each step's
activations in the backward pass (second-order MAML memory goes from O(K) to O(1) activations).
The step picks a faster variant with the same numbers where the execution says so
(fast/inner.py: a peeled first step, narrow copies of bfloat16 weights carried through the loop).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from meta_align_jax.fast.optim import adam_b1_zero

PARAM_GROUPS = ('source', 'target', 'shared', 'head', 'global_head')


def make_inner_optimizer(name: str, lr: float) -> optax.GradientTransformation:
  """`sgd`, or `adam` with the reference's betas (0, 0.999)."""
  if name == 'sgd':
    return optax.sgd(lr)
  if name == 'adam':
    return adam_b1_zero(lr, b2=0.999)
  raise ValueError(f"config.meta.inner_opt={name!r}: use 'sgd' or 'adam'.")


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


def minibatches(batch: dict, steps: int, batch_size: int):
  """(indices `[steps, batch_size]` or None, the batch one step sees as shapes)."""
  n = jax.tree.leaves(batch)[0].shape[0]
  minibatch = 0 < batch_size < n
  index = (jnp.arange(steps)[:, None] * batch_size + jnp.arange(batch_size)[None, :]) % n
  step_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      ((batch_size,) if minibatch else x.shape[:1]) + x.shape[1:], x.dtype), batch)
  return (index if minibatch else None), step_batch


def adapt(loss_fn: Callable[[dict, dict], jax.Array], params: dict, batch: dict, *,
          steps: int, optimizer: optax.GradientTransformation, keys: Sequence[str],
          unroll: bool | int = False, remat: bool = False, zero_head: bool = False,
          batch_size: int = 0):
  """Runs `steps` inner steps of `optimizer` on `loss_fn(params, batch)` over groups `keys`.

  `batch_size` > 0 takes minibatches that cycle through the task's examples in order (the
  reference's `DataLoader` over one task, without reshuffling: tasks arrive shuffled); 0 uses
  the whole batch at every step. Returns `(adapted_params, losses)`: the full parameter dict with
  the `keys` groups replaced by their adapted values, and the loss before each step.
  """
  if zero_head and 'head' in params:
    params = {**params, 'head': jax.tree.map(jnp.zeros_like, params['head'])}
  fast, frozen = split(params, keys)
  if steps == 0:
    return params, jnp.zeros([0], jnp.float32)
  index, _ = minibatches(batch, steps, batch_size)

  def step(carry, idx):
    fast, opt_state = carry
    data = batch if idx is None else jax.tree.map(lambda x: x[idx], batch)
    loss, grads = jax.value_and_grad(lambda f: loss_fn({**frozen, **f}, data))(fast)
    updates, opt_state = optimizer.update(grads, opt_state, fast)
    return (optax.apply_updates(fast, updates), opt_state), loss

  if remat:
    step = jax.checkpoint(step)
  (fast, _), losses = jax.lax.scan(step, (fast, optimizer.init(fast)), index, length=steps,
                                   unroll=True if unroll is True else max(1, int(unroll)))
  return {**frozen, **fast}, losses
