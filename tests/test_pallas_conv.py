"""The Pallas implicit-GEMM convolution (models/pallas_conv.py) against XLA's convolution.

On CPU the kernels run in Pallas's interpreter, with small tiles so that every shape below
spans several row tiles, ragged weight-gradient chunks and both weight-gradient kernels.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from meta_align_jax.models import pallas_conv as pc
from meta_align_jax.models.conv import conv_fn, patch_conv

DN = ('NHWC', 'HWIO', 'NHWC')


def xla(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=DN,
                                  precision='highest')


def pallas(x, w):
  return pc.pallas_conv(x, w, (1, 1), 'SAME', dimension_numbers=DN)


@pytest.fixture
def small_tiles(monkeypatch):
  monkeypatch.setitem(pc.TUNING, 'gemm_bm', 16)
  monkeypatch.setitem(pc.TUNING, 'gemm_bn', 16)
  monkeypatch.setitem(pc.TUNING, 'gemm_bk', 16)
  monkeypatch.setitem(pc.TUNING, 'wgrad_bm', 16)
  monkeypatch.setitem(pc.TUNING, 'wgrad_bc', 16)
  monkeypatch.setitem(pc.TUNING, 'wgrad_bo', 16)
  monkeypatch.setitem(pc.TUNING, 'wgrad_blocks_per_split', 3)


def _data(shape=(2, 6, 5, 16), out=32, seed=0, taps=(3, 3)):
  kx, kw = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, shape)
  w = jax.random.normal(kw, taps + (shape[-1], out)) / np.sqrt(9 * shape[-1])
  return x, w


def close(got, want):
  """Float32 sums in another order: differences relative to the array's scale."""
  want = np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-6 * np.abs(want).max())


def _loss(conv):
  return lambda x, w: jnp.sum(jnp.sin(conv(x, w)) * jnp.cos(x.sum()))


@pytest.mark.parametrize('shape,taps', [((2, 6, 5, 16), (3, 3)), ((1, 9, 4, 32), (3, 3)),
                                        ((3, 5, 7, 16), (5, 3)), ((2, 4, 4, 16), (1, 1))])
def test_values_and_gradients_match_xla(small_tiles, shape, taps):
  x, w = _data(shape, taps=taps)
  np.testing.assert_allclose(pallas(x, w), xla(x, w), rtol=1e-5, atol=1e-5)
  got = jax.grad(_loss(pallas), (0, 1))(x, w)
  want = jax.grad(_loss(xla), (0, 1))(x, w)
  for g, h in zip(got, want):
    close(g, h)


def test_second_order_matches_xla(small_tiles):
  """MAML differentiates the inner loop's gradient: grad of a function of grad."""
  x, w = _data()

  def outer(conv):
    def f(x, w):
      gw = jax.grad(_loss(conv), 1)(x, w)
      return jnp.sum(gw ** 2) + jnp.sum(jax.grad(_loss(conv), 0)(x, w) * x)
    return jax.grad(f, (0, 1))(x, w)

  for g, h in zip(outer(pallas), outer(xla)):
    close(g, h)


def test_vmap_over_tasks_equals_loop(small_tiles):
  x, w = _data((3, 2, 6, 5, 16))
  w = jax.random.normal(jax.random.key(5), (3, 3, 3, 16, 32)) / 12
  got = jax.vmap(jax.grad(_loss(pallas), (0, 1)))(x, w)
  for i in range(3):
    want = jax.grad(_loss(xla), (0, 1))(x[i], w[i])
    for g, h in zip(got, want):
      close(g[i], h)


def test_uncovered_convolutions_fall_back_to_patches():
  x, w = _data((2, 6, 6, 3), out=16)          # 3 input channels: not a Triton tile
  assert not pc.covers(x.shape, w.shape, (1, 1), 'SAME', dimension_numbers=DN)
  np.testing.assert_allclose(pallas(x, w), patch_conv(x, w, (1, 1), 'SAME', dimension_numbers=DN))
  x, w = _data((2, 6, 6, 16), out=16)
  assert pc.covers(x.shape, w.shape, (1, 1), 'SAME', dimension_numbers=DN)
  assert not pc.covers(x.shape, w.shape, (2, 2), 'SAME', dimension_numbers=DN)     # strided
  assert not pc.covers(x.shape, w.shape, (1, 1), 'VALID', dimension_numbers=DN)
  assert not pc.covers(x.shape, (3, 3, 16, 24), (1, 1), 'SAME', dimension_numbers=DN)
  y = pc.pallas_conv(x, w, (2, 2), 'SAME', dimension_numbers=DN)
  close(y, lax.conv_general_dilated(x, w, (2, 2), 'SAME', dimension_numbers=DN,
                                    precision='highest'))


def test_flax_conv_with_pallas_equals_xla(small_tiles):
  """What the encoders do: nn.Conv with `conv_general_dilated` from `execution.conv`."""
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 16))
  mk = lambda impl: nn.Conv(16, (3, 3), padding='SAME', use_bias=False,
                            conv_general_dilated=conv_fn(impl))
  params = mk('xla').init(jax.random.key(0), x)
  np.testing.assert_allclose(mk('pallas').apply(params, x), mk('xla').apply(params, x),
                             rtol=1e-4, atol=1e-5)


def test_wide_convolutions_go_to_patches():
  x, w = _data((1, 4, 4, 128), out=128)
  assert not pc.covers(x.shape, w.shape, (1, 1), 'SAME', dimension_numbers=DN)


def test_bench_counts_the_kernels_flops(small_tiles):
  """bench/train_step.py's FLOP counter sees the Pallas kernels (MFU of pallas steps)."""
  import importlib.util
  import os
  path = os.path.join(os.path.dirname(__file__), '..', 'bench', 'train_step.py')
  spec = importlib.util.spec_from_file_location('bench_train_step', path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  x, w = _data()                                   # [2, 6, 5, 16] -> 32 channels
  tasks = 3
  xs, ws = jnp.stack([x] * tasks), jnp.stack([w] * tasks)
  jaxpr = jax.make_jaxpr(jax.vmap(jax.grad(_loss(pallas), (0, 1))))(xs, ws).jaxpr
  got = bench.count_jaxpr(jaxpr)['by_op']
  rows_out = 2 * 8 * 7                             # padded 8 x 7 grid, a whole number of tiles
  rows_in = rows_out + 16                          # + the largest offset, 2 * 7 + 2, in tiles
  per_row = 2.0 * 9 * 16 * 32 * tasks
  assert got['shift_gemm'] == per_row * (rows_out + rows_in)    # forward + input gradient
  assert got['shift_wgrad'] == per_row * rows_out
