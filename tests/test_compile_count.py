"""The train step compiles once: no recompilation after the first step (issue 7).

Counts XLA backend compilations through `jax.monitoring` while steps 2 and 3 run on new
batches (fresh host arrays each step, as the input pipeline gives them) and checks the jitted
step's cache holds one entry. A program loaded from the persistent compilation cache (which the
tests share, tests/conftest.py) instead of compiled counts as a compilation too. CPU, tiny
config, seconds.
"""

import jax
import numpy as np
import pytest
from jax import monitoring

from meta_align_jax import build_model, init_train_state, make_train_step, random_batch
from tests.tiny import tiny_config

_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
_CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'


class _CompileCounter:
  """Backend compilations and persistent-cache loads (each one is an executable made)."""

  def __init__(self):
    self.names = []

  def __call__(self, event, duration_secs, **kwargs):
    del duration_secs
    if event == _COMPILE_EVENT:
      self.names.append(kwargs.get('fun_name', '?'))

  def _event(self, event, **kwargs):
    if event == _CACHE_HIT_EVENT:
      self.names.append('cache hit')

  def __enter__(self):
    monitoring.register_event_duration_secs_listener(self)
    monitoring.register_event_listener(self._event)
    return self

  def __exit__(self, *exc):
    monitoring.unregister_event_duration_listener(self)
    monitoring.unregister_event_listener(self._event)


@pytest.mark.parametrize('overrides', [
    {},                                                                  # vmap + scan
    {'execution.task_batching': 'map', 'align.mode': 'reptile', 'meta.inner_batch': 2},
    {'align.mode': 'reptile', 'execution.map_encoders': ('target',)},   # vmap, target mapped
])
def test_no_recompilation_after_first_step(overrides):
  config = tiny_config(**overrides)
  model = build_model(config)
  state = init_train_state(config, model, jax.random.key(config.seed))
  step = make_train_step(config, model)
  batches = [random_batch(config, seed) for seed in range(3)]
  rngs = [jax.random.key(10 + i) for i in range(3)]

  with _CompileCounter() as first:
    state, metrics = step(state, batches[0], rngs[0])
    jax.block_until_ready(state)
  assert first.names, 'the first step should compile (is the listener wired?)'

  with _CompileCounter() as later:
    losses = []
    for batch, rng in zip(batches[1:], rngs[1:]):
      state, metrics = step(state, batch, rng)
      losses.append(float(metrics['loss']))
    jax.block_until_ready(state)
  assert later.names == [], f'recompiled after the first step: {later.names}'
  assert np.all(np.isfinite(losses))
  assert int(state.step) == 3
  cache_size = getattr(step.__wrapped__, '_cache_size', None)
  if cache_size is not None:
    assert cache_size() == 1
