"""Self-supervised target loss (ssl.py): augmentations, and a gradient on the target side only."""

import jax
import numpy as np
import pytest

from meta_align_jax import ssl, train_step, validation
from meta_align_jax.models import registry
from tests.tiny import tiny_config


def test_augment_is_a_per_example_circular_shift_plus_a_mean_filled_block():
  x = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
  shifted = np.asarray(ssl.augment(jax.random.key(0), x, mask_frac=0.0, noise_std=0.0))
  for xi, yi in zip(x, shifted):
    assert any(np.array_equal(np.roll(xi, s, axis=0), yi) for s in range(-2, 3))
  masked = np.asarray(ssl.augment(jax.random.key(1), x, mask_frac=0.3, noise_std=0.0,
                                  max_shift=0.0))
  for xi, yi in zip(x, masked):
    rows = np.flatnonzero((yi != xi).any(axis=1))
    assert len(rows) == 3 and np.all(np.diff(rows) == 1)   # one block of 3 rows
    np.testing.assert_allclose(yi[rows], xi.mean(), rtol=1e-6)


def test_ssl_gradient_reaches_the_target_encoder_only():
  c = tiny_config(**{'ssl.enabled': True})
  model = registry.build_model(c)
  state = train_step.init_train_state(c, model, jax.random.key(0))
  x = np.random.default_rng(0).normal(size=(6,) + tuple(c.target.input_shape)).astype(np.float32)
  grads, m = ssl.ssl_gradient(model, c.ssl, state.params, {'target_x': x}, jax.random.key(2))
  assert np.isfinite(float(m['ssl_loss'])) and float(m['ssl_loss']) > 0
  norm = lambda t: sum(float(np.abs(np.asarray(l)).sum()) for l in jax.tree.leaves(t))
  assert norm(grads['target']) > 0 and norm(grads['source']) == 0


def test_ssl_needs_the_alignment_batch():
  with pytest.raises(ValueError, match='config.ssl.enabled=True .* set config.align.enabled=True'):
    validation.check_config(tiny_config(**{'ssl.enabled': True, 'align.enabled': False}))


def test_alignment_weighted_zero_adds_no_gradient_and_logs_its_loss():
  from meta_align_jax import random_batch  # pylint: disable=g-import-not-at-top
  from meta_align_jax.meta import learners  # pylint: disable=g-import-not-at-top
  c = tiny_config(**{'align.weight': 0.0})
  off = tiny_config(**{'align.enabled': False})
  model = registry.build_model(c)
  params = train_step.init_train_state(c, model, jax.random.key(0)).params
  batch = random_batch(c, 3, num_devices=None)
  task = jax.tree.map(lambda a: a[0], batch)   # the first task of the batch
  grads, m = train_step.task_gradient(c, model, params, task, jax.random.key(1))
  ref, m_off = train_step.task_gradient(off, model, params, {'source': task['source']},
                                        jax.random.key(1))
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  _, m_align = learners.alignment_gradient(model, c.align, None, params, task['align'])
  np.testing.assert_allclose(float(m['align_loss']), float(m_align['align_loss']), rtol=1e-6)
  assert float(m['loss']) == float(m_off['loss'])
