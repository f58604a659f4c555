"""Meta-learners against explicit references on a tiny linear model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from meta_align_jax import losses
from meta_align_jax.fast import inner as fast_inner
from meta_align_jax.fast import optim as fast_optim
from meta_align_jax.meta import inner, learners



@dataclasses.dataclass(frozen=True)
class LinearModel:
  """embed = x @ W (per side), logits = z @ H + b: the learners' model interface, tiny."""

  def embed(self, params, x, side):
    return x @ params[side]['w']

  def logits(self, params, z, head='head'):
    return z @ params[head]['w'] + params[head]['b']


def _params(seed=0, d=4, z=3, n=3):
  rng = np.random.default_rng(seed)
  return {'source': {'w': jnp.asarray(rng.normal(size=(d, z)), jnp.float32)},
          'target': {'w': jnp.asarray(rng.normal(size=(d, z)), jnp.float32)},
          'head': {'w': jnp.asarray(rng.normal(size=(z, n)) * 0.5, jnp.float32),
                   'b': jnp.zeros([n], jnp.float32)}}


def _task(seed=1, d=4, n=3, k=2, q=3):
  rng = np.random.default_rng(seed)
  def split(m):
    return {'x': jnp.asarray(rng.normal(size=(n * m, d)), jnp.float32),
            'y': jnp.asarray(np.repeat(np.arange(n), m), jnp.int32)}
  return {'support': split(k), 'query': split(q)}


def _inner(steps=3, lr=0.3, opt='sgd', keys=('source', 'head'), remat=False, unroll=False):
  return learners.InnerConfig(steps=steps, optimizer=inner.make_inner_optimizer(opt, lr),
                              keys=keys, unroll=unroll, remat=remat, zero_head=False)


def _ce(model, params, batch):
  return losses.cross_entropy(model.logits(params, model.embed(params, batch['x'], 'source')),
                              batch['y'])


def _unrolled_query_loss(model, params, task, steps, lr, keys):
  """The inner loop written out by hand: plain SGD on the support, then the query loss."""
  p = params
  for _ in range(steps):
    g = jax.grad(lambda q: _ce(model, q, task['support']))(p)
    p = {k: (jax.tree.map(lambda a, b: a - lr * b, p[k], g[k]) if k in keys else p[k]) for k in p}
  return _ce(model, p, task['query']), p


@pytest.mark.parametrize('unroll', [False, True])
def test_second_order_maml_equals_autodiff_of_unrolled_loop(unroll):
  model, params, task = LinearModel(), _params(), _task()
  got, metrics = learners.meta_gradient('maml', model, 'source', 3, _inner(unroll=unroll),
                                        params, task)
  want = jax.grad(lambda p: _unrolled_query_loss(model, p, task, 3, 0.3, ('source', 'head'))[0])(params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
  np.testing.assert_allclose(metrics['meta_loss'],
                             _unrolled_query_loss(model, params, task, 3, 0.3,
                                                  ('source', 'head'))[0], rtol=1e-5)


def test_remat_changes_nothing():
  model, params, task = LinearModel(), _params(), _task()
  a, _ = learners.meta_gradient('maml', model, 'source', 3, _inner(), params, task)
  b, _ = learners.meta_gradient('maml', model, 'source', 3, _inner(remat=True), params, task)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)


