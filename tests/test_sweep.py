"""The sweep runner's bookkeeping and aggregation, on fake run directories (no training)."""

import csv
import json
import math
import os

import numpy as np
import pytest

from meta_align_jax.lab import results, sweep


def _fake_run(root, task, method, seed, acc, *, shots=1, noise=0.0, with_episodes=True):
  spec = sweep.RunSpec(task, method, shots, noise, seed)
  d = os.path.join(root, spec.relpath)
  os.makedirs(d)
  with open(os.path.join(d, sweep.RUN_FILE), 'w') as f:
    json.dump(spec.labels(), f)
  acc = np.asarray(acc, np.float32)
  mean, ci = float(acc.mean()), float(1.96 * acc.std() / math.sqrt(acc.size))
  with open(os.path.join(d, sweep.RESULTS_FILE), 'w') as f:
    json.dump({'accuracy_mean': mean, 'accuracy_ci95': ci, 'num_episodes': int(acc.size),
               'retrieval': {'target_to_source': {'R@1': 0.5}}}, f)
  if with_episodes:
    np.save(os.path.join(d, sweep.EPISODES_FILE), acc)
  return d


def test_sweep_tables_read_the_file_evaluate_writes():
  from meta_align_jax import evaluate, io
  assert sweep.EPISODES_FILE == results.EPISODES_FILE == evaluate.EPISODES_FILE == io.EPISODES_FILE
  assert sweep.RESULTS_FILE == results.RESULTS_FILE == evaluate.RESULTS_FILE == io.RESULTS_FILE
  assert sweep.RUN_FILE == results.RUN_FILE


def test_seed_stats_formula():
  a, b = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0.5, 0.5, 0.7, 0.7])
  mean, ci, seed_std = results.seed_stats([a, b])
  assert mean == pytest.approx((a.mean() + b.mean()) / 2)
  assert ci == pytest.approx(1.96 * math.sqrt(a.var() / 4 + b.var() / 4) / 2)
  assert seed_std == pytest.approx(np.std([a.mean(), b.mean()], ddof=1))
  # One seed: the usual 1.96 * std / sqrt(n) of evaluate.mean_ci95.
  mean, ci, _ = results.seed_stats([a])
  assert ci == pytest.approx(1.96 * a.std() / 2)


def test_aggregate_rows_and_paired_difference(tmp_path):
  root = str(tmp_path)
  rng = np.random.default_rng(0)
  base = {s: rng.integers(0, 16, size=40) / 15 for s in range(3)}
  for s in range(3):
    _fake_run(root, 'image_audio', 'meta_align', s, np.clip(base[s] + 0.1, 0, 1))
    _fake_run(root, 'image_audio', 'no_align', s, base[s])
    _fake_run(root, 'image_audio', 'target_only', s, base[s] - 0.05)
    _fake_run(root, 'image_audio', 'oracle', s, np.ones(40))
  rows = results.write_tables(root)
  assert len(rows) == 4
  by = {r['method']: r for r in rows}
  assert [r['role'] for r in rows] == ['ours', 'baseline', 'baseline', 'oracle']
  # The oracle (upper bound) is never the best baseline; no_align beats target_only.
  assert by['meta_align']['best_baseline'] == 'no_align'
  assert by['oracle']['best_baseline'] == 'no_align'
  expect = results.seed_stats([np.clip(base[s] + 0.1, 0, 1) for s in range(3)])
  assert by['meta_align']['accuracy_mean'] == pytest.approx(expect[0])
  assert by['meta_align']['accuracy_ci95'] == pytest.approx(expect[1])
  d = [np.clip(base[s] + 0.1, 0, 1) - base[s] for s in range(3)]
  assert by['meta_align']['diff_mean'] == pytest.approx(np.mean([x.mean() for x in d]))
  assert by['meta_align']['diff_ci95'] == pytest.approx(results.seed_stats(d)[1])
  assert by['meta_align']['diff_paired'] == 'yes'
  assert by['target_only']['diff_mean'] == pytest.approx(-0.05, abs=1e-6)
  assert by['no_align']['diff_paired'] == ''   # the best baseline itself
  with open(os.path.join(root, 'results.csv')) as f:
    csv_rows = list(csv.DictReader(f))
  assert [r['method'] for r in csv_rows] == ['meta_align', 'no_align', 'target_only', 'oracle']
  assert float(csv_rows[0]['accuracy_mean']) == pytest.approx(expect[0], abs=1e-6)
  assert csv_rows[0]['seeds'] == '3' and csv_rows[0]['episodes_per_seed'] == '40'
  md = open(os.path.join(root, 'results.md')).read()
  assert '| image_audio | meta_align | ours | 1 | 0 % | 3 x 40 |' in md


def test_unpaired_when_episodes_missing(tmp_path):
  root = str(tmp_path)
  _fake_run(root, 't', 'meta_align', 0, [1, 0, 1, 1], with_episodes=False)
  _fake_run(root, 't', 'no_align', 0, [0, 0, 1, 1])
  row = {r['method']: r for r in results.aggregate(root)}['meta_align']
  assert row['diff_paired'] == 'no'
  assert row['diff_mean'] == pytest.approx(0.25)


