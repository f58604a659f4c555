r"""Tiles of the Pallas convolution kernels (`meta_align_jax/fast/pallas_conv.py`): times each
kernel alone, vmapped over tasks, for a grid of tilings and writes the fastest (summed over the
shapes) as JSON that `bench/train_step.py --pallas_tuning` and `pallas_conv.TUNING` take.

  python bench/tune_pallas.py --out tuning.json    # Conv-4's block 2 and 3 shapes, 64 tasks
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from meta_align_jax.fast import pallas_conv as pc  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_kernels import time_fn  # noqa: E402

GEMM_GRID = dict(gemm_bm=[64, 128, 256], gemm_warps=[4, 8], gemm_stages=[2, 3, 4])
WGRAD_GRID = dict(wgrad_bm=[64, 128, 256], wgrad_warps=[4, 8], wgrad_stages=[2, 3, 4])


def _grid(spec):
  keys = list(spec)
  for values in itertools.product(*(spec[k] for k in keys)):
    yield dict(zip(keys, values))


def kernel_ms(which, tuning, shapes, tasks):
  """Summed milliseconds of one kernel over the shapes (images, H, W, C, O), or None."""
  saved = dict(pc.TUNING)
  pc.TUNING.update(tuning)
  try:
    total = 0.0
    for b, h, w, c, o in shapes:
      geom = pc._Geom(wp=w + 2, kh=3, kw=3, mirrored=False,
                      interpret=jax.default_backend() == 'cpu')
      rows = pc._round_up(b * (h + 2) * (w + 2), pc._row_multiple())
      key = jax.random.key(0)
      xf = jax.random.normal(key, (tasks, rows + pc._round_up(geom.max_offset, 256), c), jnp.bfloat16)
      if which == 'gemm':
        wt = jax.random.normal(key, (tasks, 9, c, o), jnp.bfloat16)
        fn = jax.jit(jax.vmap(lambda x, w: pc._shift_gemm_call(x, w, geom, rows)))
        total += time_fn(fn, (xf, wt))
      else:
        dy = jax.random.normal(key, (tasks, rows, o), jnp.bfloat16)
        fn = jax.jit(jax.vmap(lambda x, d: pc._shift_wgrad_call(x, d, geom)))
        total += time_fn(fn, (xf, dy))
    return 1e3 * total
  except Exception as e:  # noqa: BLE001  (a tiling Triton refuses is skipped, not fatal)
    print(json.dumps({'kernel': which, 'tuning': tuning, 'error': str(e)[:300]}), flush=True)
    return None
  finally:
    pc.TUNING.clear()
    pc.TUNING.update(saved)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--tasks', type=int, default=64)
  p.add_argument('--shapes', default='30x42x42x64x64,30x21x21x64x64')
  p.add_argument('--out', required=True)
  a = p.parse_args()
  shapes = [tuple(int(v) for v in s.split('x')) for s in a.shapes.split(',')]
  rows, best = [], {}
  for which, spec in (('gemm', GEMM_GRID), ('wgrad', WGRAD_GRID)):
    results = []
    for tuning in _grid(spec):
      ms = kernel_ms(which, tuning, shapes, a.tasks)
      row = {'kernel': which, 'tuning': tuning, 'ms': ms}
      print(json.dumps(row), flush=True)
      rows.append(row)
      if ms is not None:
        results.append((ms, tuning))
    default_ms = kernel_ms(which, {}, shapes, a.tasks)
    ms, tuning = min(results, key=lambda r: r[0])
    print(f'{which}: default {default_ms:.3f} ms, best {ms:.3f} ms with {tuning}', flush=True)
    best.update(tuning)
  with open(a.out, 'w') as f:
    json.dump({'device': jax.devices()[0].device_kind, 'jax': jax.__version__, 'tasks': a.tasks,
               'shapes': shapes, 'best': best, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
  main()
