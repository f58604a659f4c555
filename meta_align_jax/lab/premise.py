"""The premise gate: can a task test cross-modal meta-alignment at all? Method-independent numbers.

Before any method is trained, a task must embody the premise of the paper: the target modality
is hard from its few labels, learnable from many, and the source carries the class structure.
`run_gate(config, seeds)` measures, on the config's meta-test classes and its fixed evaluation
episodes (`config.eval.{ways,shots,queries}`, `config.eval.num_episodes` per seed, drawn by
`meta_align_jax.data.make_eval_episodes`, clean support labels), cosine-prototype accuracy of:

  target_raw             the raw target features (flattened; text: bag of tokens).
                         (`target_raw_centred`, reported but not gated: the same centred by
                         the meta-train mean.)
  target_random_encoder  the config's target encoder at random init (`init_train_state` from the
                         seed), prototypes on its embeddings.
  target_lda_few         PCA + shrinkage LDA (PCA size chosen on meta-validation episodes from
                         `PCA_DIMS`) fit on the labelled target data the low-resource
                         baselines get: `config.lowres.labelled_classes` meta-train classes x
                         `config.lowres.labelled_shots` examples (defaults 5 x 5; the classes and
                         examples chosen from the seed as `config.data.target_train_classes` /
                         `target_train_shots` choose them; capped at the number of meta-train
                         classes), prototypes in the LDA space.
  target_lda_all         the same fit on every meta-train class with all its target examples.
  source_lda_all         the same for the source modality (source episodes on the same classes).
  oracle                 a trained oracle's accuracy, read from results files; None until one
                         exists.

Each entry is {mean, ci95, per_seed} in percent: `per_seed` = the mean over one seed's
episodes; `mean` and `ci95` = over all episodes of all seeds pooled, ci95 = 1.96 * std / sqrt(n)
(population std, as `meta_align_jax.evaluate.mean_ci95`). The seed sets the class split, the
episodes, the labelled subset and the encoder's initialisation.

The gate (`gate`), with chance = 100 / ways and `ref` the oracle's mean (or, while the oracle is
None, target_lda_all's mean as a provisional stand-in, marked `provisional`):
  raw_near_chance      target_raw <= chance + 15
  random_near_chance   target_random_encoder <= chance + 15
  few_label_gap        target_lda_few <= ref - 25
  ref_high             ref >= 80
  source_separable     source_lda_all >= ref
"""

from __future__ import annotations

import copy
import functools
import json
import os
from typing import Callable, Sequence

import numpy as np

from meta_align_jax import io

MARGIN_OVER_CHANCE = 15.0
FEW_LABEL_GAP = 25.0
REF_MIN = 80.0
MEASURES = ('target_raw', 'target_raw_centred', 'target_random_encoder', 'target_lda_few',
            'target_lda_all', 'source_lda_all')
DEFAULT_LABELLED_CLASSES = 5
DEFAULT_LABELLED_SHOTS = 5
PCA_DIMS = (8, 16, 32, 64, 128)   # PCA sizes before LDA, chosen on meta-validation episodes
VAL_EPISODES = 200


# ------------------------------------------------------------------------------ statistics

def mean_ci95(values) -> tuple[float, float]:
  """Mean and the half-width of its normal 95 % interval, 1.96 * std / sqrt(n)."""
  values = np.asarray(values, np.float64).ravel()
  if not values.size:
    raise ValueError('mean_ci95: no values.')
  return float(values.mean()), float(1.96 * values.std() / np.sqrt(values.size))


def summarize(per_seed: Sequence[np.ndarray]) -> dict:
  """{mean, ci95, per_seed} in percent from per-seed arrays of episode accuracies (fractions)."""
  mean, ci = mean_ci95(np.concatenate([np.ravel(a) for a in per_seed]))
  return {'mean': 100 * mean, 'ci95': 100 * ci,
          'per_seed': [100 * float(np.mean(a)) for a in per_seed]}


