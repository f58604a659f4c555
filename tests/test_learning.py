"""Learning really happens: meta-training on a tiny few-shot problem beats a random init."""

import jax
import numpy as np
import pytest

from meta_align_jax import build_model, init_train_state, make_eval_step, make_train_step
from tests.tiny import tiny_config

NUM_CLASSES, TRAIN_CLASSES = 30, 20


def _class_templates(seed=0):
  """Each class: a colour (mean of channels 3..5). Channels 0..2 carry large class-free colour."""
  return np.random.default_rng(seed).normal(0, 1.5, size=(NUM_CLASSES, 3)).astype(np.float32)


def _examples(rng, templates, classes, n):
  """[N, n, 8, 8, 6]: a random init mixes the nuisance channels into every feature; a learned
  encoder must find the class channels and ignore the others."""
  shape = (len(classes), n, 8, 8, 3)
  nuisance = rng.normal(0, 3.0, size=shape[:2] + (1, 1, 3)) + rng.normal(0, 0.5, size=shape)
  signal = (templates[classes][:, None, None, None, :] + rng.normal(0, 0.3, size=shape[:2] + (1, 1, 3))
            + rng.normal(0, 0.5, size=shape))
  return np.concatenate([nuisance, signal], -1).astype(np.float32)


def _tasks(rng, templates, class_pool, num, ways, shots, queries):
  sup_x, sup_y, qry_x, qry_y = [], [], [], []
  for _ in range(num):
    classes = rng.choice(class_pool, ways, replace=False)
    x = _examples(rng, templates, classes, shots + queries)
    sup_x.append(x[:, :shots].reshape((-1,) + x.shape[2:]))
    qry_x.append(x[:, shots:].reshape((-1,) + x.shape[2:]))
    sup_y.append(np.repeat(np.arange(ways), shots))
    qry_y.append(np.repeat(np.arange(ways), queries))
  as_int = lambda v: np.stack(v).astype(np.int32)
  return {'support': {'x': np.stack(sup_x), 'y': as_int(sup_y)},
          'query': {'x': np.stack(qry_x), 'y': as_int(qry_y)}}


@pytest.mark.parametrize('learner,lr', [('protonet', 3e-3), ('reptile', 1e-2)])
def test_meta_training_beats_random_init_on_held_out_classes(learner, lr):
  c = tiny_config(**{'meta.learner': learner, 'align.enabled': False, 'optim.lr': lr,
                     'meta.zero_head': True,
                     'source.input_shape': (8, 8, 6), 'model.width': 8,
                     'task.ways': 5, 'task.shots': 1, 'task.queries': 3, 'task.tasks_per_device': 4,
                     'meta.inner_steps': 5, 'meta.inner_lr': 0.3,
                     'eval.ways': 5, 'eval.shots': 1, 'eval.queries': 3,
                     'eval.method': 'proto' if learner == 'protonet' else 'finetune',
                     'eval.inner_steps': 10, 'eval.inner_lr': 0.3})
  templates = _class_templates()
  model = build_model(c)
  state = init_train_state(c, model, jax.random.key(0))
  evaluate = make_eval_step(c, model, side='source')
  eval_tasks = _tasks(np.random.default_rng(123), templates,
                      np.arange(TRAIN_CLASSES, NUM_CLASSES), 100, 5, 1, 3)
  before = float(np.mean(evaluate(state.params, eval_tasks)['accuracy']))
  step = make_train_step(c, model)
  rng = np.random.default_rng(1)
  for _ in range(200):
    batch = {'source': _tasks(rng, templates, np.arange(TRAIN_CLASSES), 4, 5, 1, 3)}
    state, metrics = step(state, batch, jax.random.key(0))
  after = float(np.mean(evaluate(state.params, eval_tasks)['accuracy']))
  # Measured: protonet 0.25 -> 0.72, reptile 0.25 -> 0.68 (chance is 0.2).
  assert after > before + 0.25, (before, after)
  assert after > 0.5, (before, after)
