"""The low-resource protocol (`config.lowres`): what target data a method may see, resolved once.

With `config.lowres.enabled`, every method of a claim sees the same target data:

- the labelled set: `lowres.labelled_classes` meta-train classes x `lowres.labelled_shots`
  examples (a seeded subset, `data.splits.target_train_classes` / `target_subset`); `apply` writes
  them to `data.target_train_classes` / `data.target_train_shots`, which the pipeline reads;
- alignment pairs (`lowres.pairs`):
  'strong': instance pairs (one underlying instance rendered in both modalities, matched by
    example_id) over ALL meta-train classes, drawn by the SOURCE example's class: the target
    side is unlabelled, no target label is read (`meta_align_jax.data.lowres.unlabelled_pairs`);
  'weak': same-label pairs; those are labels, so they come from the labelled set only;
  'none': no alignment (`align.enabled` = False).

`apply(config)` is idempotent; the launchers (launch/run.py, launch/export_data.py, the sweep's
`build_config`) call it, and `check_applied` (called by the data pipeline and the training loop)
refuses a config in which the derived fields disagree with `config.lowres`.
"""

from __future__ import annotations

PAIRS = ('strong', 'weak', 'none')


def enabled(config) -> bool:
  lowres = config.get('lowres', None)
  return bool(lowres is not None and lowres.get('enabled', False))


def check(config) -> None:
  """Validates `config.lowres` (nothing when it is absent or disabled)."""
  if not enabled(config):
    return
  lr = config.lowres
  for name, low in (('labelled_classes', 0), ('labelled_shots', 1)):
    v = lr[name]
    if isinstance(v, bool) or int(v) != v or v < low:
      raise ValueError(f'config.lowres.{name}={v!r} must be an integer >= {low}'
                       + (' (0: every meta-train class, the oracle)' if low == 0 else '') + '.')
  if lr.pairs not in PAIRS:
    raise ValueError(f'config.lowres.pairs={lr.pairs!r}: use one of {PAIRS}.')
  if lr.get('pseudo_labels', False) and 'target' not in tuple(config.task.meta_on):
    raise ValueError("config.lowres.pseudo_labels=True labels target clips for target training "
                     "tasks: add 'target' to config.task.meta_on.")
  ps = lr.get('pair_instances', 0)
  if isinstance(ps, bool) or int(ps) != ps or ps < 0:
    raise ValueError(f'config.lowres.pair_instances={ps!r} must be an integer >= 0 (0: every '
                     f'instance of every meta-train class).')


def derived(config) -> dict:
  """The fields `apply` sets: dotted name -> value."""
  lr = config.lowres
  out = {'data.target_train_classes': int(lr.labelled_classes),
         'data.target_train_shots': int(lr.labelled_shots)}
  if lr.pairs == 'none':
    out['align.enabled'] = False
  else:
    out['align.enabled'] = True
    out['align.kind'] = lr.pairs
    out['align.classes'] = 'train'
  if lr.pairs == 'strong':   # unlabelled pairs carry no label that noise could flip
    out['data.align_noise'] = 0.0
  return out


def _get(config, dotted):
  node = config
  for p in dotted.split('.'):
    node = node[p]
  return node


def apply(config):
  """Writes the protocol's derived fields into `config` (in place; returned). No-op when off."""
  check(config)
  if not enabled(config):
    return config
  for dotted, value in derived(config).items():
    group, name = dotted.split('.')
    config[group][name] = value
  return config


def check_applied(config) -> None:
  """Raises when `config.lowres` is on but a derived field was not (or was otherwise) set."""
  check(config)
  if not enabled(config):
    return
  wrong = [f'config.{k}={_get(config, k)!r} (lowres wants {v!r})'
           for k, v in derived(config).items() if _get(config, k) != v]
  if wrong:
    raise ValueError(f'config.lowres.enabled=True but {"; ".join(wrong)}: the protocol sets these '
                     f'fields; call meta_align_jax.lowres.apply(config) (the launchers do) and do '
                     f'not override them.')


def unlabelled_strong_pairs(config) -> bool:
  """Whether alignment uses strong pairs over all meta-train classes with target labels withheld."""
  return enabled(config) and config.lowres.pairs == 'strong'


def pseudo_labels(config) -> bool:
  """Whether target training tasks use clips labelled through their strong pair's source class
  (`config.lowres.pseudo_labels`; the pseudo-label baseline)."""
  return enabled(config) and bool(config.lowres.get('pseudo_labels', False))


def check_target_train_classes(config, num_train: int) -> int:
  """How many meta-train classes have labelled target data; raises on a value that cannot work.

  `config.data.target_train_classes` (0 = all `num_train`) must not exceed the meta-train classes
  and must leave enough classes for the target's training uses: N-way target tasks (when
  'target' is in config.task.meta_on) and alignment batches of config.align.ways classes (when
  alignment draws from the meta-train classes only). Used by the training loop before anything
  compiles (`validation`) and by the data pipeline (`data/checks.py`).
  """
  value = config.data.get('target_train_classes', 0)
  if isinstance(value, bool) or int(value) != value or value < 0:
    raise ValueError(f'config.data.target_train_classes={value!r} must be an integer >= 0 '
                     f'(0: every meta-train class has labelled target data).')
  value = int(value)
  if value == 0:
    return num_train
  if value > num_train:
    raise ValueError(f'config.data.target_train_classes={value} exceeds the {num_train} '
                     f'meta-train classes (config.data.split_fractions='
                     f'{tuple(config.data.split_fractions)}); use 0 for all of them.')
  needs = []
  if 'target' in tuple(config.task.meta_on):
    needs.append(('config.task.ways', config.task.ways, 'target training tasks'))
  if (config.align.enabled and config.align.classes == 'train'
      and not unlabelled_strong_pairs(config)):   # those pairs use every class, unlabelled
    needs.append(('config.align.ways', config.align.ways, 'alignment batches'))
  for field, ways, what in needs:
    if value < ways:
      raise ValueError(f'config.data.target_train_classes={value} is smaller than {field}={ways}: '
                       f'{what} draw {ways} distinct classes from the labelled target classes. '
                       f'Raise it (0 = all meta-train classes) or lower {field}.')
  return value