def prototype_accuracy(features: np.ndarray, episodes: dict) -> np.ndarray:
  """Per-episode accuracy of nearest-prototype (cosine) classification, float [E].

  `episodes` holds index arrays into `features` ('support_idx' [E, N*K], 'query_idx' [E, N*Q])
  and episode-local labels ('support_y', 'query_y'). A prototype is the mean of a class's
  normalised support embeddings; a query goes to the prototype of highest cosine similarity, ties
  to the lowest label (so identical classes score exactly 1/N on balanced queries).
  """
  f = np.asarray(features, np.float64).reshape(len(features), -1)
  f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
  sy, qy = np.asarray(episodes['support_y']), np.asarray(episodes['query_y'])
  ways = int(sy.max()) + 1
  onehot = np.eye(ways)[sy]                                        # [E, NK, N]
  protos = np.einsum('esn,esd->end', onehot, f[episodes['support_idx']])
  protos /= np.maximum(np.linalg.norm(protos, axis=-1, keepdims=True), 1e-12)
  scores = np.einsum('eqd,end->eqn', f[episodes['query_idx']], protos)
  return (scores.argmax(-1) == qy).mean(-1)


# ------------------------------------------------------------------------------ features

def raw_features(x: np.ndarray, modality: str, vocab_size: int | None = None) -> np.ndarray:
  """Flattened float features; text (token ids, 0 = padding) as a bag of tokens."""
  x = np.asarray(x)
  if modality == 'text':
    size = int(vocab_size or x.max() + 1)
    bag = np.zeros([len(x), size], np.float32)
    rows = np.repeat(np.arange(len(x)), x.shape[1])
    np.add.at(bag, (rows, x.reshape(-1)), 1.0)
    bag[:, 0] = 0.0                                            # padding is no token
    return bag
  return x.reshape(len(x), -1).astype(np.float32)


def fit_lda(x: np.ndarray, y: np.ndarray, *, pca_dims: Sequence[int] = PCA_DIMS
            ) -> dict[int, Callable]:
  """PCA then shrinkage LDA (Ledoit-Wolf) fit on (x, y), for each number of PCA dimensions.

  Returns {dims: transform to the LDA space}; dims above min(features, examples - 1) are
  dropped. The LDA space has min(classes - 1, dims) dimensions; features are centred by x's mean.
  """
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  from sklearn import discriminant_analysis  # pylint: disable=g-import-not-at-top
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  if len(np.unique(y)) < 2:
    raise ValueError('fit_lda needs at least two classes.')
  most = int(min(max(pca_dims), x.shape[1], len(x) - 1))
  pca = PCA(n_components=most, random_state=0).fit(x)   # the first k components = PCA to k
  px = pca.transform(x)
  out = {}
  for dims in sorted({min(d, most) for d in pca_dims}):
    lda = discriminant_analysis.LinearDiscriminantAnalysis(
        solver='eigen', shrinkage='auto').fit(px[:, :dims], y)
    out[dims] = functools.partial(_lda_transform, pca, lda, dims)
  return out


def _lda_transform(pca, lda, dims, z):
  return lda.transform(pca.transform(np.asarray(z, np.float64).reshape(len(z), -1))[:, :dims])


def lda_accuracy(x: np.ndarray, fit: np.ndarray, y: np.ndarray, val: dict, test: dict
                 ) -> tuple[np.ndarray, int]:
  """Test episode accuracies of PCA + LDA fit on x[fit], with the PCA size of best val accuracy.

  The number of PCA dimensions (`PCA_DIMS`) is the main regulariser; it is chosen on the
  meta-validation episodes (`val`, classes disjoint from the test classes), never on `test`.
  """
  transforms = fit_lda(x[fit], y[fit])
  feats = {d: t(x) for d, t in transforms.items()}
  best = max(feats, key=lambda d: (prototype_accuracy(feats[d], val).mean(), -d))
  return prototype_accuracy(feats[best], test), int(best)


