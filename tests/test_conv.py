"""`patch_conv` (convolution as patches @ kernel) equals XLA's convolution, and so does the step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from meta_align_jax.fast.execution import resolve_conv
from meta_align_jax.fast.patch_conv import patch_conv
from tests.test_train_step import _assert_trees_close, _run
from tests.tiny import tiny_config

# (input shape, kernel shape, strides, padding)
CASES = [
    ((2, 9, 9, 3), (3, 3, 3, 5), (1, 1), 'SAME'),
    ((2, 9, 8, 4), (3, 3, 4, 6), (2, 2), 'SAME'),       # odd/even sizes, stride 2
    ((1, 16, 16, 3), (7, 7, 3, 4), (2, 2), 'SAME'),     # the ResNet stem
    ((2, 7, 7, 4), (1, 1, 4, 8), (2, 2), 'SAME'),       # projection shortcut
    ((2, 8, 8, 2), (3, 3, 2, 3), (1, 1), 'VALID'),
    ((2, 8, 8, 2), (3, 3, 2, 3), (1, 2), [(2, 0), (1, 1)]),
    ((3, 11, 5), (5, 5, 4), (1,), 'SAME'),              # 1-D, as TemporalConv
    # Strided, few channels: computed on 2x2 / 3x3 blocks folded into channels.
    ((2, 11, 13, 3), (5, 5, 3, 4), (2, 2), 'SAME'),
    ((1, 14, 13, 2), (5, 4, 2, 3), (3, 3), 'VALID'),
    ((2, 10, 9, 3), (3, 3, 3, 4), (2, 2), [(0, 2), (1, 0)]),
]
DN = {4: ('NHWC', 'HWIO', 'NHWC'), 3: ('NWC', 'WIO', 'NWC')}


@pytest.mark.parametrize('xs,ks,strides,padding', CASES)
def test_patch_conv_equals_lax_conv_forward_and_gradients(xs, ks, strides, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=xs), jnp.float32)
  k = jnp.asarray(rng.normal(size=ks), jnp.float32)
  dn = lax.conv_dimension_numbers(xs, ks, DN[len(xs)])
  ref = lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=dn,
                                              precision='highest')
  got = lambda x, k: patch_conv(x, k, strides, padding, dimension_numbers=dn,
                                precision='highest')
  np.testing.assert_allclose(got(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
  for g_got, g_ref in zip(jax.grad(loss(got), (0, 1))(x, k), jax.grad(loss(ref), (0, 1))(x, k)):
    np.testing.assert_allclose(g_got, g_ref, rtol=1e-4, atol=1e-4)


def test_vmapped_per_task_kernels_equal_a_loop_of_convolutions():
  """Per-task weights under vmap: one batched GEMM, same numbers as each task's convolution."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(4, 3, 8, 8, 3)), jnp.float32)   # [tasks, B, H, W, C]
  k = jnp.asarray(rng.normal(size=(4, 3, 3, 3, 5)), jnp.float32)
  dn = lax.conv_dimension_numbers(x.shape[1:], k.shape[1:], DN[4])
  f = lambda x, k: patch_conv(x, k, (1, 1), 'SAME', dimension_numbers=dn, precision='highest')
  got = jax.jit(jax.vmap(f))(x, k)
  for t in range(4):
    want = lax.conv_general_dilated(x[t], k[t], (1, 1), 'SAME', dimension_numbers=dn,
                                    precision='highest')
    np.testing.assert_allclose(got[t], want, rtol=1e-5, atol=1e-5)


def test_unsupported_convolutions_fall_back_to_lax():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(1, 8, 8, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32)
  dn = lax.conv_dimension_numbers(x.shape, k.shape, DN[4])
  kw = dict(dimension_numbers=dn, feature_group_count=2, rhs_dilation=(2, 2))
  np.testing.assert_allclose(patch_conv(x, k, (1, 1), 'SAME', **kw),
                             lax.conv_general_dilated(x, k, (1, 1), 'SAME', **kw), rtol=1e-6)
  # No dimension numbers: lax's channels-first default, not this module's channels-last layout.
  xc = jnp.asarray(rng.normal(size=(1, 4, 8, 8)), jnp.float32)
  kc = jnp.asarray(rng.normal(size=(5, 4, 3, 3)), jnp.float32)
  np.testing.assert_allclose(patch_conv(xc, kc, (1, 1), 'SAME'),
                             lax.conv_general_dilated(xc, kc, (1, 1), 'SAME'), rtol=1e-6)


def test_auto_uses_gemm_convolutions_only_for_vmapped_tasks_on_an_accelerator():
  assert resolve_conv('auto', 'vmap', 'source', (), backend='gpu') == 'pallas'
  assert resolve_conv('auto', 'vmap', 'source', (), backend='tpu') == 'patches'
  assert resolve_conv('auto', 'vmap', 'target', ('target',), backend='gpu') == 'xla'
  assert resolve_conv('auto', 'map', 'source', (), backend='gpu') == 'xla'
  assert resolve_conv('auto', 'vmap', 'source', (), backend='cpu') == 'xla'
  assert resolve_conv('patches', 'unroll', 'source', (), backend='cpu') == 'patches'
  with pytest.raises(ValueError, match='config.execution.conv'):
    resolve_conv('im2col', 'vmap', 'source', ())
  assert resolve_conv('pallas', 'vmap', 'source', (), backend='gpu') == 'pallas'
  with pytest.raises(ValueError, match="execution.conv='pallas' on CPU"):
    resolve_conv('pallas', 'vmap', 'source', (), backend='cpu')
  with pytest.raises(ValueError, match="needs a GPU"):
    resolve_conv('pallas', 'vmap', 'source', (), backend='tpu')


# Not 'task_batch': in this tiny config its target-side gradient is ill-conditioned (a 1e-6
# relative change of the input changes it completely, with XLA's convolution alone).
@pytest.mark.parametrize('norm', ['group', pytest.param('layer', marks=pytest.mark.slow)])
def test_step_with_patch_convolutions_equals_xla_convolutions(norm):
  """The whole meta-alignment step (Conv-4 source, temporal-conv target): same update.

  Outer SGD, so that the update is linear in the meta-gradient (Adam's first step is about
  lr * sign(g), which turns float round-off in near-zero gradients into lr-sized differences).
  """
  runs = [_run(tiny_config(**{'execution.conv': impl, 'model.norm': norm, 'optim.name': 'sgd',
                              'optim.lr': 1.0}), steps=2)
          for impl in ('xla', 'patches')]
  (s1, m1), (s2, m2) = runs
  _assert_trees_close(s2.params, s1.params, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(m2['loss'], m1['loss'], rtol=1e-4)
