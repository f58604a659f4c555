"""The Pallas implicit-GEMM convolution (fast/pallas_conv.py) against XLA's convolution.

On CPU the kernels run in Pallas's interpreter, with small tiles so that every shape below
spans several row tiles, ragged weight-gradient chunks and both weight-gradient kernels.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from meta_align_jax.fast import pallas_conv as pc
from meta_align_jax.fast.execution import conv_fn
from meta_align_jax.fast.patch_conv import patch_conv

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
  assert pc.covers(x.shape, w.shape, (1, 1), 'VALID', dimension_numbers=DN)
  assert not pc.covers((2, 6, 6, 4), (3, 3, 4, 16), (1, 1), 'SAME', dimension_numbers=DN)
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


@pytest.mark.parametrize('shape,taps,padding', [
    ((2, 7, 6, 12), (4, 4), 'VALID'),               # a folded stem: 12 channels padded to 16
    ((1, 6, 5, 16), (4, 2), ((2, 1), (0, 3))),      # even kernel, explicit uneven padding
    ((2, 5, 5, 9), (3, 3), 'SAME')])
def test_any_padding_and_padded_input_channels_match_xla(small_tiles, shape, taps, padding):
  x, w = _data(shape, taps=taps)
  conv = lambda impl: lambda x, w: impl(x, w, (1, 1), padding, dimension_numbers=DN)
  ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=DN,
                                              precision='highest')
  assert pc.covers(x.shape, w.shape, (1, 1), padding, dimension_numbers=DN)
  np.testing.assert_allclose(conv(pc.pallas_conv)(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
  for g, h in zip(jax.grad(_loss(conv(pc.pallas_conv)), (0, 1))(x, w),
                  jax.grad(_loss(ref), (0, 1))(x, w)):
    close(g, h)


def test_strided_few_channel_stem_runs_folded_on_the_kernels(small_tiles):
  """The ResNet stem (7x7, stride 2, 3 channels): folded into 2x2 blocks of 12 channels by
  patch_conv, then a stride-1 4x4 convolution that pallas_conv computes itself."""
  x, w = _data((2, 12, 10, 3), out=16, taps=(7, 7))
  stem = lambda x, w: pc.pallas_conv(x, w, (2, 2), 'SAME', dimension_numbers=DN)
  ref = lambda x, w: lax.conv_general_dilated(x, w, (2, 2), 'SAME', dimension_numbers=DN,
                                              precision='highest')
  assert 'shift_gemm' in str(jax.make_jaxpr(stem)(x, w))
  close(stem(x, w), ref(x, w))
  got = jax.vmap(jax.grad(_loss(stem), 1))(jnp.stack([x, -x]), jnp.stack([w, 2 * w]))
  close(got[1], jax.grad(_loss(ref), 1)(-x, 2 * w))