def random_encoder_features(config, x: np.ndarray, seed: int, batch: int = 256) -> np.ndarray:
  """Embeddings of target inputs `x` by the config's target encoder at random init from `seed`."""
  import jax  # pylint: disable=g-import-not-at-top
  from meta_align_jax import build_model, init_train_state  # pylint: disable=g-import-not-at-top
  model = build_model(config)
  params = init_train_state(config, model, jax.random.key(seed)).params
  embed = jax.jit(functools.partial(model.embed, side='target'))
  out = []
  for start in range(0, len(x), batch):
    idx = np.arange(start, start + batch) % len(x)             # one shape: pad by wrapping
    out.append(np.asarray(embed(params, x[idx]))[:min(batch, len(x) - start)])
  return np.concatenate(out).reshape(len(x), -1)


# ------------------------------------------------------------------------------ data

def lowres_sizes(config) -> tuple[int, int]:
  """(labelled classes, labelled shots) of the low-resource target set; defaults 5 x 5."""
  lowres = config.get('lowres', None)
  classes = int(lowres.get('labelled_classes', DEFAULT_LABELLED_CLASSES)) if lowres else \
      DEFAULT_LABELLED_CLASSES
  shots = int(lowres.get('labelled_shots', DEFAULT_LABELLED_SHOTS)) if lowres else \
      DEFAULT_LABELLED_SHOTS
  if classes < 2 or shots < 1:
    raise ValueError(f'config.lowres.labelled_classes={classes} must be >= 2 and '
                     f'config.lowres.labelled_shots={shots} >= 1.')
  return classes, shots


def _placeholder(data):
  """`data` with x replaced by its example indices [n, 1]: episodes come back as indices."""
  from meta_align_jax.data import ModalityData  # pylint: disable=g-import-not-at-top
  return ModalityData(x=np.arange(data.num_examples, dtype=np.int64)[:, None], label=data.label,
                      class_names=list(data.class_names), example_id=data.example_id)


def episode_indices(config, sources, side: str = 'target', num_episodes: int | None = None,
                    split: str = 'test') -> tuple[dict, dict]:
  """The config's fixed `split` episodes on `side`'s modality, as example indices.

  Returns (episodes {support_idx, support_y, query_idx, query_y}, splits). The source side gets
  the episodes `make_eval_episodes` would draw were the source the target: the same classes,
  ways, shots and episode seeds.
  """
  from meta_align_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  cfg = copy.deepcopy(config)
  cfg.source.input_shape = (1,)
  cfg.target.input_shape = (1,)
  if side == 'source':
    cfg.data.target_dataset = config.data.source_dataset
    cfg.data.target_feature = config.data.source_feature
  other = 'source' if side == 'target' else 'target'
  placeholders = data_lib.Sources(source=_placeholder(getattr(sources, other)),
                                  target=_placeholder(getattr(sources, side)))
  splits = data_lib.make_splits(cfg, sources=placeholders)
  ep = data_lib.make_eval_episodes(cfg, split, num_episodes, sources=placeholders)
  return {'support_idx': ep['support']['x'][..., 0], 'support_y': ep['support_clean_y'],
          'query_idx': ep['query']['x'][..., 0], 'query_y': ep['query']['y']}, splits


def class_members(data, names: Sequence[str]) -> np.ndarray:
  """Indices of every example of the named classes."""
  wanted = [data.class_names.index(n) for n in names]
  return np.flatnonzero(np.isin(data.label, wanted))


def labelled_target_indices(config, target, train_names: Sequence[str]) -> np.ndarray:
  """The low-resource labelled target set: example indices (see `lowres_sizes`)."""
  from meta_align_jax.data import splits as splits_lib  # pylint: disable=g-import-not-at-top
  classes, shots = lowres_sizes(config)
  classes = min(classes, len(train_names))   # e.g. digits -> FSDD has 4 meta-train classes
  names = splits_lib.target_train_classes(list(train_names), classes, config.seed)
  subset = splits_lib.target_subset(target, names, shots, config.seed)
  return np.concatenate([subset[n] for n in names])


# ------------------------------------------------------------------------------ measurements

