"""Tests of the premise gate (meta_align_jax/lab/premise.py) on tiny made-up datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from meta_align_jax.data import ModalityData, Sources
from meta_align_jax.lab import premise
from tests.tiny import tiny_config

A, B, PER_CLASS = 5, 6, 8     # attribute values; 30 classes of 8 examples


def test_prototype_accuracy_by_hand():
  f = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [0.1, 3.0], [1.0, 1.1], [-1.0, 0.0]])
  episodes = {'support_idx': np.array([[0, 1]]), 'support_y': np.array([[0, 1]]),
              # queries: (2 -> 0 right), (3 -> 1 right), (4 is nearer 1, labelled 0: wrong),
              # (5 is at -180 degrees from 0, -90 from 1: nearer 1, labelled 0: wrong)
              'query_idx': np.array([[2, 3, 4, 5]]), 'query_y': np.array([[0, 1, 0, 0]])}
  np.testing.assert_allclose(premise.prototype_accuracy(f, episodes), [0.5])
  # Prototypes average normalised support vectors (the 5x longer one counts once): two supports
  # of class 0 at 0 and 90 degrees make a 45-degree prototype, 15 degrees from a query at 60
  # degrees, which class 1 at 100 degrees (40 degrees away) does not beat.
  deg = lambda a: [np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))]
  f = np.array([deg(0), 5 * np.array(deg(90)), deg(100), deg(60)])
  ep = {'support_idx': np.array([[0, 1, 2]]), 'support_y': np.array([[0, 0, 1]]),
        'query_idx': np.array([[3]]), 'query_y': np.array([[0]])}
  np.testing.assert_allclose(premise.prototype_accuracy(f, ep), [1.0])


def test_identical_classes_score_exactly_chance():
  f = np.ones([12, 4])
  rng = np.random.default_rng(0)
  ep = {'support_idx': rng.integers(0, 12, [7, 4]), 'support_y': np.tile(np.arange(4), (7, 1)),
        'query_idx': rng.integers(0, 12, [7, 8]), 'query_y': np.tile(np.repeat(np.arange(4), 2),
                                                                     (7, 1))}
  np.testing.assert_array_equal(premise.prototype_accuracy(f, ep), np.full(7, 0.25))


def test_mean_ci95_and_summary():
  mean, ci = premise.mean_ci95([1.0, 0.0, 1.0, 1.0])
  assert mean == 0.75 and ci == pytest.approx(1.96 * np.sqrt(0.1875) / 2)
  s = premise.summarize([np.array([1.0, 0.5]), np.array([0.0, 0.0, 0.25, 0.25])])
  assert s['per_seed'] == pytest.approx([75.0, 12.5])
  all_ = np.array([1, 0.5, 0, 0, 0.25, 0.25])   # pooled over episodes, not the mean of seeds
  assert s['mean'] == pytest.approx(100 * all_.mean())
  assert s['ci95'] == pytest.approx(100 * 1.96 * all_.std() / np.sqrt(6))
  with pytest.raises(ValueError, match='no values'):
    premise.mean_ci95([])


def test_bag_of_tokens_ignores_padding():
  bag = premise.raw_features(np.array([[3, 3, 1, 0, 0], [2, 0, 0, 0, 0]]), 'text', vocab_size=5)
  np.testing.assert_array_equal(bag, [[0, 1, 0, 2, 0], [0, 0, 1, 0, 0]])


def _entry(mean):
  return {'mean': mean, 'ci95': 1.0, 'per_seed': [mean]}


def _report(raw=25, rand=30, few=55, all_=90, src=95, oracle=None, chance=20.0):
  return {'target_raw': _entry(raw), 'target_random_encoder': _entry(rand),
          'target_lda_few': _entry(few), 'target_lda_all': _entry(all_),
          'source_lda_all': _entry(src), 'oracle': None if oracle is None else _entry(oracle),
          'chance': chance}


def test_gate_logic():
  passed, criteria, provisional = premise.gate(_report())
  assert passed and provisional and all(c['pass'] for c in criteria.values())
  assert criteria['few_label_gap']['threshold'] == 65    # lda_all - 25 while provisional
  for kwargs, failing in (({'raw': 35.5}, 'raw_near_chance'), ({'rand': 36}, 'random_near_chance'),
                          ({'few': 65.5}, 'few_label_gap'), ({'all_': 79, 'few': 40, 'src': 99},
                                                             'ref_high'),
                          ({'src': 89.9}, 'source_separable')):
    passed, criteria, _ = premise.gate(_report(**kwargs))
    assert not passed and [k for k, c in criteria.items() if not c['pass']] == [failing], kwargs
  assert premise.gate(_report(raw=35, rand=35, few=65))[0]             # the bounds are inclusive
  # A real oracle replaces the stand-in: 85 % puts the few-label bound at 60 and needs source >= 85.
  passed, criteria, provisional = premise.gate(_report(oracle=85.0, few=61))
  assert not provisional and not passed
  assert [k for k, c in criteria.items() if not c['pass']] == ['few_label_gap']
  assert criteria['source_separable']['threshold'] == 85.0
  assert premise.gate(_report(oracle=85.0, few=60))[0]
  # Missing numbers fail their criteria rather than pass silently.
  report = _report()
  report['target_random_encoder'] = None
  assert not premise.gate(report)[1]['random_near_chance']['pass']


def _sources(target_x, source_x):
  label = np.repeat(np.arange(A * B), PER_CLASS).astype(np.int32)
  names = [f'a{a} b{b}' for a in range(A) for b in range(B)]
  ids = np.arange(len(label), dtype=np.int64)
  return Sources(source=ModalityData(x=source_x, label=label, class_names=names, example_id=ids),
                 target=ModalityData(x=target_x, label=label, class_names=names, example_id=ids))


def _codes():
  """Attribute codes one-hot(a) ++ one-hot(b), one row per example, in tight clusters (+-0.01)."""
  label = np.repeat(np.arange(A * B), PER_CLASS)
  codes = np.concatenate([np.eye(A)[label // B], np.eye(B)[label % B]], 1)
  return (codes + np.random.default_rng(1).uniform(-.01, .01, codes.shape)).astype(np.float32)


def _config(**kw):
  c = tiny_config(**kw)
  c.eval.num_episodes = 50
  return c


def test_gate_on_separable_and_on_classless_data():
  codes = _codes()
  n = len(codes)
  pad = lambda x, shape: np.pad(x, [(0, 0), (0, int(np.prod(shape)) - x.shape[1])]).reshape(
      (n,) + shape)
  config = _config()
  # Attribute codes in both modalities: prototypes on the raw features and LDA fit
  # on all meta-train classes (new combinations of seen attribute values) are exact.
  sep = _sources(pad(codes, (6, 5)), pad(codes, (8, 8, 3)))
  report = premise.run_gate(config, [0, 1], load=lambda cfg: sep, random_encoder=False)
  for key in ('target_raw', 'target_lda_all', 'source_lda_all'):
    assert report[key]['mean'] == 100.0 and report[key]['ci95'] == 0.0, key
    assert report[key]['per_seed'] == [100.0, 100.0], key
  assert report['chance'] == pytest.approx(100 / 3)
  assert report['setup']['episodes_per_seed'] == 50 and report['setup']['labelled_classes'] == 5
  assert not report['gate_passed'] and report['provisional'] and report['oracle'] is None
  assert not report['criteria']['raw_near_chance']['pass']
  json.dumps(report)   # JSON-ready
  # Target features independent of the class: every target measurement sits at chance.
  noise = np.random.default_rng(0).normal(size=(n, 6, 5)).astype(np.float32)
  flat = _sources(noise, pad(codes, (8, 8, 3)))
  report = premise.run_gate(config, [0, 1, 2], load=lambda cfg: flat)
  for key in ('target_raw', 'target_random_encoder', 'target_lda_few', 'target_lda_all'):
    assert abs(report[key]['mean'] - 100 / 3) < 2 * report[key]['ci95'], (key, report[key])
  assert report['source_lda_all']['mean'] == 100.0
  assert not report['criteria']['ref_high']['pass']


def test_labelled_set_is_the_seeded_low_resource_subset():
  codes = _codes()
  src = _sources(codes.reshape(-1, 1, 11), codes.reshape(-1, 1, 11)).target
  config = _config()
  train = [f'a{a} b{b}' for a in range(A) for b in range(B)][:18]
  idx = premise.labelled_target_indices(config, src, train)
  assert len(idx) == 25 and len(np.unique(src.label[idx])) == 5
  assert {src.class_names[i] for i in src.label[idx]} <= set(train)
  np.testing.assert_array_equal(idx, premise.labelled_target_indices(config, src, train))
  config.seed = 1
  assert not np.array_equal(idx, premise.labelled_target_indices(config, src, train))
  config.lowres = {'labelled_classes': 3, 'labelled_shots': 2}
  assert len(premise.labelled_target_indices(config, src, train)) == 6
  config.lowres = {'labelled_classes': 19, 'labelled_shots': 2}   # capped at the 18 train classes
  assert len(premise.labelled_target_indices(config, src, train)) == 36
  config.lowres = {'labelled_classes': 1, 'labelled_shots': 2}
  with pytest.raises(ValueError, match='labelled_classes=1 '):
    premise.labelled_target_indices(config, src, train)


def test_oracle_from_results_files(tmp_path):
  assert premise.load_oracle([]) is None
  paths = []
  for seed, (acc, ci) in enumerate(((0.8, 0.03), (0.9, 0.04))):
    (tmp_path / str(seed)).mkdir()
    path = tmp_path / str(seed) / 'eval_results.json'
    path.write_text(json.dumps({'accuracy_mean': acc, 'accuracy_ci95': ci}))
    paths.append(str(path))
  oracle = premise.load_oracle(paths)
  assert oracle['mean'] == pytest.approx(85.0) and oracle['per_seed'] == pytest.approx([80, 90])
  assert oracle['ci95'] == pytest.approx(100 * np.sqrt(0.03 ** 2 + 0.04 ** 2) / 2)
  for seed, accs in enumerate(([1.0, 0.6], [0.8, 0.8, 1.0, 1.0])):
    np.save(tmp_path / str(seed) / 'episode_accuracies.npy', np.array(accs, np.float32))
  oracle = premise.load_oracle(paths)   # episodes pooled when every run saved them
  assert oracle['mean'] == pytest.approx(100 * np.mean([1, .6, .8, .8, 1, 1]))
  with pytest.raises(FileNotFoundError, match='eval_results'):
    premise.load_oracle([str(tmp_path / 'nope.json')])
