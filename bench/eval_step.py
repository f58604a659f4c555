r"""Meta-test speed: episodes/s of the compiled evaluation step (fine-tune on each episode's
support, score its queries), for a config, as JSON + markdown.

  python bench/eval_step.py --config configs/default.py
  python bench/eval_step.py --config configs/reference.py --episodes 64 --out eval.json

Random episodes from `meta_align_jax.random_episodes` in `config.eval`'s shape (ways, shots,
queries) and `side`'s modality, `--episodes` per compiled call (the evaluator's
`eval.batch_episodes`), passed as arguments; the call is compiled ahead of time, warmed up and
timed as the median of `--repeats` runs with `block_until_ready`.
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

from bench.train_step import _device_info, load_config, _parse_value  # noqa: E402
from meta_align_jax import build_model, make_eval_step, random_episodes  # noqa: E402


def run(config_path, overrides, episodes, repeats, side='target'):
  config = load_config(config_path, overrides)
  model = build_model(config)
  params = model.init(jax.random.key(0))
  step = make_eval_step(config, model, side=side)
  eps = [jax.device_put(random_episodes(config, episodes, seed=i, side=side)) for i in range(2)]
  t0 = time.perf_counter()
  compiled = step.lower(params, eps[0]).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(params, eps[0]))
  t = time.perf_counter()
  jax.block_until_ready(compiled(params, eps[1]))
  est = time.perf_counter() - t
  n = max(1, min(50, int(1.0 / max(est, 1e-6))))
  times = []
  for r in range(repeats):
    t = time.perf_counter()
    for j in range(n):
      out = compiled(params, eps[j % 2])
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t) / n)
  call_s = statistics.median(times)
  e = config.eval
  return {'config': config_path, 'overrides': overrides, 'side': side,
          'task_batching': model.execution.task_batching, 'method': e.method,
          'ways': e.ways, 'shots': e.shots, 'queries': e.queries, 'inner_steps': e.inner_steps,
          'episodes_per_call': episodes, 'compile_s': compile_s, 'call_ms': 1e3 * call_s,
          'episodes_per_s': episodes / call_s, 'repeats': repeats, 'calls_per_run': n}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--config', default=os.path.join(REPO, 'configs', 'default.py'))
  p.add_argument('--set', action='append', default=[], help='field=value override')
  p.add_argument('--episodes', type=int, default=0, help='episodes per call (0: eval.batch_episodes)')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--out', default='')
  args = p.parse_args(argv)
  overrides = {}
  for item in args.set:
    key, _, value = item.partition('=')
    overrides[key] = _parse_value(value)
  episodes = args.episodes or load_config(args.config, overrides).eval.batch_episodes
  row = {'device': _device_info(), 'date': time.strftime('%Y-%m-%d'),
         **run(args.config, overrides, episodes, args.repeats)}
  print(json.dumps(row))
  print(f"| config | side | batching | episodes/call | compile s | ms/call | episodes/s |\n"
        f"|---|---|---|---|---|---|---|\n| {os.path.relpath(row['config'], REPO)} | {row['side']} | "
        f"{row['task_batching']} | {episodes} | {row['compile_s']:.1f} | {row['call_ms']:.1f} | "
        f"{row['episodes_per_s']:.1f} |")
  if args.out:
    with open(args.out, 'w') as fh:
      json.dump(row, fh, indent=1)
  return row


if __name__ == '__main__':
  main()