def measure_seed(config, sources, *, random_encoder: bool = True
                 ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
  """Per-episode test accuracies (fractions) of every measurement for `config.seed`, and the
  PCA size each LDA measurement chose on the validation episodes."""
  episodes, splits = episode_indices(config, sources, 'target')
  val, _ = episode_indices(config, sources, 'target', VAL_EPISODES, split='val')
  target = sources.target
  vocab = int(config.model.vocab_size)
  raw = raw_features(target.x, config.target.modality, vocab)
  out, dims = {'target_raw': prototype_accuracy(raw, episodes)}, {}
  # Not part of the gate: raw features centred by the meta-train mean (as SimpleShot does).
  every = class_members(target, splits['train'])
  mean = raw[every].mean(0)
  out['target_raw_centred'] = prototype_accuracy(raw - mean, episodes)
  if random_encoder:
    used = np.unique(np.concatenate([episodes['support_idx'].ravel(),
                                     episodes['query_idx'].ravel()]))
    emb = random_encoder_features(config, np.asarray(target.x)[used], int(config.seed))
    z = np.zeros([target.num_examples, emb.shape[1]], np.float32)
    z[used] = emb
    out['target_random_encoder'] = prototype_accuracy(z, episodes)
  few = labelled_target_indices(config, target, splits['train'])
  out['target_lda_few'], dims['target_lda_few'] = lda_accuracy(raw, few, target.label, val,
                                                               episodes)
  out['target_lda_all'], dims['target_lda_all'] = lda_accuracy(raw, every, target.label, val,
                                                               episodes)
  s_episodes, s_splits = episode_indices(config, sources, 'source')
  s_val, _ = episode_indices(config, sources, 'source', VAL_EPISODES, split='val')
  if s_splits != splits:
    raise AssertionError('source and target episodes disagree on the class split')
  source = sources.source
  s_raw = raw_features(source.x, config.source.modality, vocab)
  s_every = class_members(source, splits['train'])
  out['source_lda_all'], dims['source_lda_all'] = lda_accuracy(s_raw, s_every, source.label,
                                                               s_val, s_episodes)
  return out, dims


def load_oracle(paths: Sequence[str]) -> dict | None:
  """The oracle's {mean, ci95, per_seed} (percent) from one results file per seed, or None.

  Each path is a run's `eval_results.json` (accuracy_mean / accuracy_ci95 as fractions). When an
  `episode_accuracies.npy` lies next to every file, mean and ci95 pool all episodes as the other
  measurements do; otherwise mean = the mean of the per-seed means and ci95 = sqrt(sum ci_i^2) / k
  (the interval of an average of k independent seed means).
  """
  paths = [p for p in paths if p]
  if not paths:
    return None
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f'Oracle results {missing} do not exist (--oracle takes one '
                            'eval_results.json per seed, comma-separated).')
  results = []
  for p in paths:
    with open(p) as f:
      results.append(json.load(f))
  episode_files = [os.path.join(os.path.dirname(p), io.EPISODES_FILE) for p in paths]
  if all(os.path.exists(e) for e in episode_files):
    return summarize([np.load(e) for e in episode_files])
  means = [float(r['accuracy_mean']) for r in results]
  cis = [float(r['accuracy_ci95']) for r in results]
  return {'mean': 100 * float(np.mean(means)),
          'ci95': 100 * float(np.sqrt(np.sum(np.square(cis))) / len(cis)),
          'per_seed': [100 * m for m in means]}


def gate(report: dict) -> tuple[bool, dict, bool]:
  """(passed, criteria, provisional) for a report holding the measurements, oracle and chance.

  Each criterion: {'pass', 'value', 'threshold'}; a criterion whose inputs are missing fails.
  """
  chance = report['chance']
  provisional = report.get('oracle') is None
  ref_entry = report.get('target_lda_all') if provisional else report['oracle']
  ref = None if ref_entry is None else ref_entry['mean']

  def check(value_key, threshold, ge):
    entry = report.get(value_key)
    if entry is None or threshold is None:
      return {'pass': False, 'value': None if entry is None else entry['mean'],
              'threshold': threshold, 'measure': value_key, 'rule': '>=' if ge else '<='}
    value = entry['mean']
    ok = value >= threshold if ge else value <= threshold
    return {'pass': bool(ok), 'value': value, 'threshold': threshold, 'measure': value_key,
            'rule': '>=' if ge else '<='}

  criteria = {
      'raw_near_chance': check('target_raw', chance + MARGIN_OVER_CHANCE, False),
      'random_near_chance': check('target_random_encoder', chance + MARGIN_OVER_CHANCE,
                                  False),
      'few_label_gap': check('target_lda_few',
                             None if ref is None else ref - FEW_LABEL_GAP, False),
      'ref_high': {'pass': ref is not None and ref >= REF_MIN, 'value': ref,
                   'threshold': REF_MIN, 'rule': '>=',
                   'measure': 'target_lda_all (provisional)' if provisional else 'oracle'},
      'source_separable': check('source_lda_all', ref, True),
  }
  return all(c['pass'] for c in criteria.values()), criteria, provisional


