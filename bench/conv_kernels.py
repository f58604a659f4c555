r"""One convolution layer with per-task weights, forward + backward (input and weight gradients),
vmapped over tasks: XLA's grouped convolution vs patch GEMMs vs the Pallas implicit GEMM
(`meta_align_jax/fast/pallas_conv.py`). Checks each against XLA's values first. JSON + table.

  python bench/conv_kernels.py --out conv_kernels.json                # Conv-4 layer shapes
  python bench/conv_kernels.py --shapes 30x42x42x64x64,8x56x56x64x64  # images x H x W x C_in x C_out

Time = median over `--repeats` runs of `n` calls (about `--run_s` seconds each), after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from meta_align_jax.fast.patch_conv import patch_conv  # noqa: E402
from meta_align_jax.fast.pallas_conv import pallas_conv  # noqa: E402

DN = ('NHWC', 'HWIO', 'NHWC')
IMPLS = {
    'xla': lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=DN),
    'patches': lambda x, w: patch_conv(x, w, (1, 1), 'SAME', dimension_numbers=DN),
    'pallas': lambda x, w: pallas_conv(x, w, (1, 1), 'SAME', dimension_numbers=DN),
}


def _loss(conv):
  # A ReLU after the convolution, as in the encoders: the backward pass needs both gradients.
  return lambda x, w: jnp.sum(jax.nn.relu(conv(x, w)).astype(jnp.float32) ** 2)


def time_fn(fn, args, run_s=0.2, repeats=3):
  """Median seconds per call of `fn(*args)` over `repeats` runs of about `run_s` seconds."""
  jax.block_until_ready(fn(*args))
  t = time.perf_counter()
  jax.block_until_ready(fn(*args))
  one = max(time.perf_counter() - t, 1e-5)
  n = max(1, int(run_s / one))
  runs = []
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(n):
      out = fn(*args)
    jax.block_until_ready(out)
    runs.append((time.perf_counter() - t) / n)
  return statistics.median(runs)


def second_order_error(shape=(4, 30, 21, 21, 64, 64)):
  """Max relative difference of a second derivative (MAML's grad of a function of the inner
  gradient) between the Pallas convolution and XLA's, vmapped over tasks, float32."""
  tasks, b, h, w, c, o = shape
  kx, kw = jax.random.split(jax.random.key(1))
  x = jax.random.normal(kx, (tasks, b, h, w, c), jnp.float32)
  wt = jax.random.normal(kw, (tasks, 3, 3, c, o), jnp.float32) / np.sqrt(9 * c)

  def outer(conv):
    def f(x, w):
      gw = jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))), 1)(x, w)
      return jnp.sum(gw ** 2)
    return jax.jit(jax.vmap(jax.grad(f, (0, 1))))(x, wt)

  exact = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=DN,
                                                precision='highest')
  got, want = outer(IMPLS['pallas']), outer(exact)
  return [float(np.abs(np.asarray(g) - np.asarray(h)).max() / np.abs(np.asarray(h)).max())
          for g, h in zip(got, want)]


def bench_shape(tasks, b, h, w, c, o, dtype, impls, run_s, repeats):
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (tasks, b, h, w, c), jnp.float32).astype(dtype)
  wt = (jax.random.normal(kw, (tasks, 3, 3, c, o), jnp.float32) / np.sqrt(9 * c)).astype(dtype)
  ref = jax.jit(jax.vmap(jax.grad(_loss(IMPLS['xla']), (0, 1))))(x, wt)
  ref_y = jax.jit(jax.vmap(IMPLS['xla']))(x, wt)
  flops = 3 * 2.0 * tasks * b * h * w * 9 * c * o   # forward, input and weight gradients
  rows = []
  for name in impls:
    fwd = jax.jit(jax.vmap(IMPLS[name]))
    step = jax.jit(jax.vmap(jax.grad(_loss(IMPLS[name]), (0, 1))))
    t = time.perf_counter()
    jax.block_until_ready(step(x, wt))
    compile_s = time.perf_counter() - t
    y = fwd(x, wt)
    got = step(x, wt)

    def rel(a, b):
      a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
      return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))

    row = dict(shape=[tasks, b, h, w, c, o], dtype=str(jnp.dtype(dtype)), impl=name,
               compile_s=round(compile_s, 2), err_y=rel(y, ref_y), err_dx=rel(got[0], ref[0]),
               err_dw=rel(got[1], ref[1]))
    row['fwd_ms'] = round(1e3 * time_fn(fwd, (x, wt), run_s, repeats), 3)
    row['fwd_bwd_ms'] = round(1e3 * time_fn(step, (x, wt), run_s, repeats), 3)
    row['tflops'] = round(flops / (row['fwd_bwd_ms'] * 1e-3) / 1e12, 2)
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--tasks', type=int, default=64)
  p.add_argument('--shapes', default='30x42x42x64x64,30x21x21x64x64,30x10x10x64x64',
                 help='comma list of images x H x W x C_in x C_out (3x3, stride 1, SAME)')
  p.add_argument('--dtype', default='bfloat16')
  p.add_argument('--impls', default='xla,patches,pallas')
  p.add_argument('--run_s', type=float, default=0.3)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--out')
  a = p.parse_args()
  rows = []
  if 'pallas' in a.impls:
    err = second_order_error()
    print(json.dumps({'second_order_max_rel_err_dx_dw_vs_xla_f32': err}), flush=True)
  for s in a.shapes.split(','):
    b, h, w, c, o = (int(v) for v in s.split('x'))
    rows += bench_shape(a.tasks, b, h, w, c, o, jnp.dtype(a.dtype), a.impls.split(','),
                        a.run_s, a.repeats)
  print('\n| shape (tasks, imgs, H, W, C, O) | impl | fwd ms | fwd+bwd ms | TFLOP/s | max rel err y/dx/dw |')
  print('|---|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['shape']} | {r['impl']} | {r['fwd_ms']} | {r['fwd_bwd_ms']} | {r['tflops']} | "
          f"{r['err_y']:.1e} / {r['err_dx']:.1e} / {r['err_dw']:.1e} |")
  if a.out:
    with open(a.out, 'w') as f:
      json.dump(dict(device=jax.devices()[0].device_kind, jax=jax.__version__, tasks=a.tasks,
                     rows=rows), f, indent=1)


if __name__ == '__main__':
  main()
