r"""Multi-GPU scaling of the train step: the same cases on 1, 2, 4, ... local GPUs with pmap.

Tasks per device stay fixed, so the global task batch grows with the device count. Each device
count runs in its own process (`CUDA_VISIBLE_DEVICES=0..n-1`, `execution.parallel=pmap`), through
`bench/train_step.py`. Efficiency(n) = tasks/s(n) / (n x tasks/s(1)); MFU is per device.

  python bench/scaling.py --suite bench/suite_scaling.json --devices 1,2 --out scaling.json
  python bench/scaling.py --suite bench/suite_scaling.json --devices 1,2,4,8 --out scaling.json

Writes JSON (every row of every device count plus the efficiency table) and prints markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_count(suite: str, n: int, args) -> list[dict]:
  env = dict(os.environ, CUDA_VISIBLE_DEVICES=','.join(str(i) for i in range(n)))
  with tempfile.TemporaryDirectory() as tmp:
    cases = json.load(open(suite))
    for c in cases:
      c.setdefault('overrides', {})['execution.parallel'] = 'pmap' if n > 1 else 'jit'
      c['profile'] = bool(c.get('profile')) and n in args.profile_counts
    path = os.path.join(tmp, 'suite.json')
    json.dump(cases, open(path, 'w'))
    out = os.path.join(tmp, 'out.json')
    cmd = [sys.executable, os.path.join(HERE, 'train_step.py'), '--suite', path, '--out', out,
           '--repeats', str(args.repeats), '--run_s', str(args.run_s)]
    if args.profile_dir:
      cmd += ['--profile_dir', os.path.join(args.profile_dir, f'gpus{n}')]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(out):
      sys.stderr.write(proc.stderr[-4000:])
      raise SystemExit(f'bench/train_step.py failed on {n} device(s) (exit {proc.returncode}).')
    data = json.load(open(out))
  rows = data['results']
  for r in rows:
    r['gpus'] = n
    r['device'] = data['device']
  return rows


def efficiency(rows: list[dict]) -> list[dict]:
  base = {r['name']: r for r in rows if r['gpus'] == 1 and 'tasks_per_s' in r}
  table = []
  for r in rows:
    if 'tasks_per_s' not in r or r['name'] not in base:
      continue
    b = base[r['name']]
    table.append({'name': r['name'], 'gpus': r['gpus'], 'tasks_per_device': r['tasks_per_device'],
                  'global_tasks': r['tasks_per_step'], 'step_ms': r['step_ms'],
                  'tasks_per_s': r['tasks_per_s'],
                  'efficiency': r['tasks_per_s'] / (r['gpus'] * b['tasks_per_s']),
                  'mfu_per_device': r.get('mfu'), 'compile_s': r.get('compile_s')})
  return table


def markdown(table: list[dict]) -> str:
  lines = ['| case | GPUs | tasks/device | global tasks | ms/step | tasks/s | efficiency | MFU/device |',
           '|---|---|---|---|---|---|---|---|']
  for t in table:
    mfu = f"{100 * t['mfu_per_device']:.1f}%" if t['mfu_per_device'] is not None else ''
    lines.append(f"| {t['name']} | {t['gpus']} | {t['tasks_per_device']} | {t['global_tasks']} | "
                 f"{t['step_ms']:.1f} | {t['tasks_per_s']:.1f} | {100 * t['efficiency']:.1f}% | {mfu} |")
  return '\n'.join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--suite', required=True, help='JSON list of {name, config, overrides}')
  p.add_argument('--devices', default='1,2', help='device counts, e.g. 1,2,4,8')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--run_s', type=float, default=0.5)
  p.add_argument('--profile_dir', default='')
  p.add_argument('--profile_counts', default='', help='device counts to profile, e.g. 2')
  p.add_argument('--out', default='')
  args = p.parse_args(argv)
  args.profile_counts = {int(x) for x in args.profile_counts.split(',') if x}
  counts = [int(x) for x in args.devices.split(',')]
  rows = []
  for n in counts:
    t = time.perf_counter()
    rows += run_count(args.suite, n, args)
    print(f'{n} device(s): {time.perf_counter() - t:.0f} s', flush=True)
    table = efficiency(rows)
    if args.out:
      with open(args.out, 'w') as fh:
        json.dump({'date': time.strftime('%Y-%m-%d'), 'argv': sys.argv, 'efficiency': table,
                   'rows': rows}, fh, indent=1)
  print(markdown(efficiency(rows)))


if __name__ == '__main__':
  main()
