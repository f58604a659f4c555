"""Task batching strategies (`config.execution.task_batching`): the same means, different code.

`vmap` batches the tasks of a device into one program; `map` runs them one after the other in a
loop (`lax.map`, or a scan that accumulates: the memory of one task's gradient); `unroll` writes
one copy of the task's code per task (fastest to run on XLA:CPU, slowest to compile).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# Unrolling episodes compiles in time that grows with their number (on XLA:CPU 13 s for 5
# episodes, 455 s for 50); larger evaluation chunks are vmapped instead.
MAX_UNROLLED_EPISODES = 8


def over_tasks(fn: Callable, params, tasks, rngs, strategy: str, map_batch_size: int = 0):
  """Means of `fn(params, task, rng) -> (grads, metrics)` over the leading task axis."""
  num = jax.tree.leaves(tasks)[0].shape[0]
  mean = lambda tree: jax.tree.map(lambda x: x / num, tree)
  if strategy == 'vmap':
    out = jax.vmap(fn, in_axes=(None, 0, 0))(params, tasks, rngs)
    return jax.tree.map(lambda x: x.mean(0), out)
  if strategy == 'map' and map_batch_size:
    out = jax.lax.map(lambda a: fn(params, *a), (tasks, rngs), batch_size=map_batch_size)
    return jax.tree.map(lambda x: x.mean(0), out)
  if strategy == 'map':   # a scan that accumulates: memory of one task's gradient, not T
    first = jax.tree.map(lambda x: x[0], (tasks, rngs))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(fn, params, *first))
    def body(acc, a):
      return jax.tree.map(jnp.add, acc, fn(params, *a)), None
    return mean(jax.lax.scan(body, zeros, (tasks, rngs))[0])
  if strategy == 'unroll':
    acc = None
    for i in range(num):
      out = fn(params, *jax.tree.map(lambda x: x[i], (tasks, rngs)))
      acc = out if acc is None else jax.tree.map(jnp.add, acc, out)
    return mean(acc)
  raise ValueError(f'config.execution.task_batching={strategy!r}: use vmap, map or unroll.')


def over_episodes(fn: Callable, episodes, strategy: str, map_batch_size: int = 0):
  """`fn(episode) -> metrics` stacked over the leading episode axis."""
  num = jax.tree.leaves(episodes)[0].shape[0]
  if strategy == 'vmap' or (strategy == 'unroll' and num > MAX_UNROLLED_EPISODES):
    return jax.vmap(fn)(episodes)
  if strategy == 'map':
    return jax.lax.map(fn, episodes, batch_size=map_batch_size or None)
  outs = [fn(jax.tree.map(lambda x: x[i], episodes)) for i in range(num)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