def test_groups_by_shots_and_noise(tmp_path):
  root = str(tmp_path)
  for noise in (0.0, 0.4):
    for shots in (1, 5):
      _fake_run(root, 't', 'no_align', 0, [0.5, 0.5], shots=shots, noise=noise)
  rows = results.aggregate(root)
  assert sorted((r['shots'], r['noise']) for r in rows) == [(1, 0.0), (1, 0.4), (5, 0.0),
                                                            (5, 0.4)]


def test_run_grid_skips_finished_runs(tmp_path):
  root = str(tmp_path)
  grid = sweep.Grid(cells=(sweep.Cell(('image_audio',), ('meta_align', 'no_align')),),
                    seeds=(0, 1))
  specs = sweep.grid_runs(grid, overrides={'train.num_steps': 5})
  assert len(specs) == 4 and all(('train.num_steps', 5) in s.overrides for s in specs)
  _fake_run(root, 'image_audio', 'meta_align', 0, [1.0])
  status = sweep.run_grid(specs, root, dry_run=True, log=lambda _: None)
  assert status['skipped'] == [os.path.join('image_audio', 'meta_align', 'k1_n0', 'seed0')]
  assert len(status['pending']) == 3


def test_build_config_applies_method_shots_noise():
  spec = sweep.RunSpec('image_audio', 'target_only', 5, 0.4, 2, (('train.num_steps', 7),))
  c = sweep.build_config(spec)
  assert c.seed == 2 and c.train.num_steps == 7 and c.eval.shots == 5
  assert tuple(c.task.meta_on) == ('target',) and not c.align.enabled
  assert c.data.target_noise == c.data.align_noise == 0.4
  # Target-side training tasks fit the target_train_shots examples per class.
  assert c.task.shots + c.task.queries <= c.data.target_train_shots
  oracle = sweep.build_config(sweep.RunSpec('image_audio', 'oracle', 1, 0.0, 0))
  assert oracle.data.target_train_shots == 20 and oracle.task.shots == 1
  assert sweep.build_config(sweep.RunSpec('digits_fsdd', 'meta_align', 1, 0.0, 0)).eval.ways == 3


def test_lowres_grid_labels_its_tasks():
  specs = sweep.grid_runs('cpu_lowres', seeds=[0])
  assert {s.task for s in specs} == {'image_audio_c5', 'image_audio_c20'}   # rows do not merge
  assert len({s.relpath for s in specs}) == len(specs) == 6
  c = sweep.build_config(sweep.RunSpec('image_audio_c5', 'target_only', 1, 0.0, 0))
  assert c.data.target_train_classes == 5 and tuple(c.task.meta_on) == ('target',)
  assert sweep.build_config(
      sweep.RunSpec('image_audio', 'meta_align', 1, 0.0, 0)).data.target_train_classes == 0


def test_lock_claims_a_run_once(tmp_path):
  d = str(tmp_path / 'run')
  assert sweep.take_lock(d)
  assert not sweep.take_lock(d)          # held by this (live) process
  with open(os.path.join(d, sweep.LOCK_FILE), 'w') as f:
    f.write('999999999')                 # a process that does not exist: stale
  assert sweep.take_lock(d)


def _workdir(root, name, seed, acc, **eval_fields):
  d = os.path.join(root, name)
  os.makedirs(d)
  with open(os.path.join(d, 'config.json'), 'w') as f:
    json.dump({'seed': seed, 'eval': {}}, f)
  fields = {'split': 'test', 'ways': 5, 'shots': 1, 'queries': 15, 'num_episodes': len(acc),
            **eval_fields}
  with open(os.path.join(d, sweep.RESULTS_FILE), 'w') as f:
    json.dump({'accuracy_mean': float(np.mean(acc)), 'accuracy_ci95': 0.01, **fields}, f)
  np.save(os.path.join(d, sweep.EPISODES_FILE), np.asarray(acc, np.float32))
  return d


def _compare(*args):
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return subprocess.run([sys.executable, os.path.join(repo, 'launch', 'compare.py'), *args],
                        capture_output=True, text=True, timeout=120)


def test_compare_work_directories_pairs_episodes_by_seed(tmp_path):
  rng = np.random.default_rng(0)
  base = {s: rng.integers(0, 16, size=30) / 15 for s in (0, 1)}
  a = [_workdir(str(tmp_path), f'a{s}', s, np.clip(base[s] + 0.2, 0, 1)) for s in (1, 0)]
  b = [_workdir(str(tmp_path), f'b{s}', s, base[s]) for s in (0, 1)]
  proc = _compare('--workdirs', ','.join(a), ','.join(b))
  assert proc.returncode == 0, proc.stderr
  mean, ci, _ = results.seed_stats([np.clip(base[s] + 0.2, 0, 1) - base[s] for s in (0, 1)])
  assert f'{100 * mean:+.2f} +- {100 * ci:.2f} points (paired per episode)' in proc.stdout
  # Other evaluation settings -> other episodes: refused, naming the field.
  c = _workdir(str(tmp_path), 'c0', 0, base[0], queries=10)
  proc = _compare('--workdirs', a[1], c)
  assert proc.returncode != 0 and 'queries=15 and queries=10' in proc.stderr
  # Two work directories of one seed in a group, or one not evaluated: refused.
  proc = _compare('--workdirs', f'{a[1]},{a[1]}', b[0])
  assert proc.returncode != 0 and 'one work directory per seed' in proc.stderr
  os.makedirs(tmp_path / 'untrained')
  proc = _compare('--workdirs', str(tmp_path / 'untrained'), b[0])
  assert proc.returncode != 0 and 'has no eval_results.json' in proc.stderr


