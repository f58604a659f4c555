"""`config.model.shared_encoder`: one Conv-4 for both modalities behind per-modality stems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_align_jax import (build_model, checkpoint, init_train_state, make_eval_step,
                            make_train_step, random_batch, random_episodes)
from meta_align_jax.meta import inner
from meta_align_jax.train_step import task_gradient
from tests.tiny import tiny_config


def shared_config(**overrides):
  return tiny_config(**{'target.encoder': 'mel_cnn', 'target.input_shape': (8, 6),
                        'model.shared_encoder': True, **overrides})


def _abs_sum(tree):
  return sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(tree))


def test_both_modalities_go_through_the_same_shared_parameters():
  c = shared_config()
  model = build_model(c)
  params = model.init(jax.random.key(0))
  assert set(params) == {'source', 'target', 'shared', 'head'}
  assert set(params['source']['stem']) == {'conv0', 'norm0'}
  assert params['source']['stem']['conv0']['kernel'].shape[2] == 3   # RGB
  assert params['target']['stem']['conv0']['kernel'].shape[2] == 1   # spectrogram channel
  assert set(params['shared']['encoder']) == {'conv1', 'conv2', 'conv3', 'norm1', 'norm2', 'norm3'}
  xs = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  xt = jax.random.normal(jax.random.key(2), (4, 8, 6))
  # embed == shared tower applied to the side's stem output.
  h = model.target.apply({'params': params['target']}, xt)
  np.testing.assert_allclose(model.embed(params, xt, 'target'),
                             model.shared.apply({'params': params['shared']}, h), rtol=1e-6)
  # Each side's embedding depends on its own stem and the shared part, never the other stem.
  for side, x, other in (('source', xs, 'target'), ('target', xt, 'source')):
    g = jax.grad(lambda p: (model.embed(p, x, side) ** 2).sum())(params)
    assert _abs_sum(g[side]) > 0 and _abs_sum(g['shared']) > 0, side
    assert _abs_sum(g[other]) == 0 and _abs_sum(g['head']) == 0, side
  # Changing the shared parameters changes both modalities' embeddings.
  moved = jax.tree.map(lambda x: x * 1.5, params['shared'])
  for side, x in (('source', xs), ('target', xt)):
    assert not np.allclose(model.embed(params, x, side),
                           model.embed({**params, 'shared': moved}, x, side))


def test_adapt_all_includes_the_shared_encoder():
  groups = ('source', 'target', 'shared', 'head')
  assert inner.resolve_adapt('all', 'source', groups) == ('source', 'shared', 'head')
  assert inner.resolve_adapt('all', 'target', groups) == ('target', 'shared', 'head')
  assert inner.resolve_adapt('all', 'target', ('source', 'target', 'head')) == ('target', 'head')


def test_meta_gradient_adapts_source_stem_and_shared_encoder_alignment_reaches_both_stems():
  c = shared_config(**{'align.enabled': False})
  model = build_model(c)
  params = model.init(jax.random.key(0))
  batch = random_batch(c, 0)
  one = lambda t: jax.tree.map(lambda x: x[0], t)
  g, _ = task_gradient(c, model, params, {'source': one(batch['source'])}, None)
  assert _abs_sum(g['source']) > 0 and _abs_sum(g['shared']) > 0 and _abs_sum(g['head']) > 0
  assert _abs_sum(g['target']) == 0      # source tasks never touch the target stem
  # Alignment alone (inner lr 0: the Reptile difference is exactly zero) moves both stems and Z.
  c = shared_config(**{'meta.inner_lr': 0.0})
  batch = random_batch(c, 0)
  g, _ = task_gradient(c, model, params, {'source': one(batch['source']),
                                          'align': one(batch['align'])}, None)
  assert _abs_sum(g['source']) > 0 and _abs_sum(g['target']) > 0 and _abs_sum(g['shared']) > 0
  assert _abs_sum(g['head']) == 0


def _steps(config, steps=2):
  model = build_model(config)
  state = init_train_state(config, model, jax.random.key(config.seed))
  step = make_train_step(config, model)
  for i in range(steps):
    state, metrics = step(state, random_batch(config, i), jax.random.key(7))
  return state, metrics


def test_mapped_shared_encoder_equals_vmapped_and_training_moves_every_group():
  (s1, m1) = _steps(shared_config())
  (s2, m2) = _steps(shared_config(**{'execution.map_encoders': ('source', 'target')}))
  np.testing.assert_allclose(m2['loss'], m1['loss'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
  init = build_model(shared_config()).init(jax.random.key(0))
  for group in ('source', 'target', 'shared', 'head'):
    assert _abs_sum(jax.tree.map(jnp.subtract, s1.params[group], init[group])) > 0, group


def test_evaluation_fine_tunes_the_shared_encoder_with_adapt_all():
  c = shared_config(**{'eval.inner_steps': 3, 'eval.inner_lr': 0.5})
  model = build_model(c)
  params = model.init(jax.random.key(0))
  episodes = random_episodes(c, 3, 4)
  all_groups = make_eval_step(c, model)(params, episodes)
  no_shared = shared_config(**{'eval.inner_steps': 3, 'eval.inner_lr': 0.5,
                               'eval.adapt': 'target,head'})
  without = make_eval_step(no_shared, model)(params, episodes)
  assert np.all(np.isfinite(all_groups['loss']))
  assert not np.allclose(all_groups['loss'], without['loss'])


@pytest.mark.parametrize('side,encoder,shape', [('target', 'temporal_conv', (6, 5)),
                                                ('source', 'resnet18', (8, 8, 3))])
def test_unsupported_encoders_are_refused_naming_the_field(side, encoder, shape):
  c = shared_config(**{f'{side}.encoder': encoder, f'{side}.input_shape': shape})
  with pytest.raises(ValueError, match=rf'config\.model\.shared_encoder=True with config\.{side}'
                                       rf"\.encoder='{encoder}'"):
    build_model(c)


def test_checkpoints_written_before_the_field_existed_stay_compatible():
  old = tiny_config()
  del old.model['shared_encoder']
  assert checkpoint.config_differences(old, tiny_config(), checkpoint.SHAPE_FIELDS) == []
  assert checkpoint.config_differences(old, shared_config(), ('model.shared_encoder',)) == [
      ('model.shared_encoder', False, True)]
