"""Encoders: output shapes and dtypes, padding masks, registry errors."""

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest

from meta_align_jax import build_model
from meta_align_jax.fast import pooling
from meta_align_jax.models import image, layers, registry, sequence
from tests.tiny import tiny_config

IMAGE = [('conv4', (16, 16, 3)), ('resnet12', (16, 16, 3)), ('resnet18', (16, 16, 3)),
         ('resnet18', (64, 64, 3))]
SEQ = [('mel_cnn', 'audio', (12, 10)), ('temporal_conv', 'speech', (12, 10)),
       ('lstm', 'text', (9,)), ('bilstm', 'text', (9,)), ('transformer', 'text', (9,)),
       ('bilstm', 'text', (9, 7)), ('lstm', 'audio', (12, 10))]


def _config(encoder, modality, shape, dtype):
  c = tiny_config()
  c.target.encoder, c.target.modality, c.target.input_shape = encoder, modality, shape
  c.model.compute_dtype = dtype
  return c


def _input(shape, modality, rng):
  if modality == 'text' and len(shape) == 1:
    return jnp.asarray(rng.integers(1, 30, size=(2,) + shape), jnp.int32)
  return jnp.asarray(rng.random((2,) + shape), jnp.float32)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('encoder,modality,shape',
                         [(e, 'image', s) for e, s in IMAGE] + SEQ)
def test_encoder_shapes_and_dtypes(encoder, modality, shape, dtype):
  # Abstract evaluation: every shape and dtype, no compilation (ResNets compile slowly on CPU).
  c = _config(encoder, modality, shape, dtype)
  model = build_model(c)
  params = jax.eval_shape(model.init, jax.random.key(0))
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32   # parameters stay float32 whatever the compute dtype
  x = _input(shape, modality, np.random.default_rng(0))
  z = jax.eval_shape(lambda p, x: model.embed(p, x, 'target'), params, x)
  assert z.shape == (2, c.model.z_dim) and z.dtype == jnp.float32
  logits = jax.eval_shape(model.logits, params, z)
  assert logits.shape == (2, c.task.ways)
  feats = jax.eval_shape(model.target.encoder.apply, {'params': params['target']['encoder']}, x)
  assert feats.ndim == 2
  assert feats.dtype == (jnp.float32 if dtype == 'float32' else jnp.bfloat16)


@pytest.mark.parametrize('encoder,modality,shape', [('conv4', 'image', (16, 16, 3))] + SEQ[:3])
def test_encoder_outputs_are_finite_and_input_dependent(encoder, modality, shape):
  model = build_model(_config(encoder, modality, shape, 'float32'))
  params = model.init(jax.random.key(0))
  embed = jax.jit(model.embed, static_argnums=2)
  z1 = np.asarray(embed(params, _input(shape, modality, np.random.default_rng(0)), 'target'))
  z2 = np.asarray(embed(params, _input(shape, modality, np.random.default_rng(1)), 'target'))
  assert np.all(np.isfinite(z1)) and not np.allclose(z1, z2)


@pytest.mark.parametrize('module', [
    sequence.RNNEncoder(vocab_size=40, hidden=8, bidirectional=False),
    sequence.RNNEncoder(vocab_size=40, hidden=8, bidirectional=True, pool='mean'),
    sequence.TransformerEncoder(vocab_size=40, hidden=8, layers=1, heads=2),
    sequence.TemporalConv(width=4),
], ids=['lstm', 'bilstm-mean', 'transformer', 'temporal_conv'])
def test_padded_positions_change_nothing(module):
  rng = np.random.default_rng(0)
  float_input = isinstance(module, sequence.TemporalConv)
  length = 10
  mask = np.arange(length)[None, :] < np.array([[4], [7], [10]])
  if float_input:
    x = rng.normal(size=(3, length, 5)).astype(np.float32)
    junk = rng.normal(size=x.shape).astype(np.float32) * 100
    x_junk = np.where(mask[..., None], x, junk)
  else:
    x = rng.integers(2, 40, size=(3, length)).astype(np.int32)
    x_junk = np.where(mask, x, rng.integers(2, 40, size=x.shape)).astype(np.int32)
  params = module.init(jax.random.key(0), x, jnp.asarray(mask))
  a = module.apply(params, x, jnp.asarray(mask))
  b = module.apply(params, x_junk, jnp.asarray(mask))
  np.testing.assert_allclose(a, b, atol=1e-5)
  # Implicit mask: zero padding, and more of it, changes nothing either.
  x0 = np.where(mask[..., None] if float_input else mask, x, 0).astype(x.dtype)
  pad = ((0, 0), (0, 5)) + (((0, 0),) if float_input else ())
  c = module.apply(params, x0)
  np.testing.assert_allclose(a, c, atol=1e-5)
  if not isinstance(module, sequence.TransformerEncoder):   # positions table is length-specific
    d = module.apply(params, np.pad(x0, pad))
    np.testing.assert_allclose(a, d, atol=1e-5)
  # And a real token does change the output (the mask is not hiding everything).
  e = module.apply(params, x, jnp.asarray(np.ones_like(mask)))
  assert not np.allclose(a[0], e[0], atol=1e-4)


