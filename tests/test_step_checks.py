"""`make_train_step` and `make_eval_step`: learners and options update, pmap on fake CPU devices
equals one device, bad batches and configs raise before compiling, the core imports no
TensorFlow, evaluation episodes are checked against their ways.

(Split from `test_train_step.py`, the execution-strategy equivalences, so that the two halves run
on different xdist workers.)
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from meta_align_jax import (build_model, init_train_state, make_eval_step, make_train_step,
                            random_batch, random_episodes)
from tests.tiny import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_SLOW = pytest.mark.slow   # each option compiles a train step of its own (~10 s of CPU)


@pytest.mark.parametrize('overrides', [
    {'meta.learner': 'fomaml'}, {'meta.learner': 'protonet'},
    {'meta.learner': 'supervised', 'model.num_global_classes': 6},
    {'align.mode': 'reptile', 'meta.inner_opt': 'adam'},
    {'align.loss': 'infonce', 'align.kind': 'strong'},
    pytest.param({'task.meta_on': ('source', 'target')}, marks=_SLOW),
    pytest.param({'align.enabled': False}, marks=_SLOW),
    pytest.param({'meta.adapt': 'head', 'meta.zero_head': True}, marks=_SLOW),
    pytest.param({'model.compute_dtype': 'bfloat16'}, marks=_SLOW),
    pytest.param({'model.norm': 'task_batch'}, marks=_SLOW),
], ids=lambda o: ','.join(f'{k}={v}' for k, v in o.items()))
def test_learners_and_options_run_and_update_parameters(overrides):
  c = tiny_config(**overrides)
  model = build_model(c)
  state0 = init_train_state(c, model, jax.random.key(c.seed))
  before = jax.device_get(state0.params)   # (a donating step may reuse state0's buffers)
  state, metrics = make_train_step(c, model)(state0, random_batch(c, 0), jax.random.key(7))
  assert all(np.isfinite(float(v)) for v in metrics.values()), overrides
  moved = sum(float(np.abs(np.asarray(a) - np.asarray(b)).sum())
              for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)))
  assert moved > 0, overrides
  if c.align.enabled:
    assert 'align_loss' in metrics


@pytest.mark.parametrize('devices', [4, pytest.param(8, marks=pytest.mark.slow)])
def test_pmap_on_fake_cpu_devices_equals_one_device(devices):
  """8 global tasks: split over 4 devices (2 each) or 8 devices (1 each, slow: a second
  subprocess compiling both programs again) vs one device."""
  per_device = 8 // devices
  script = textwrap.dedent("""
      import json, jax, numpy as np
      from meta_align_jax import build_model, init_train_state, make_train_step, random_batch
      from meta_align_jax import replicate, unreplicate
      from tests.tiny import tiny_config
      D, P = {devices}, {per_device}
      assert jax.local_device_count() == D
      out = {}
      for mode, tasks in (('pmap', P), ('jit', 8)):
        c = tiny_config(**{'execution.parallel': mode, 'task.tasks_per_device': tasks})
        model = build_model(c)
        state = init_train_state(c, model, jax.random.key(0))
        glob = random_batch(c, 5, num_devices=None) if mode == 'jit' else None
        if mode == 'pmap':
          one = tiny_config(**{'execution.parallel': 'jit', 'task.tasks_per_device': 8})
          flat = random_batch(one, 5, num_devices=None)
          batch = jax.tree.map(lambda x: x.reshape((D, P) + x.shape[1:]), flat)
          state = replicate(state)
        else:
          batch = glob
        step = make_train_step(c, model)
        for _ in range(2):
          state, metrics = step(state, batch, jax.random.key(3))
        if mode == 'pmap':
          state = unreplicate(state)
        out[mode] = {'params': [np.asarray(x).tolist() for x in jax.tree.leaves(state.params)],
                     'loss': float(metrics['loss'])}
      print(json.dumps(out))
  """).replace('{devices}', str(devices)).replace('{per_device}', str(per_device))
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  # Fully optimized programs (tests/conftest.py turns most optimizations off elsewhere): after
  # two Adam steps, round-off in near-zero gradients of the unoptimized pmap and jit programs
  # grows past the tolerance.
  env.pop('JAX_DISABLE_MOST_OPTIMIZATIONS', None)
  proc = subprocess.run([sys.executable, '-c', script], env=env, cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(out['pmap']['loss'], out['jit']['loss'], rtol=1e-5)
  for a, b in zip(out['pmap']['params'], out['jit']['params']):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)


class _NoCompile:
  """Fails the test if anything is compiled while the context is active."""

  def __enter__(self):
    self.count = 0
    def listener(event, *args, **kwargs):
      if 'compil' in event:
        self.count += 1
    self._listener = listener
    jax.monitoring.register_event_duration_secs_listener(listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)


def test_noisy_labels_missing_a_class_are_accepted_when_clean_labels_cover_it():
  c = tiny_config()
  model = build_model(c)
  state = init_train_state(c, model, jax.random.key(0))
  batch = random_batch(c, 0)
  support = batch['source']['support']
  support['clean_y'] = support['y'].copy()
  support['y'] = np.zeros_like(support['y'])   # every label flipped to class 0
  _, metrics = make_train_step(c, model)(state, batch, jax.random.key(0))
  assert np.isfinite(float(metrics['loss']))


@pytest.mark.parametrize('mutate,match', [
    (lambda b: b['source']['support'].update(x=b['source']['support']['x'][:, :, :4]),
     r"batch\['source'\]\['support'\]\['x'\] has shape \(2, 3, 4, 8, 3\); expected \(2, 3, 8, 8, 3\)"),
    (lambda b: b['align'].update(y=b['align']['y'][:, :4]),
     r"batch\['align'\]\['y'\] has shape .* config.align.pairs=6"),
    (lambda b: b['source']['support'].update(y=np.zeros_like(b['source']['support']['y'])),
     r'config.task.ways=3 is larger than the 1 classes present'),
    (lambda b: b['source']['support'].update(y=b['source']['support']['y'] + 5),
     r'has label 7 but config.task.ways=3'),
    (lambda b: b.pop('align'), r"batch\['align'\]\['source_x'\] is missing"),
])
def test_bad_batches_raise_before_compiling(mutate, match):
  c = tiny_config()
  model = build_model(c)
  state = init_train_state(c, model, jax.random.key(0))
  step = make_train_step(c, model)
  batch = random_batch(c, 0)
  mutate(batch)
  with _NoCompile() as watch, pytest.raises(ValueError, match=match):
    step(state, batch, jax.random.key(0))
  assert watch.count == 0


@pytest.mark.parametrize('field,value,match', [
    ('source.encoder', 'vit', 'config.source.encoder'),
    ('meta.learner', 'anil', 'config.meta.learner'),
    ('align.pairs', 7, r'config.align.pairs=7 is not divisible by config.align.ways=3'),
    ('align.loss', 'infonce', "config.align.loss='infonce' needs config.align.kind='strong'"),
    ('execution.task_batching', 'pmap', 'config.execution.task_batching'),
    ('task.meta_on', ('audio',), 'config.task.meta_on'),
    ('task.ways', 1, 'config.task.ways=1'),
    ('execution.inner_unroll', 0, 'config.execution.inner_unroll'),
    ('execution.inner_peel', None, 'config.execution.inner_peel'),
])
def test_bad_configs_raise_naming_the_field(field, value, match):
  c = tiny_config(**{field: value})
  with pytest.raises(ValueError, match=match):
    model = build_model(c)
    make_train_step(c, model)


def test_core_imports_no_tensorflow_tfds_or_librosa():
  script = textwrap.dedent("""
      import sys, jax
      import meta_align_jax
      from meta_align_jax import build_model, init_train_state, make_train_step, random_batch
      from meta_align_jax import evaluate  # (train: tests/test_exported.py)
      from meta_align_jax.feeds import device_gather, exported, pipeline
      from tests.tiny import tiny_config
      c = tiny_config()
      m = build_model(c)
      s = init_train_state(c, m, jax.random.key(0))
      s, metrics = make_train_step(c, m)(s, random_batch(c), jax.random.key(1))
      bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'librosa')]
      print('IMPORTED', bad)
      assert not bad, bad
  """)
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_eval_step_scores_episodes_for_each_method():
  for method in ('finetune', 'proto'):
    c = tiny_config(**{'eval.method': method})
    model = build_model(c)
    params = model.init(jax.random.key(0))
    out = make_eval_step(c, model)(params, random_episodes(c, 4))
    assert out['accuracy'].shape == (4,)
    assert np.all((np.asarray(out['accuracy']) >= 0) & (np.asarray(out['accuracy']) <= 1))


def _eval_setup(method):
  """A 5-way config whose episodes have the shapes of 20-way 1-shot ones (5 ways x 4 shots)."""
  c5 = tiny_config(**{'eval.method': method, 'eval.ways': 5, 'eval.shots': 4, 'eval.queries': 4,
                      'eval.inner_steps': 1})
  c20 = tiny_config(**{'eval.method': method, 'eval.ways': 20, 'eval.shots': 1,
                       'eval.queries': 1, 'eval.inner_steps': 1})
  model = build_model(c5)
  return c5, c20, model, model.init(jax.random.key(0)), random_episodes(c20, 2)


def test_eval_step_refuses_episodes_with_more_classes_than_its_ways():
  """Issue 20: 20-way episodes scored as 5-way used to drop classes silently."""
  c5, _, model, params, episodes = _eval_setup('proto')
  assert episodes['support']['y'].shape == random_episodes(c5, 2)['support']['y'].shape
  with pytest.raises(ValueError, match=r'label 19 but config\.eval\.ways=5.*ways=20'):
    make_eval_step(c5, model)(params, episodes)
  device = jax.device_put(episodes)   # device arrays: checked at a signature's first call
  with pytest.raises(ValueError, match=r'config\.eval\.ways=5'):
    make_eval_step(c5, model)(params, device)
  with pytest.raises(ValueError, match=r'config\.eval\.ways=5'):
    make_eval_step(c5, model).lower(params, episodes)
  five = random_episodes(c5, 2)
  five['support']['y'][0, :4] = 1      # class 0 has no support example in episode 0
  with pytest.raises(ValueError, match=r'episode 0 has 4 classes but config\.eval\.ways=5'):
    make_eval_step(c5, model)(params, five)


def test_eval_step_prototypes_follow_explicit_ways():
  """`make_eval_step(..., ways=20)` scores 20-way episodes as `config.eval.ways=20` does."""
  c5, c20, model, params, episodes = _eval_setup('proto')
  got = make_eval_step(c5, model, ways=20)(params, episodes)
  want = make_eval_step(c20, model)(params, episodes)
  np.testing.assert_allclose(got['accuracy'], want['accuracy'])
  np.testing.assert_allclose(got['loss'], want['loss'], rtol=1e-6)
  assert got['accuracy'].shape == (2,)


def test_eval_step_refuses_a_head_smaller_than_its_ways():
  """Fine-tuning slices the head's first `ways` logits: a 5-output head cannot score 20 ways."""
  c5, c20, model, params, episodes = _eval_setup('finetune')
  assert params['head']['Dense_0']['kernel'].shape[-1] == 5
  with pytest.raises(ValueError, match=r"ways=20.*head has 5 outputs.*method='proto'"):
    make_eval_step(c5, model, ways=20)(params, episodes)
  with pytest.raises(ValueError, match=r'config\.eval\.ways=20.*head has 5 outputs'):
    make_eval_step(c20, model)(params, episodes)    # the config's ways, a 5-way checkpoint
