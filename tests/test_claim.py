"""lab/claim.py's arithmetic on made-up per-episode accuracies (hand-computed expectations)."""

import json
import os

import numpy as np
import pytest

from meta_align_jax.lab import claim

EPISODES = {   # (method, role, primary protocol) -> noise -> seed -> accuracies of 4 episodes
    ('ours', 'ours', 'finetune'): {0.0: {0: [.6, .6, .6, .8], 1: [.3, .5, .5, .5]},
                                   0.2: {0: [.5, .5, .5, .5], 1: [.5, .5, .5, .5]}},
    ('b1', 'baseline', 'finetune'): {0.0: {0: [.2, .4, .6, .8], 1: [.4, .4, .4, .4]},
                                     0.2: {0: [.6, .6, .6, .6], 1: [.4, .4, .4, .4]}},
    ('b2', 'baseline', 'proto'): {0.0: {0: [.2] * 4, 1: [.3] * 4},
                                  0.2: {0: [.2] * 4, 1: [.3] * 4}},
    ('orc', 'oracle', 'finetune'): {0.0: {0: [.9] * 4, 1: [.7] * 4}},
}


def _write_runs(root):
  for (method, role, primary), by_noise in EPISODES.items():
    for noise, by_seed in by_noise.items():
      for seed, acc in by_seed.items():
        d = os.path.join(root, 't', method, f'k1_n{int(100 * noise)}', f'seed{seed}')
        os.makedirs(d)
        json.dump({'task': 't', 'method': method, 'shots': 1, 'noise': noise, 'seed': seed,
                   'role': role}, open(os.path.join(d, 'sweep_run.json'), 'w'))
        json.dump({'ways': 5, 'method': primary, 'accuracy_mean': float(np.mean(acc))},
                  open(os.path.join(d, 'eval_results.json'), 'w'))
        np.save(os.path.join(d, 'episode_accuracies.npy'), np.asarray(acc, np.float32))
        other = 'proto' if primary == 'finetune' else 'finetune'
        if method == 'ours':   # the other protocol, 0.1 lower on every episode
          np.save(os.path.join(d, f'episode_accuracies_{other}.npy'),
                  np.asarray(acc, np.float32) - 0.1)


def test_claim_numbers_match_hand_computation(tmp_path):
  _write_runs(str(tmp_path / 'runs'))
  written = claim.write_claim(str(tmp_path / 'runs'), str(tmp_path / 'out'), plots=True)
  assert str(tmp_path / 'out' / 't.json') in written
  assert any(p.endswith('t_noise_k1.png') for p in written)
  c = json.load(open(tmp_path / 'out' / 't.json'))
  assert c['ways'] == 5 and c['chance'] == pytest.approx(0.2)
  s0, s2 = c['settings']
  assert (s0['noise'], s2['noise']) == (0.0, 0.2)
  assert s0['best_baseline'] == 'b1' and s0['oracle']['mean'] == pytest.approx(0.8)
  ours = s0['methods']['ours']
  assert ours['mean'] == pytest.approx(0.55)
  assert ours['per_seed'] == pytest.approx({'0': 0.65, '1': 0.45})
  assert ours['ci95'] == pytest.approx(1.96 * np.sqrt((.0075 / 4 + .0075 / 4) / 4))
  d = ours['diff_to_best_baseline']
  assert d['mean'] == pytest.approx(0.10)
  assert d['per_seed'] == pytest.approx({'0': 0.15, '1': 0.05})
  assert d['ci95'] == pytest.approx(1.96 * np.sqrt((.0275 / 4 + .0075 / 4) / 4))
  assert d['sign_per_seed'] == {'0': 1, '1': 1} and d['wins_every_seed']
  assert ours['gap_closed'] == pytest.approx(0.1 / 0.35)
  assert ours['protocols']['proto']['mean'] == pytest.approx(0.45)
  assert ours['protocols']['finetune']['mean'] == pytest.approx(0.55)
  assert s0['methods']['b2']['protocol'] == 'proto'
  assert 'diff_to_best_baseline' not in s0['methods']['b1']   # the best baseline itself
  assert 'diff_to_best_baseline' not in s0['methods']['orc']
  # noise 0.2: no oracle run there -> the noise-0 oracle of the same shots; b1 is best (0.5).
  assert s2['oracle'] == {'method': 'orc', 'noise': 0.0, 'mean': pytest.approx(0.8)}
  d2 = s2['methods']['ours']['diff_to_best_baseline']
  assert d2['mean'] == pytest.approx(0.0, abs=1e-6) and d2['sign_per_seed'] == {'0': -1, '1': 1}
  assert not d2['wins_every_seed']
  assert s2['methods']['ours']['gap_closed'] == pytest.approx(0.0, abs=1e-6)


def test_gap_closed_is_null_without_a_better_oracle():
  assert claim.gap_closed(0.5, 0.4, None) is None
  assert claim.gap_closed(0.5, 0.4, 0.4) is None
  assert claim.gap_closed(0.3, 0.4, 0.6) == pytest.approx(-0.5)


def test_runs_without_episode_accuracies_are_refused(tmp_path):
  _write_runs(str(tmp_path))
  os.remove(tmp_path / 't' / 'b1' / 'k1_n0' / 'seed1' / 'episode_accuracies.npy')
  with pytest.raises(ValueError, match='No per-episode accuracies'):
    claim.task_claim(claim.load_runs(str(tmp_path)), 't')


def test_best_baseline_on_either_protocol_is_the_generous_comparison(tmp_path):
  _write_runs(str(tmp_path))
  for seed, acc in ((0, .9), (1, .7)):   # b2's other protocol beats every primary baseline
    np.save(tmp_path / 't' / 'b2' / 'k1_n0' / f'seed{seed}' / 'episode_accuracies_finetune.npy',
            np.full([4], acc, np.float32))
  c = claim.task_claim(claim.load_runs(str(tmp_path)), 't')
  s0, s2 = c['settings']
  assert s0['best_baseline'] == 'b1'   # on primary protocols, unchanged
  assert s0['best_baseline_any_protocol'] == {'method': 'b2', 'protocol': 'finetune',
                                              'mean': pytest.approx(0.8)}
  ours = s0['methods']['ours']
  d = ours['diff_to_best_baseline_any_protocol']
  assert d['per_seed'] == pytest.approx({'0': -0.25, '1': -0.25})
  assert d['sign_per_seed'] == {'0': -1, '1': -1} and not d['wins_every_seed']
  assert ours['diff_by_protocol']['finetune']['mean'] == pytest.approx(-0.25)
  assert ours['diff_by_protocol']['proto']['per_seed'] == pytest.approx({'0': -0.35, '1': -0.35})
  assert 'diff_to_best_baseline_any_protocol' not in s0['methods']['b2']
  assert 'diff_to_best_baseline_any_protocol' in s0['methods']['b1']
  # noise 0.2: b2 reported only its primary protocol there; b1 (0.5) is the best on either.
  assert s2['best_baseline_any_protocol']['method'] == 'b1'