def test_first_order_maml_is_the_query_gradient_at_adapted_params_and_differs():
  model, params, task = LinearModel(), _params(), _task()
  fo, _ = learners.meta_gradient('fomaml', model, 'source', 3, _inner(), params, task)
  so, _ = learners.meta_gradient('maml', model, 'source', 3, _inner(), params, task)
  _, adapted = _unrolled_query_loss(model, params, task, 3, 0.3, ('source', 'head'))
  want = jax.grad(lambda p: _ce(model, p, task['query']))(adapted)
  for a, b in zip(jax.tree.leaves(fo), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
  diff = sum(float(jnp.abs(a - b).sum()) for a, b in zip(jax.tree.leaves(fo), jax.tree.leaves(so)))
  assert diff > 1e-3


def _np_ce_grads(w, h, b, x, y):
  """Hand-written gradient of mean softmax CE for logits = x @ w @ h + b."""
  z = x @ w
  logits = z @ h + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  d = p.copy()
  d[np.arange(len(y)), y] -= 1.0
  d /= len(y)
  return x.T @ (d @ h.T), z.T @ d, d.sum(0)


@pytest.mark.parametrize('opt,batch_size', [('sgd', 0), ('adam', 0), ('adam', 4)])
def test_reptile_update_equals_numpy_reference(opt, batch_size):
  model, params, task = LinearModel(), _params(), _task()
  steps, lr = 4, 0.1
  cfg = dataclasses.replace(_inner(steps, lr, opt), batch_size=batch_size)
  got, _ = learners.meta_gradient('reptile', model, 'source', 3, cfg, params, task)
  x = np.concatenate([np.asarray(task['support']['x']), np.asarray(task['query']['x'])])
  y = np.concatenate([np.asarray(task['support']['y']), np.asarray(task['query']['y'])])
  theta = [np.asarray(params['source']['w'], np.float64), np.asarray(params['head']['w'], np.float64),
           np.asarray(params['head']['b'], np.float64)]
  fast = [t.copy() for t in theta]
  v = [np.zeros_like(t) for t in theta]
  for t in range(1, steps + 1):
    # Minibatches cycle through the task's 15 examples: 0-3, 4-7, 8-11, 12-14 + 0.
    idx = (np.arange(batch_size) + (t - 1) * batch_size) % len(y) if batch_size else slice(None)
    grads = _np_ce_grads(*fast, x[idx], y[idx])
    for i, g in enumerate(grads):
      if opt == 'sgd':
        fast[i] = fast[i] - lr * g
      else:   # Adam with b1 = 0 (the reference's inner optimiser): m_hat = g
        v[i] = 0.999 * v[i] + 0.001 * g * g
        fast[i] = fast[i] - lr * g / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
  want = [a - b for a, b in zip(theta, fast)]
  np.testing.assert_allclose(got['source']['w'], want[0], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got['head']['w'], want[1], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got['head']['b'], want[2], rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(got['target']['w']).sum()) == 0.0   # not adapted: no meta-gradient


def test_head_only_adaptation_leaves_the_encoder_alone():
  model, params, task = LinearModel(), _params(), _task()
  g, _ = learners.meta_gradient('reptile', model, 'source', 3, _inner(keys=('head',)), params,
                                task)
  assert float(jnp.abs(g['source']['w']).sum()) == 0.0
  assert float(jnp.abs(g['head']['w']).sum()) > 0.0
  # MAML with a head-only inner loop still sends a meta-gradient into the encoder.
  g, _ = learners.meta_gradient('maml', model, 'source', 3, _inner(keys=('head',)), params, task)
  assert float(jnp.abs(g['source']['w']).sum()) > 0.0


def test_protonet_gradient_skips_the_head():
  model, params, task = LinearModel(), _params(), _task()
  g, m = learners.meta_gradient('protonet', model, 'source', 3, _inner(), params, task)
  assert float(jnp.abs(g['head']['w']).sum()) == 0.0
  assert float(jnp.abs(g['source']['w']).sum()) > 0.0
  assert 0.0 <= float(m['query_acc']) <= 1.0


def test_inner_loop_reduces_the_support_loss():
  model, params, task = LinearModel(), _params(), _task()
  for opt, lr in (('sgd', 1.0), ('adam', 0.1)):
    fast, losses_ = inner.adapt(lambda p, b: _ce(model, p, b), params, task['support'], steps=10,
                                optimizer=inner.make_inner_optimizer(opt, lr),
                                keys=('source', 'head'))
    assert losses_.shape == (10,)
    assert float(_ce(model, fast, task['support'])) < float(losses_[0]) * 0.7


def test_zero_head_starts_each_task_from_a_zero_classifier():
  model, params, task = LinearModel(), _params(), _task()
  fast, losses_ = inner.adapt(lambda p, b: _ce(model, p, b), params, task['support'], steps=1,
                              optimizer=inner.make_inner_optimizer('sgd', 0.0),
                              keys=('head',), zero_head=True)
  np.testing.assert_allclose(losses_[0], np.log(3), rtol=1e-5)   # uniform logits
  assert float(jnp.abs(fast['head']['w']).sum()) == 0.0


def test_bad_adapt_and_optimizer_names():
  with pytest.raises(ValueError, match='config.meta.adapt'):
    inner.resolve_adapt('encoder', 'source', ('source', 'target', 'head'))
  with pytest.raises(ValueError, match='config.meta.inner_opt'):
    inner.make_inner_optimizer('rmsprop', 0.1)
  assert inner.resolve_adapt('all', 'target', ('source', 'target', 'head')) == ('target', 'head')


def test_inner_adam_equals_optax_adam_with_b1_zero():
  """The inner Adam drops the first-moment buffer (b1 = 0 makes it the gradient): the same
  updates as optax.adam over many steps, zero gradients and large ones included, jitted and
  differentiated (second-order MAML goes through the update)."""
  rng = np.random.default_rng(0)
  params = {'a': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
            'b': jnp.asarray(rng.normal(size=(5,)), jnp.float32)}
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 10.0 ** rng.integers(-4, 3),
                                              jnp.float32), params) for _ in range(12)]
  grads[3] = jax.tree.map(jnp.zeros_like, params)
  ours, ref = fast_optim.adam_b1_zero(1e-2, b2=0.999), optax.adam(1e-2, b1=0.0, b2=0.999)

  @jax.jit
  def run(p0):
    out = []
    for opt in (ours, ref):
      p, s = p0, opt.init(p0)
      for g in grads:
        u, s = opt.update(jax.tree.map(lambda g, p: g * (1 + p), g, p), s, p)
        p = optax.apply_updates(p, u)
      out.append(p)
    return out

  got, want = run(params)
  for k in params:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)
  dg = jax.grad(lambda p: sum(jnp.sum(x ** 2) for x in jax.tree.leaves(run(p)[0])))(params)
  dw = jax.grad(lambda p: sum(jnp.sum(x ** 2) for x in jax.tree.leaves(run(p)[1])))(params)
  for k in params:
    np.testing.assert_allclose(dg[k], dw[k], rtol=1e-5, atol=1e-6)
  # No first-moment buffer: the state holds the count and one buffer per parameter.
  assert len(jax.tree.leaves(ours.init(params))) == 1 + len(jax.tree.leaves(params))