def test_task_batch_norm_uses_this_calls_statistics_and_mask():
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 2.0, size=(6, 4, 4, 5)).astype(np.float32)
  bn = layers.TaskBatchNorm()
  p = bn.init(jax.random.key(0), x)
  y = np.asarray(bn.apply(p, x))
  np.testing.assert_allclose(y.mean((0, 1, 2)), 0, atol=1e-4)
  np.testing.assert_allclose(y.std((0, 1, 2)), 1, atol=1e-3)
  mask = np.array([1, 1, 1, 0, 0, 0], bool)
  y_masked = np.asarray(bn.apply(p, x, mask))
  y_first = np.asarray(bn.apply(p, x[:3]))
  np.testing.assert_allclose(y_masked[:3], y_first, atol=1e-4)


def test_group_norm_picks_a_divisor():
  assert layers._largest_divisor_at_most(12, 8) == 6
  assert layers._largest_divisor_at_most(7, 8) == 7
  # A 1x1 map with few channels must not normalise to zero (one channel per group would).
  norm = layers.Norm('group')
  x = jnp.arange(4.0).reshape(1, 1, 1, 4)
  assert np.abs(np.asarray(norm.apply(norm.init(jax.random.key(0), x), x))).sum() > 1
  out = image.Conv4(width=6, blocks=1).init_with_output(jax.random.key(0),
                                                        jnp.ones((1, 8, 8, 3)))[0]
  assert out.shape == (1, 6)


@pytest.mark.parametrize('field,value,match', [
    ('source.encoder', 'resnet99', r'config\.source\.encoder=.resnet99. is not a known encoder'),
    ('target.encoder', 'conv4', r"config\.target\.encoder='conv4' does not encode 'audio'"),
    ('source.input_shape', (8, 8), r'config\.source\.input_shape=\(8, 8\) has rank 2'),
    ('model.norm', 'batch', r'config\.model\.norm'),
    ('model.compute_dtype', 'float16', r'config\.model\.compute_dtype'),
    ('target.modality', 'video', r'config\.target\.modality'),
])
def test_bad_model_config_names_the_field(field, value, match):
  c = tiny_config(**{field: value})
  with pytest.raises(ValueError, match=match):
    build_model(c)


def test_registry_extension():
  registry.register_encoder('tiny_conv', registry.EncoderSpec(
      lambda m, dt: image.Conv4(m.width, m.norm, dt, blocks=1), ('image',), 3))
  try:
    c = tiny_config(**{'source.encoder': 'tiny_conv'})
    model = build_model(c)
    params = model.init(jax.random.key(0))
    assert 'conv1' not in params['source']['encoder']
  finally:
    del registry.ENCODERS['tiny_conv']


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (2, 7, 9, 4), (1, 5, 1, 2)])
@pytest.mark.parametrize('ceil', [False, True])
def test_reshape_max_pool_equals_flax_max_pool(shape, ceil):
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  want = nn.max_pool(x, (2, 2), (2, 2), padding='SAME' if ceil else 'VALID')
  got = layers.max_pool_2x2(x, ceil=ceil)
  np.testing.assert_array_equal(got, want)
  # No ties in random normals: the gradients agree exactly too.
  loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)))
  np.testing.assert_allclose(
      jax.grad(loss(lambda x: layers.max_pool_2x2(x, ceil=ceil)))(x),
      jax.grad(loss(lambda x: nn.max_pool(x, (2, 2), (2, 2),
                                          padding='SAME' if ceil else 'VALID')))(x), rtol=1e-6)