def run_gate(config, seeds: Sequence[int], *, oracle: dict | None = None,
             load: Callable | None = None, random_encoder: bool = True,
             log: Callable[[str], None] = lambda s: None) -> dict:
  """Measures every entry over `seeds` and applies the gate; returns the report (JSON-ready).

  `load(config) -> Sources` supplies the data (default: `meta_align_jax.data.load_sources`).
  """
  if load is None:
    from meta_align_jax.data import load_sources as load  # pylint: disable=g-import-not-at-top
  per_seed: dict[str, list] = {k: [] for k in MEASURES}
  pca_dims: dict[str, list] = {}
  for seed in seeds:
    cfg = copy.deepcopy(config)
    cfg.seed = int(seed)
    accs, dims = measure_seed(cfg, load(cfg), random_encoder=random_encoder)
    for k, v in accs.items():
      per_seed[k].append(v)
    for k, v in dims.items():
      pca_dims.setdefault(k, []).append(v)
    log(f'seed {seed}: ' + ', '.join(f'{k} {100 * np.mean(v):.1f}' for k, v in accs.items()))
  classes, shots = lowres_sizes(config)
  report = {k: (summarize(v) if v else None) for k, v in per_seed.items()}
  report.update(
      oracle=oracle, chance=100.0 / int(config.eval.ways), units='percent accuracy',
      seeds=[int(s) for s in seeds],
      setup={'ways': int(config.eval.ways), 'shots': int(config.eval.shots),
             'queries': int(config.eval.queries),
             'episodes_per_seed': int(len(next(iter(per_seed['target_raw'])))),
             'labelled_classes': classes, 'labelled_shots': shots,
             'pca_dims_grid': list(PCA_DIMS), 'pca_dims_chosen': pca_dims,
             'val_episodes_per_seed': VAL_EPISODES,
             'source': f'{config.data.source_dataset}/{config.data.source_feature}',
             'target': f'{config.data.target_dataset}/{config.data.target_feature}',
             'statistics': 'per_seed: mean over the seed\'s episodes; mean and ci95 (1.96 std / '
                           'sqrt n): over all episodes of all seeds'})
  report['gate_passed'], report['criteria'], report['provisional'] = gate(report)
  return report


def format_table(report: dict) -> str:
  """The report as a text table."""
  lines = [f'{"measure":24s} {"mean":>6s} {"ci95":>5s}  per seed']
  for key in (*MEASURES, 'oracle'):
    e = report.get(key)
    if e is None:
      lines.append(f'{key:24s} {"-":>6s}')
      continue
    seeds = ' '.join(f'{v:.1f}' for v in e['per_seed'])
    lines.append(f'{key:24s} {e["mean"]:6.1f} {e["ci95"]:5.1f}  {seeds}')
  lines.append(f'{"chance":24s} {report["chance"]:6.1f}')
  for name, c in report['criteria'].items():
    value = '-' if c['value'] is None else f'{c["value"]:.1f}'
    threshold = '-' if c['threshold'] is None else f'{c["threshold"]:.1f}'
    lines.append(f'  {name:20s} {"PASS" if c["pass"] else "fail"}  {c["measure"]} {value} '
                 f'{c["rule"]} {threshold}')
  lines.append(f'gate_passed: {report["gate_passed"]}'
               + (' (provisional: target_lda_all stands in for the oracle)'
                  if report['provisional'] else ''))
  return '\n'.join(lines)


def write_report(report: dict, path: str) -> str:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  io.write_atomic(path, json.dumps(report, indent=1) + '\n')
  return path
