"""`make_train_step`: every execution strategy gives the same update.

The learners and options, pmap == one device, errors before compiling and the evaluation step
are `test_step_checks.py`.
"""

import jax
import numpy as np
import pytest

from meta_align_jax import build_model, init_train_state, make_train_step, random_batch
from meta_align_jax.train_step import over_tasks
from tests.tiny import tiny_config


def _run(config, steps=2, seed=0):
  model = build_model(config)
  state = init_train_state(config, model, jax.random.key(config.seed))
  step = make_train_step(config, model)
  metrics = None
  for i in range(steps):
    state, metrics = step(state, random_batch(config, seed + i), jax.random.key(7))
  return state, metrics


def _assert_trees_close(a, b, rtol=2e-4, atol=2e-6):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def _assert_strategies_agree(learner, strategies):
  """One step under each (task_batching, inner_loop, map_batch_size): the same update."""
  results = {}
  for tb, il, mbs in strategies:
    c = tiny_config(**{'meta.learner': learner, 'execution.task_batching': tb,
                       'execution.inner_loop': il, 'execution.map_batch_size': mbs})
    results[(tb, il, mbs)] = _run(c, steps=1)
  (ref_state, ref_metrics), *others = results.values()
  for state, metrics in others:
    _assert_trees_close(state.params, ref_state.params)
    for k in ref_metrics:
      np.testing.assert_allclose(metrics[k], ref_metrics[k], rtol=2e-4, atol=1e-6)
  assert int(ref_state.step) == 1


@pytest.mark.parametrize('learner', ['reptile', 'maml'])
def test_execution_strategies_give_the_same_update(learner):
  _assert_strategies_agree(learner, [('vmap', 'scan', 0), ('map', 'scan', 0), ('map', 'scan', 2)])


@pytest.mark.slow   # fully unrolled programs: over a minute of XLA:CPU compilation per learner
@pytest.mark.parametrize('learner', ['reptile', 'maml'])
def test_unrolled_execution_strategies_give_the_same_update(learner):
  """Python loops over tasks and inner steps (the plain semantics) against the looped ones."""
  _assert_strategies_agree(learner, [('unroll', 'unroll', 0), ('vmap', 'scan', 0),
                                     ('map', 'unroll', 0)])


@pytest.mark.parametrize('learner', ['reptile', pytest.param('maml', marks=pytest.mark.slow)])
def test_partly_unrolled_inner_loop_gives_the_same_update(learner):
  """`execution.inner_unroll`: k inner steps per loop iteration (3 steps, k = 2 leaves a
  remainder), the same numbers as one step per iteration."""
  base = {'meta.learner': learner, 'meta.inner_steps': 3}
  (s1, m1), (s2, m2) = (_run(tiny_config(**base, **{'execution.inner_unroll': k}), steps=1)
                        for k in (1, 2))
  _assert_trees_close(s2.params, s1.params)
  for k in m1:
    np.testing.assert_allclose(m2[k], m1[k], rtol=2e-4, atol=1e-6)
  c = tiny_config(**base, **{'execution.inner_unroll': 2})   # and the knob reaches the loop
  model = build_model(c)
  state = init_train_state(c, model, jax.random.key(0))
  jaxpr = jax.make_jaxpr(make_train_step(c, model).__wrapped__)(state, random_batch(c, 0),
                                                                jax.random.key(0))
  assert 'unroll=2' in str(jaxpr)


def test_peeled_first_inner_step_gives_the_same_update():
  """`execution.inner_peel` (default on): the first inner step outside the scanned loop; the
  same numbers as every step inside it, and the knob reaches the loop."""
  base = {'meta.inner_steps': 3, 'execution.task_batching': 'vmap', 'execution.inner_loop': 'scan'}
  runs = {peel: _run(tiny_config(**base, **{'execution.inner_peel': peel}), steps=1)
          for peel in (True, False)}
  _assert_trees_close(runs[True][0].params, runs[False][0].params)
  for k in runs[False][1]:
    np.testing.assert_allclose(runs[True][1][k], runs[False][1][k], rtol=2e-4, atol=1e-6)
  lengths = {}
  for peel in (True, False):
    c = tiny_config(**base, **{'execution.inner_peel': peel})
    model = build_model(c)
    state = init_train_state(c, model, jax.random.key(0))
    jaxpr = jax.make_jaxpr(make_train_step(c, model).__wrapped__)(state, random_batch(c, 0),
                                                                  jax.random.key(0))
    lengths[peel] = str(jaxpr).count('length=2'), str(jaxpr).count('length=3')
  assert lengths[True][0] > lengths[False][0] and lengths[True][1] < lengths[False][1]


def test_mapped_encoders_equal_plain_vmap():
  """`execution.map_encoders` runs an encoder task by task under vmap: same numbers."""
  base = tiny_config(**{'execution.task_batching': 'vmap'})
  mapped = tiny_config(**{'execution.task_batching': 'vmap',
                          'execution.map_encoders': ('source', 'target')})
  (s1, m1), (s2, m2) = _run(base, steps=1), _run(mapped, steps=1)
  _assert_trees_close(s2.params, s1.params)
  np.testing.assert_allclose(m2['loss'], m1['loss'], rtol=1e-5)


def test_vmapped_tasks_equal_a_python_loop_over_tasks():
  """The mean of per-task gradients computed one task at a time, outside any batching."""
  from meta_align_jax.train_step import task_gradient
  c = tiny_config(**{'execution.task_batching': 'vmap'})
  model = build_model(c)
  params = model.init(jax.random.key(0))
  batch = random_batch(c, 3)
  tasks = {k: batch[k] for k in ('source', 'align')}
  rngs = jax.random.split(jax.random.key(0), c.task.tasks_per_device)
  fn = lambda p, t, r: task_gradient(c, model, p, t, r)
  got, _ = jax.jit(lambda p, t, r: over_tasks(fn, p, t, r, 'vmap'))(params, tasks, rngs)
  one_task = jax.jit(fn)   # compiled once for one task (op-by-op dispatch compiles every op)
  per_task = [one_task(params, jax.tree.map(lambda x: x[i], tasks), rngs[i])[0]
              for i in range(c.task.tasks_per_device)]
  want = jax.tree.map(lambda *g: sum(g) / len(g), *per_task)
  _assert_trees_close(got, want)