@dataclasses.dataclass(frozen=True)
class Bf16LinearModel(LinearModel):
  """A bfloat16 compute model: encoder weights cast at use (as Flax's `dtype=bfloat16`); the
  head stays float32, and `target` is used both cast and in float32 (it must not qualify)."""

  def embed(self, params, x, side):
    w = params[side]['w']
    z = (x.astype(jnp.bfloat16) @ w.astype(jnp.bfloat16)).astype(jnp.float32)
    return z + 1e-3 * jnp.sum(w) if side == 'target' else z


def test_castable_leaves_are_the_weights_only_ever_cast_narrower():
  def loss(p, b):
    m = Bf16LinearModel()
    return _ce(m, p, b) + jnp.mean(m.embed(p, b['x'], 'target'))
  params, task = _params(), _task()
  fast, frozen = inner.split(params, ('source', 'target', 'head'))
  got = fast_inner.castable_leaves(loss, frozen, fast, task['support'])
  names = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(fast)]
  assert dict(zip(names, got)) == {"['head']['b']": None, "['head']['w']": None,
                                   "['source']['w']": jnp.dtype(jnp.bfloat16),
                                   "['target']['w']": None}
  f32 = lambda p, b: _ce(LinearModel(), p, b)
  assert fast_inner.castable_leaves(f32, frozen, fast, task['support']) is None


@pytest.mark.parametrize('opt,batch_size,unroll', [('sgd', 0, False), ('adam', 4, False),
                                                   ('adam', 0, True)])
def test_carried_casts_change_no_value_and_no_derivative(opt, batch_size, unroll):
  """Carrying the bfloat16 copies of cast-only weights through the inner loop gives the same
  adapted parameters and losses, and the same second-order meta-gradient, as casting at use."""
  model, params, task = Bf16LinearModel(), _params(), _task(k=3)
  loss = lambda p, b: _ce(model, p, b)

  def run(p, carry):
    return fast_inner.adapt(loss, p, task['support'], steps=4, optimizer=inner.make_inner_optimizer(
        opt, 0.1 if opt == 'sgd' else 1e-2), keys=('source', 'head'), unroll=unroll,
                       batch_size=batch_size, carry_casts=carry)

  (a, la), (b, lb) = jax.jit(lambda p: run(p, True))(params), jax.jit(lambda p: run(p, False))(params)
  np.testing.assert_array_equal(la, lb)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert float(jnp.abs(a['source']['w'] - params['source']['w']).max()) > 1e-3
  meta = lambda p, carry: loss(run(p, carry)[0], task['query'])
  ga, gb = (jax.jit(jax.grad(lambda p, c=c: meta(p, c)))(params) for c in (True, False))
  for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  assert float(jnp.abs(ga['source']['w']).max()) > 0


def test_carried_casts_on_a_bfloat16_flax_encoder_change_nothing():
  """The library's own bfloat16 Conv-4: its conv kernels qualify, GroupNorm scales and biases
  (used in float32) do not, and adapting with the carried copies gives identical results."""
  from meta_align_jax import build_model, random_batch
  from tests.tiny import tiny_config
  c = tiny_config(**{'model.compute_dtype': 'bfloat16'})
  model = build_model(c)
  params = model.init(jax.random.key(0))
  task = jax.tree.map(lambda x: x[0], random_batch(c, 0)['source'])
  loss = learners.classifier_loss(model, 'source', c.task.ways)
  fast, frozen = inner.split(params, ('source', 'head'))
  kinds = {jax.tree_util.keystr(k): d for (k, _), d in zip(
      jax.tree_util.tree_leaves_with_path(fast),
      fast_inner.castable_leaves(loss, frozen, fast, task['support']))}
  assert all(d == jnp.bfloat16 for k, d in kinds.items() if k.endswith("['kernel']") and 'conv' in k)
  assert all(d is None for k, d in kinds.items() if 'GroupNorm' in k)
  run = lambda carry: jax.jit(lambda p: fast_inner.adapt(
      loss, p, task['support'], steps=3, optimizer=inner.make_inner_optimizer('adam', 1e-2),
      keys=('source', 'head'), carry_casts=carry))(params)
  (a, la), (b, lb) = run(True), run(False)
  np.testing.assert_array_equal(la, lb)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize('opt,batch_size,steps,unroll', [('sgd', 0, 4, False), ('adam', 4, 4, 2),
                                                         ('adam', 0, 1, False)])