def test_max_pool_gradient_goes_to_one_entry_per_window_even_with_ties():
  x = jnp.zeros((1, 4, 6, 2), jnp.float32)   # all ties, as after a ReLU
  g = jax.jit(jax.grad(lambda x: jnp.sum(layers.max_pool_2x2(x) * 3.0)))(x)
  windows = np.asarray(g).reshape(1, 2, 2, 3, 2, 2).sum(axis=(2, 4))
  np.testing.assert_array_equal(windows, 3.0)              # all of it, once per window
  assert np.count_nonzero(np.asarray(g)) == 2 * 3 * 2


def test_max_pool_second_order_gradient_matches_flax():
  """Second-order MAML differentiates the pool's backward pass."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6, 6, 3)), jnp.float32)

  def outer(pool):
    def inner_loss(x):
      return jnp.sum(jnp.sin(pool(x)) ** 2)
    return jax.grad(lambda x: jnp.sum(jax.grad(inner_loss)(x) * x))(x)

  np.testing.assert_allclose(outer(layers.max_pool_2x2),
                             outer(lambda x: nn.max_pool(x, (2, 2), (2, 2))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (2, 7, 9, 4)])
def test_relu_max_pool_equals_relu_then_pool_with_ties(shape):
  """The fused op: same values, first and second derivatives as ReLU then max_pool_2x2, also
  with ties (bfloat16-like rounding to a coarse grid, zeros and negative windows)."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(np.round(rng.normal(size=shape) * 2) / 2, jnp.float32)   # many exact ties
  x = x.at[0, :2, :2].set(-1.0)                                            # a window all < 0
  two_ops = lambda x: layers.max_pool_2x2(jax.nn.relu(x))
  np.testing.assert_array_equal(layers.relu_max_pool_2x2(x), two_ops(x))
  loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)) * jnp.arange(1.0, 1.0 + f(x).size).reshape(
      f(x).shape))
  np.testing.assert_array_equal(jax.grad(loss(layers.relu_max_pool_2x2))(x),
                                jax.grad(loss(two_ops))(x))

  def outer(pool):
    return jax.grad(lambda x: jnp.sum(jax.grad(loss(pool))(x) * jnp.cos(x)))(x)

  np.testing.assert_allclose(outer(layers.relu_max_pool_2x2), outer(two_ops), rtol=1e-6)
  # The backward pass keeps no full-resolution input: its residuals are the index and output.
  _, res = pooling._relu_pool_even_fwd(x[:, :shape[1] // 2 * 2, :shape[2] // 2 * 2])
  assert res[0].dtype == jnp.int8 and res[0].shape == res[1].shape


@pytest.mark.parametrize('shape', [(2, 8, 6, 3), (1, 12, 12, 2), (2, 7, 6, 3), (1, 6, 9, 2)])
def test_stem_relu_max_pool_equals_relu_then_flax_pool_with_ties(shape):
  """ReLU + 3x3 stride-2 SAME max-pool (the ResNet stem) as one op: same values, first and
  second derivatives as the two ops, with ties, all-negative windows and the SAME border;
  odd sizes take the two ops."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(np.round(rng.normal(size=shape) * 2) / 2, jnp.float32)   # many exact ties
  x = x.at[0, :3, :3].set(-1.0)                                            # a window all < 0
  two_ops = lambda x: nn.max_pool(jax.nn.relu(x), (3, 3), (2, 2), padding='SAME')
  np.testing.assert_array_equal(layers.relu_max_pool_3x3_s2(x), two_ops(x))
  loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)) * jnp.arange(1.0, 1.0 + f(x).size).reshape(
      f(x).shape))
  # Overlapping windows add in another order: equal up to float rounding.
  np.testing.assert_allclose(jax.grad(loss(layers.relu_max_pool_3x3_s2))(x),
                             jax.grad(loss(two_ops))(x), rtol=1e-6, atol=1e-6)
  outer = lambda pool: jax.grad(lambda x: jnp.sum(jax.grad(loss(pool))(x) * jnp.cos(x)))(x)
  np.testing.assert_allclose(outer(layers.relu_max_pool_3x3_s2), outer(two_ops), rtol=1e-5,
                             atol=1e-5)
  vm = jax.vmap(jax.grad(loss(layers.relu_max_pool_3x3_s2)))(jnp.stack([x, -x]))
  np.testing.assert_allclose(vm[1], jax.grad(loss(layers.relu_max_pool_3x3_s2))(-x), rtol=1e-6,
                             atol=1e-6)
  if shape[1] % 2 == 0 and shape[2] % 2 == 0:   # the custom rule: index + output, no input
    _, (first, y) = pooling._relu_pool_3s2_fwd(x)
    assert first.dtype == jnp.int8 and first.shape == y.shape