@pytest.mark.parametrize('grid', [g for g in sweep.GRIDS if g.startswith('study_')])
def test_every_study_run_resolves_to_a_valid_config(grid, monkeypatch):
  """Each run of the study grids builds a config the validation accepts (before any compile),
  under the low-resource protocol, with the primary protocol and selection its method declares."""
  from meta_align_jax import data, lowres, validation  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(data, 'make_splits', lambda config: {'train': [f'c{i}' for i in range(173)]})
  specs = sweep.grid_runs(grid)
  assert specs
  for spec in specs:
    config = sweep.build_config(spec)
    validation.check_config(config)
    assert lowres.enabled(config), spec.relpath
    overrides = sweep.METHODS[spec.method].overrides
    assert config.eval.method == overrides.get('eval.method', 'finetune'), spec.relpath
    assert config.train.select == overrides['train.select'], spec.relpath
    assert (config.seed, config.eval.shots, config.data.target_noise) == (
        spec.seed, spec.shots, spec.noise)
  if grid == 'study_heldout':   # the held-out seeds of the prototype hypothesis
    assert {s.seed for s in specs} == {3, 4, 5}


def test_write_all_draws_a_curve_per_swept_axis(tmp_path):
  from meta_align_jax.lab import plots  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / 'runs')
  for method in ('meta_align', 'no_align'):
    for noise in (0.0, 0.4):
      for shots in (1, 5):
        d = _fake_run(root, 't', method, 0, [0.5, 0.7], shots=shots, noise=noise)
        with open(os.path.join(d, 'metrics.jsonl'), 'w') as f:
          f.write(json.dumps({'step': 10, 'train/meta_loss': 1.0, 'train/align_loss': 0.5}) + '\n')
  out = plots.write_all(root, str(tmp_path / 'plots'))
  names = sorted(os.path.basename(p) for p in out['plots'])
  assert names == ['accuracy_vs_noise_t.png', 'accuracy_vs_shots_t.png', 'learning_curves_t.png']
  assert all(os.path.getsize(p) > 0 for p in out['plots'])


def test_select_runs_applies_the_launchers_flags():
  specs = sweep.select_runs('study_noise', seeds=['1'], sets=['train.num_steps=7'],
                            tasks=['text_image_v2'], methods=['lr_target_only'],
                            noise=['0.4', '0.6'])
  assert [(s.task, s.method, s.noise, s.seed) for s in specs] == [
      ('text_image_v2', 'lr_target_only', 0.4, 1), ('text_image_v2', 'lr_target_only', 0.6, 1)]
  assert all(dict(s.overrides)['train.num_steps'] == 7 for s in specs)
  with pytest.raises(ValueError, match='No run left'):
    sweep.select_runs('study_noise', shots=['5'])
  with pytest.raises(ValueError, match="Unknown grid 'nope'.*study_noise"):
    sweep.select_runs('nope')
  with pytest.raises(ValueError, match='field=value'):
    sweep.select_runs('study_noise', sets=['train.num_steps'])


@pytest.mark.slow
def test_run_one_trains_selects_and_evaluates(tmp_path):
  """A sweep run: trains, evaluates train.select's checkpoint, writes what a finished run has."""
  from tests.test_study import TINY  # pylint: disable=g-import-not-at-top
  spec = next(s for s in sweep.grid_runs('study_smoke', overrides=TINY)
              if s.method == 'lr_meta_align')
  workdir = str(tmp_path / spec.relpath)
  res = sweep.run_one(spec, workdir)
  assert sweep.is_finished(workdir) and res['num_episodes'] == 10
  assert res['checkpoint_step'] in (3, 6)   # align_val selection over the two validations
  assert np.load(os.path.join(workdir, sweep.EPISODES_FILE)).shape == (10,)
  with open(os.path.join(workdir, sweep.RUN_FILE)) as f:
    assert json.load(f)['method'] == 'lr_meta_align'


def test_run_grid_records_a_failed_worker(tmp_path):
  """A run whose worker exits with an error is filed as failed with its log's tail in error.txt,
  and the sweep goes on."""
  spec = sweep.RunSpec('image_audio', 'meta_align', 1, 0.0, 0, (('task.ways', 1),))
  status = sweep.run_grid([spec], str(tmp_path), log=lambda _: None)
  assert status['failed'] == [spec.relpath] and not status['done']
  with open(tmp_path / spec.relpath / sweep.ERROR_FILE) as f:
    assert 'config.task.ways=1' in f.read()
