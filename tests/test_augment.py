"""Augmentation as config: rotations as new classes (data side) and the light augmentation of
training episodes drawn inside the train step from (seed, step)."""

import jax
import numpy as np
import pytest

from meta_align_jax import augment, data, init_train_state, make_train_step, random_batch
from meta_align_jax import build_model
from meta_align_jax.data import augment as data_augment
from meta_align_jax.data import splits as splits_lib
from tests.tiny import override, tiny_config


def _characters(num_classes=12, per_class=3, size=6):
  rng = np.random.default_rng(1)
  label = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
  return data.ModalityData(x=rng.random((label.size, size, size, 1), dtype=np.float32),
                           label=label, class_names=[f'a/char{i:02d}' for i in range(num_classes)],
                           example_id=np.arange(label.size, dtype=np.int64) + 100)


def test_rotation_classes_are_exact_rotations():
  base = _characters()
  rot = data_augment.rotation_classes(base)
  assert len(rot.class_names) == 4 * len(base.class_names)
  assert rot.num_examples == 4 * base.num_examples
  assert len(set(rot.example_id.tolist())) == rot.num_examples
  for name, angle in (('a/char03', 0), ('a/char03', 90), ('a/char07', 180), ('a/char07', 270)):
    src = base.x[base.label == base.class_names.index(name)]
    got = rot.x[rot.label == rot.class_names.index(data_augment.rotated_name(name, angle))]
    np.testing.assert_array_equal(got, np.rot90(src, angle // 90, axes=(1, 2)))
  assert data_augment.base_name('a/char07@rot270') == 'a/char07'
  with pytest.raises(ValueError, match='rotation_classes=True rotates square images'):
    data_augment.rotation_classes(data.ModalityData(
        x=np.zeros((2, 4, 5, 1), np.float32), label=np.zeros(2, np.int32), class_names=['x'],
        example_id=np.arange(2)))


def test_rotations_of_a_character_share_a_split():
  rot = data_augment.rotation_classes(_characters())
  c = tiny_config(**{'task.modalities': ('target',), 'augment.rotation_classes': True,
                     'data.split_fractions': (0.5, 0.25, 0.25)})
  splits = splits_lib.make_splits(c, sources=data.Sources(source=rot, target=rot))
  assert [len(splits[s]) for s in ('train', 'val', 'test')] == [24, 12, 12]
  where = {n: s for s, names in splits.items() for n in names}
  for name in rot.class_names:
    assert where[name] == where[data_augment.base_name(name)], name
  # The originals are split as they would be without rotations.
  plain = splits_lib.split_classes(_characters().class_names, c.seed, c.data.split_fractions)
  assert {s: [n for n in v if '@' not in n] for s, v in splits.items()} == plain


def _augmenting_config(**overrides):
  # An image side (source: 8x8x3) and a spectrogram side (target: 6 frames x 5 mels).
  return tiny_config(**{'task.meta_on': ('source', 'target'), 'augment.shift': 2,
                        'augment.flip': True, 'augment.gain': 0.5, 'augment.mask': 2,
                        'align.enabled': False, 'meta.learner': 'protonet', **overrides})


def test_augmentation_is_a_function_of_seed_and_step():
  c = _augmenting_config()
  batch = random_batch(c, seed=3)
  tasks = {k: batch[k] for k in ('source', 'target')}
  rng = jax.random.key(c.seed + 1)
  at = lambda s: augment.augment_tasks(c, tasks, augment.step_key(rng, s))
  a0, again, a1 = at(0), at(0), at(1)
  jax.tree.map(np.testing.assert_array_equal, a0, again)
  for side in ('source', 'target'):
    for part in ('support', 'query'):
      x, y0, y1 = (np.asarray(t[side][part]['x']) for t in (tasks, a0, a1))
      assert not np.array_equal(y0, x) and not np.array_equal(y0, y1), (side, part)
      np.testing.assert_array_equal(a0[side][part]['y'], tasks[side][part]['y'])
  # Shifts fill with zeros: some augmented images have zero rows at their border.
  img = np.asarray(a0['source']['support']['x'])
  assert (np.abs(img).reshape(-1, 8, 8, 3).max(axis=(2, 3)) == 0).any()
  off = override(_augmenting_config(), **{'augment.shift': 0, 'augment.flip': False,
                                          'augment.gain': 0.0, 'augment.mask': 0})
  assert augment.augment_tasks(off, tasks, augment.step_key(rng, 0)) is tasks


def test_train_step_sees_the_augmented_batch_of_its_step():
  """The step augments `batch` exactly as `augment_tasks(step_key(rng, step))`: the same numbers
  as an unaugmenting step fed the augmented batch. Host and device-gathered batches are equal
  (tests/test_device_gather.py), so both feeds are augmented alike, and resuming is exact."""
  c = _augmenting_config()
  plain = override(_augmenting_config(), **{'augment.shift': 0, 'augment.flip': False,
                                            'augment.gain': 0.0, 'augment.mask': 0})
  model = build_model(c)
  state = init_train_state(c, model, jax.random.key(0))
  state = state.replace(step=state.step + 7)
  batch, rng = random_batch(c, seed=3), jax.random.key(c.seed + 1)
  _, metrics = make_train_step(c, model)(state, batch, rng)
  tasks = augment.augment_tasks(c, {k: batch[k] for k in ('source', 'target')},
                                augment.step_key(rng, 7))
  fed = jax.tree.map(np.asarray, {**batch, **tasks})
  _, expected = make_train_step(plain, build_model(plain))(state, fed, rng)
  _, unaugmented = make_train_step(plain, build_model(plain))(state, batch, rng)
  np.testing.assert_allclose(metrics['loss'], expected['loss'], rtol=1e-5)
  assert abs(float(metrics['loss']) - float(unaugmented['loss'])) > 1e-4


@pytest.mark.parametrize('field,value,match', [
    ('augment.shift', -1, 'config.augment.shift=-1'),
    ('augment.shift', 8, r'config.augment.shift=8 is not smaller'),
    ('augment.mask', 6, r'config.augment.mask=6 is not smaller'),
    ('augment.gain', float('inf'), 'config.augment.gain=inf'),
    ('augment.gain', -0.5, 'config.augment.gain=-0.5'),
    ('augment.rotation_classes', True, 'config.augment.rotation_classes=True'),
])
def test_bad_values_refused_naming_the_field(field, value, match):
  c = _augmenting_config(**{field: value, 'source.input_shape': (8, 7, 3)}
                         if field == 'augment.rotation_classes' else {field: value})
  with pytest.raises(ValueError, match=match):
    init_train_state(c, build_model(c), jax.random.key(0))
