"""The study runner end to end on CPU: export bundles here (TensorFlow), run every run from them
in worker processes that cannot import TensorFlow, skip finished runs, collect, write the claim."""

import json
import os

import numpy as np
import pytest

from meta_align_jax.lab import claim, study, sweep

TINY = {'model.width': 8, 'model.z_dim': 16, 'meta.inner_steps': 1, 'eval.inner_steps': 1,
        'task.tasks_per_device': 2, 'execution.task_batching': 'map',
        'execution.inner_loop': 'scan', 'eval.batch_episodes': 5, 'eval.retrieval': False,
        'train.num_steps': 6, 'train.eval_every': 3, 'train.checkpoint_every': 3,
        'train.log_every': 3, 'train.val_episodes': 5, 'eval.num_episodes': 10}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('study'))
  specs = sweep.grid_runs('study_smoke', overrides=TINY)
  assert [s.method for s in specs] == ['lr_meta_align', 'lr_target_only']
  record = study.export_study(specs, root, grid='study_smoke', log=lambda s: None)
  return root, record


def test_export_shares_one_examples_file_and_records_resolved_configs(exported):
  root, record = exported
  assert os.listdir(os.path.join(root, 'examples')) == ['image_audio.npz']
  assert len({r['bundle'] for r in record['runs']}) == 2   # different data: meta_on, pairs
  with open(os.path.join(root, record['runs'][0]['config'])) as f:
    cfg = json.load(f)
  assert cfg['lowres']['enabled'] and cfg['align']['kind'] == 'strong'
  assert cfg['train']['select'] == 'align_val' and cfg['data']['target_train_classes'] == 5


def test_run_without_tensorflow_then_skip_collect_and_claim(exported, tmp_path):
  root, record = exported
  status = study.run_study(root, budget_s=1e-9, log=lambda s: None)   # budget spent: none starts
  assert status['not_started'] == [r['relpath'] for r in record['runs']]
  status = study.run_study(root, log=print, env={'STUDY_WITHOUT_TENSORFLOW': '1',
                                                 'JAX_PLATFORMS': 'cpu'})
  assert status['failed'] == [] and len(status['done']) == 2, status
  for run in record['runs']:
    d = study.run_dir(root, run)
    res = json.load(open(os.path.join(d, 'eval_results.json')))
    assert res['num_episodes'] == 10 and res['method'] == 'finetune'
    for p in ('proto', 'finetune'):
      assert 0.0 <= res[f'accuracy_{p}_mean'] <= 1.0
    np.testing.assert_allclose(np.load(os.path.join(d, 'episode_accuracies.npy')).mean(),
                               res['accuracy_finetune_mean'], rtol=1e-5)
    assert np.load(os.path.join(d, 'episode_accuracies_proto.npy')).shape == (10,)
  # meta-alignment selected on pair InfoNCE at steps 3 and 6; target-only evaluated its last step.
  d = study.run_dir(root, record['runs'][0])
  assert [e['step'] for e in json.load(open(os.path.join(d, 'selection_history.json')))] == [3, 6]
  d = study.run_dir(root, record['runs'][1])
  assert json.load(open(os.path.join(d, 'eval_results.json')))['checkpoint'] == 'latest'
  assert study.run_study(root, log=lambda s: None)['skipped'] == [r['relpath']
                                                                for r in record['runs']]
  assert study.collect(root, str(tmp_path / 'out')) > 0
  assert not os.path.exists(tmp_path / 'out' / 'runs' / record['runs'][0]['relpath'] /
                            'checkpoints')
  written = claim.write_claim(str(tmp_path / 'out' / 'runs'), str(tmp_path / 'claim'),
                              plots=False)
  c = json.load(open(written[0]))
  s = c['settings'][0]
  assert s['best_baseline'] == 'lr_target_only'
  assert set(s['methods']) == {'lr_meta_align', 'lr_target_only'}
  assert len(s['methods']['lr_meta_align']['diff_to_best_baseline']['sign_per_seed']) == 1


def test_compile_order_puts_one_run_of_each_kind_first():
  def run(method, seed, noise=0.0, shots=1):
    return {'relpath': f'{method}/{shots}/{noise}/{seed}',
            'labels': {'task': 't', 'method': method, 'shots': shots, 'noise': noise, 'seed': seed}}
  runs = [run('a', 0), run('a', 1), run('a', 0, 0.2), run('b', 0), run('b', 1), run('a', 0, shots=5)]
  order = [r['relpath'] for r in study.compile_order(runs)]
  # first wave: one run of each (task, method, shots) in their original order; then the rest
  assert order == ['a/1/0.0/0', 'b/1/0.0/0', 'a/5/0.0/0', 'a/1/0.0/1', 'b/1/0.0/1', 'a/1/0.2/0']
  assert sorted(order) == sorted(r['relpath'] for r in runs)


def test_export_adds_to_the_runs_of_an_earlier_export(tmp_path):
  specs = sweep.grid_runs('study_smoke', overrides=TINY)
  study.export_study(specs[:1], str(tmp_path), grid='first', log=lambda _: None)
  record = study.export_study(specs[1:], str(tmp_path), grid='second', log=lambda _: None)
  assert [r['relpath'] for r in record['runs']] == [s.relpath for s in specs]
  assert record == study.load_study(str(tmp_path)) and record['grid'] == 'first,second'
  again = study.export_study(specs[:1], str(tmp_path), grid='first', log=lambda _: None)
  assert [r['relpath'] for r in again['runs']] == [specs[1].relpath, specs[0].relpath]
  assert again['grid'] == 'second,first'
