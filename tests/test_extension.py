"""Extension points: a learner or a loss is one function and its decorator; the execution is
resolved once per model and handed to the steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_align_jax import (build_model, init_train_state, losses, make_eval_step,
                            make_train_step, random_batch, random_episodes, register_learner,
                            register_loss, validation)
from meta_align_jax.fast import execution as execution_lib
from meta_align_jax.meta import learners
from tests.tiny import tiny_config


@pytest.fixture
def toy_learner():
  @register_learner('toy_query_ce')
  def toy(model, side, ways, inner_cfg, params, task):   # no inner loop: plain query CE
    del inner_cfg
    def loss(p):
      logits = model.logits(p, model.embed(p, task['query']['x'], side))[:, :ways]
      return losses.cross_entropy(logits, task['query']['y'])
    value, grads = jax.value_and_grad(loss)(params)
    return grads, {'meta_loss': value}
  yield toy
  learners.LEARNERS.unregister('toy_query_ce')


@pytest.fixture
def toy_loss():
  @register_loss('toy_proto_l2')
  def toy(source_emb, target_emb, labels, *, num_classes, margin, temperature, target_labels):
    del margin, temperature, target_labels
    ps, _ = losses.class_prototypes(source_emb, labels, num_classes)
    pt, _ = losses.class_prototypes(target_emb, labels, num_classes)
    return jnp.mean(jnp.sum((ps - pt) ** 2, -1))
  yield toy
  losses.ALIGN_LOSSES.unregister('toy_proto_l2')


def test_unknown_learner_and_loss_names_list_the_registered_ones():
  with pytest.raises(ValueError, match=r"config\.meta\.learner='toy_query_ce'.*'reptile'"):
    validation.check_config(tiny_config(**{'meta.learner': 'toy_query_ce'}))
  with pytest.raises(ValueError, match=r"config\.align\.loss='toy_proto_l2'.*'cosine'"):
    validation.check_config(tiny_config(**{'align.loss': 'toy_proto_l2'}))


def test_a_registered_learner_and_loss_validate_and_train(toy_learner, toy_loss):
  c = tiny_config(**{'meta.learner': 'toy_query_ce', 'align.loss': 'toy_proto_l2'})
  validation.check_config(c)
  model = build_model(c)
  state = init_train_state(c, model, jax.random.key(0))
  batch = random_batch(c, 0)
  new, metrics = make_train_step(c, model)(state, batch, jax.random.key(1))
  assert np.isfinite(float(metrics['loss']))
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.params, state.params)
  assert moved['head']['Dense_0']['kernel'] > 0 and moved['target']['proj']['kernel'] > 0
  # The step's alignment loss is the registered function's value, averaged over tasks.
  one = lambda t: jax.tree.map(lambda x: x[t], batch['align'])
  want = np.mean([float(toy_loss(model.embed(state.params, one(t)['source_x'], 'source'),
                                 model.embed(state.params, one(t)['target_x'], 'target'),
                                 one(t)['y'], num_classes=c.align.ways, margin=0.0,
                                 temperature=1.0, target_labels=None))
                  for t in range(c.task.tasks_per_device)])
  np.testing.assert_allclose(float(metrics['align_loss']), want, rtol=1e-5)


def test_execution_is_resolved_once_per_model(monkeypatch):
  calls = []
  resolve = execution_lib.resolve
  monkeypatch.setattr(execution_lib, 'resolve', lambda *a, **k: calls.append(1) or resolve(*a, **k))
  c = tiny_config()
  model = build_model(c)
  state = init_train_state(c, model, jax.random.key(0))
  make_train_step(c, model)(state, random_batch(c, 0), jax.random.key(1))
  make_eval_step(c, model)(state.params, random_episodes(c, 2))
  assert len(calls) == 1
  assert model.execution.task_batching == 'vmap' and model.execution.inner_loop == 'scan'
  other = tiny_config(**{'execution.task_batching': 'map'})   # another config: resolved anew
  make_train_step(other, model)
  assert len(calls) == 2


def test_default_execution_on_cpu_is_the_plain_path():
  from configs import default
  ex = execution_lib.resolve(default.get_config(), backend='cpu')
  assert (ex.task_batching, ex.inner_loop, ex.conv_impl('source'), ex.conv_impl('target'),
          ex.fast_inner) == ('unroll', 'unroll', 'xla', 'xla', False)
  assert build_model(default.get_config()).execution == execution_lib.resolve(default.get_config())