def test_peeled_first_step_changes_no_value_and_no_derivative(opt, batch_size, steps, unroll):
  """The first inner step outside the scan gives the same adapted parameters, losses and
  second-order meta-gradient as all steps inside it, for a batch of tasks under vmap too."""
  model, params, task = LinearModel(), _params(), _task(k=3)
  loss = lambda p, b: _ce(model, p, b)
  tasks = [_task(seed=s, k=3) for s in range(1, 4)]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *tasks)

  def run(p, support, peel):
    return fast_inner.adapt(loss, p, support, steps=steps, optimizer=inner.make_inner_optimizer(
        opt, 0.1 if opt == 'sgd' else 1e-2), keys=('source', 'head'), unroll=unroll,
                       batch_size=batch_size, peel_first=peel)

  def meta(p, t, peel):
    return loss(run(p, t['support'], peel)[0], t['query'])

  for peel in (True, False):   # vmapped over tasks with shared parameters, as in the step
    fast, losses_ = jax.jit(jax.vmap(lambda t, peel=peel: run(params, t['support'], peel)))(
        stacked)
    grads = jax.jit(jax.vmap(jax.grad(lambda p, t, peel=peel: meta(p, t, peel)),
                             in_axes=(None, 0)))(params, stacked)
    if peel:
      want = (fast, losses_, grads)
  assert losses_.shape == want[1].shape == (3, steps)
  for x, y in zip(jax.tree.leaves(want), jax.tree.leaves((fast, losses_, grads))):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  # ... and the same as the plain inner loop of meta/inner.py.
  plain = lambda p, s: inner.adapt(loss, p, s, steps=steps, optimizer=inner.make_inner_optimizer(
      opt, 0.1 if opt == 'sgd' else 1e-2), keys=('source', 'head'), unroll=unroll,
                                    batch_size=batch_size)
  fast_p, losses_p = jax.jit(jax.vmap(lambda t: plain(params, t['support'])))(stacked)
  grads_p = jax.jit(jax.vmap(jax.grad(lambda p, t: loss(plain(p, t['support'])[0], t['query'])),
                             in_axes=(None, 0)))(params, stacked)
  for x, y in zip(jax.tree.leaves(want), jax.tree.leaves((fast_p, losses_p, grads_p))):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  one_task = jax.jit(lambda p, support: run(p, support, True))   # compiled once, not per task
  for t, i in zip(tasks, range(3)):   # vmap == one task at a time
    one = one_task(params, t['support'])
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves((fast, losses_))):
      np.testing.assert_allclose(x, y[i], rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(want[0]['source']['w'] - params['source']['w']).max()) > 1e-3


def test_peeled_first_step_reads_shared_weights_under_vmap():
  """Under vmap over tasks the peeled step's products take the one unbatched weight matrix
  (a plain matmul over all tasks' rows); inside the scan they are batched per task."""
  model, params, task = LinearModel(), _params(), _task(k=3)
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *(_task(seed=s, k=3) for s in range(1, 4)))
  loss = lambda p, b: _ce(model, p, b)

  def weight_products(peel):
    jaxpr = jax.make_jaxpr(jax.vmap(lambda t: fast_inner.adapt(
        loss, params, t['support'], steps=3, optimizer=inner.make_inner_optimizer('adam', 1e-2),
        keys=('source', 'head'), peel_first=peel)[0]))(stacked).jaxpr
    top = [e for e in jaxpr.eqns if e.primitive.name == 'dot_general']
    unbatched = [e for e in top if e.invars[0].aval.shape[0] == 3   # all tasks' rows
                 and e.invars[1].aval.shape == params['source']['w'].shape]   # one W
    scans = [e for e in jaxpr.eqns if e.primitive.name == 'scan']
    return unbatched, [s.params['length'] for s in scans]

  shared, lengths = weight_products(True)
  assert shared and lengths == [2]
  shared, lengths = weight_products(False)
  assert not shared and lengths == [3]
