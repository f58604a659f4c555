"""Tests of the embedded `synthetic_concepts` builder and its renderers.

The `small` config (16 classes x 4 examples) is prepared offline into a temporary data_dir once
per module; a few one-class configs check seeds, config independence and worker independence.
Nothing here builds the full default config.
"""

from __future__ import annotations

import numpy as np
import pytest

from configs import default as default_config
from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _espeak
from meta_align_jax.data.builders import synthetic_concepts as sc
from meta_align_jax.data.tfsetup import configure, tfds

SMALL_SHAPES = {
    'image': ((32, 32, 3), np.uint8),
    'audio': ((32, 40), np.float32),
    'speech': ((64, 40), np.float32),
    'text': ((16,), np.int32),
    'attributes': ((4,), np.int32),
    'label': ((), np.int64),
    'example_id': ((), np.int64),
}


@pytest.fixture(scope='module', autouse=True)
def _quiet_tfds():
  configure()


def _prepare(data_dir, config, num_workers=0):
  builder = sc.SyntheticConcepts(data_dir=str(data_dir), config=config, num_workers=num_workers)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def _load(builder) -> dict[str, np.ndarray]:
  data = tfds.as_numpy(builder.as_dataset(split='train', batch_size=-1))
  order = np.argsort(data['example_id'])
  return {k: v[order] for k, v in data.items()}


def _one_class_config(name, seed=0, examples=2):
  return sc.SyntheticConceptsConfig(name=name, sizes=('small',), colours=('red',),
                                    patterns=('plain',), shapes=('circle',),
                                    examples_per_class=examples, seed=seed)


@pytest.fixture(scope='module')
def small(tmp_path_factory):
  builder = _prepare(tmp_path_factory.mktemp('tfds_small'), 'small')
  return builder, _load(builder)


def test_registered_under_its_config_name():
  assert registry.get('synthetic_concepts') is sc.SyntheticConcepts
  assert default_config.get_config().data.source_dataset == 'synthetic_concepts'


def test_default_config_has_288_readable_classes_without_building(tmp_path):
  builder = sc.SyntheticConcepts(data_dir=str(tmp_path))
  assert builder.builder_config.name == 'default'
  names = builder.info.features['label'].names
  assert len(names) == len(set(names)) == 288 >= 200
  assert names[0] == 'small red plain circle'
  assert 'large red striped circle' in names
  for name, concept in zip(names, sc.all_concepts()):
    size, colour, pattern, shape = name.split(' ')
    assert (size, colour, pattern, shape) == concept
    assert size in sc.SIZES and colour in sc.COLOURS
    assert pattern in sc.PATTERNS and shape in sc.SHAPES
  # Every attribute value is shared by many classes: held-out classes recombine familiar values.
  for position, values in enumerate((sc.SIZES, sc.COLOURS, sc.PATTERNS, sc.SHAPES)):
    counts = [sum(n.split(' ')[position] == v for n in names) for v in values]
    assert counts == [288 // len(values)] * len(values)
  assert builder.builder_config.examples_per_class == 20
  assert not builder.is_prepared()


def test_vocabulary_covers_every_description():
  vocab = sc.vocabulary()
  assert len(vocab) < default_config.get_config().model.vocab_size
  assert vocab.words[:2] == ['<pad>', '<unk>']
  for concept in sc.all_concepts():
    for instance in range(3):
      example_id = concept.index * 10_000 + instance
      latents = sc.instance_latents(0, example_id)
      text, spoken = sc.describe(concept, latents, np.random.default_rng([0, example_id, 3]))
      tokens = features.tokenize(text)
      assert len(tokens) <= sc.TEXT_LENGTH, text
      ids = vocab.encode(text, sc.TEXT_LENGTH)
      assert features.UNK_ID not in ids, text
      assert spoken in text
      for value in concept:  # every attribute is named, by one of its synonyms
        assert set(sc._SYNONYMS[value]) & set(features.tokenize(spoken)), (value, spoken)


def test_small_build_features_shapes_and_dtypes(small):
  builder, data = small
  config = builder.builder_config
  assert builder.info.splits['train'].num_examples == 16 * 4
  assert builder.info.version == '1.0.0'
  assert builder.info.citation and builder.info.description
  for key, (shape, dtype) in SMALL_SHAPES.items():
    assert data[key].shape == (64,) + shape, key
    assert data[key].dtype == dtype, key
  names = builder.info.features['label'].names
  assert names == config.class_names() and len(names) == 16
  assert sorted(np.bincount(data['label'])) == [4] * 16
  assert len(set(data['example_id'])) == 64
  for label, attributes, example_id in zip(data['label'], data['attributes'], data['example_id']):
    concept = sc.Concept(*(values[i] for values, i in zip(
        (sc.SIZES, sc.COLOURS, sc.PATTERNS, sc.SHAPES), attributes)))
    assert names[label] == concept.name
    assert example_id // 10_000 == concept.index
  for key in ('audio', 'speech'):  # log-mel, 0 = -80 dB; loud bins go a little above 1
    assert 0.0 <= data[key].min() and data[key].max() < 2.0
    assert data[key].std(axis=(1, 2)).min() > 0.01, key
  assert data['image'].std(axis=(1, 2, 3)).min() > 5
  # The stored vocabulary decodes the token ids back to the stored description.
  words = builder.info.metadata['vocabulary']
  assert words == sc.vocabulary().words
  for text, description in zip(data['text'], data['description']):
    decoded = ' '.join(words[i] for i in text if i != features.PAD_ID)
    assert decoded == ' '.join(features.tokenize(description.decode()))


def test_examples_depend_only_on_seed_and_id_not_config_or_workers(small, tmp_path):
  _, data = small
  # The same examples, in a one-class config generated by 2 worker processes.
  same = _load(_prepare(tmp_path / 'seed0', _one_class_config('one_seed0'), num_workers=2))
  ids = same['example_id']
  subset = np.isin(data['example_id'], ids)
  assert subset.sum() == 2
  for key in ('image', 'audio', 'speech', 'text', 'attributes', 'description'):
    np.testing.assert_array_equal(same[key], data[key][subset], err_msg=key)
  # Another seed gives other examples.
  other = _load(_prepare(tmp_path / 'seed1', _one_class_config('one_seed1', seed=1)))
  np.testing.assert_array_equal(other['example_id'], ids)
  for key in ('image', 'audio', 'speech'):
    assert not np.array_equal(other[key], same[key]), key


def test_builder_examples_are_make_example(small):
  _, data = small
  concept = sc.Concept('large', 'blue', 'striped', 'star')
  with _espeak.EspeakNG() as tts:
    example = sc.make_example(concept, 2, seed=0, vocab=sc.vocabulary(), tts=tts)
  row = int(np.nonzero(data['example_id'] == example['example_id'])[0][0])
  for key in ('image', 'audio', 'speech', 'text', 'attributes'):
    np.testing.assert_array_equal(data[key][row], example[key], err_msg=key)
  assert data['description'][row].decode() == example['description']


def test_preparation_is_offline_and_quiet(tmp_path, capfd):
  _prepare(tmp_path, _one_class_config('quiet', examples=1))
  out, err = capfd.readouterr()
  for word in ('gs://', 'gcs', 'credential', 'auth', 'warning'):
    assert word not in (out + err).lower(), (word, out, err)


def test_renderers_are_deterministic_and_vary_with_the_seed():
  concept = sc.Concept('small', 'green', 'checkered', 'triangle')
  latents = sc.instance_latents(0, 7)
  for render, shape, dtype in ((sc.render_image, (32, 32, 3), np.uint8),
                               (sc.render_audio, (32, 40), np.float32)):
    a = render(concept, latents, np.random.default_rng(1))
    b = render(concept, latents, np.random.default_rng(1))
    c = render(concept, latents, np.random.default_rng(2))
    assert a.shape == shape and a.dtype == dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_instance_latents_are_expressed_in_image_and_text():
  concept = sc.Concept('small', 'red', 'plain', 'square')
  lefts, rights = [], []
  for example_id in range(200):
    latents = sc.instance_latents(0, example_id)
    rng = np.random.default_rng(example_id)
    text = sc.describe(concept, latents, rng).text
    if 'left' in text.split():
      assert latents.x < -0.33, (text, latents)
    if 'right' in text.split():
      assert latents.x > 0.33, (text, latents)
    if abs(latents.x) > 0.6 and abs(latents.y) < 0.2:
      image = sc.render_image(concept, latents, np.random.default_rng(example_id)).astype(float)
      redness = image[..., 0] - image[..., 1:].mean(-1)          # the shape is red
      column = (redness > 60).nonzero()[1].mean()
      (lefts if latents.x < 0 else rights).append(column)
  assert lefts and rights and max(lefts) < 15.5 < min(rights)


def test_speech_differs_across_voices_and_is_reproducible():
  text = 'a big red striped circle'
  with _espeak.EspeakNG() as tts:
    us, sr = tts.synthesize(text, voice='en-us+f2', rate=200)
    tts.synthesize('something else in between', voice='en-029+m3', rate=300, pitch=80)
    us_again, _ = tts.synthesize(text, voice='en-us+f2', rate=200)
    scottish, _ = tts.synthesize(text, voice='en-gb-scotland+m3', rate=200)
    with pytest.raises(ValueError, match='no voice'):
      tts.synthesize(text, voice='no-such-voice')
  assert sr == 22050 and us.dtype == np.float32 and 0.5 < len(us) / sr < 3.0
  np.testing.assert_array_equal(us, us_again)
  mel = lambda w: features.log_mel(w, sr, frames=64, seconds=2.0)
  assert np.abs(mel(us) - mel(scottish)).mean() > 0.02
  # Through the renderer: different random streams pick different voices.
  with _espeak.EspeakNG() as tts:
    a, b = (sc.render_speech(text, np.random.default_rng(s), tts) for s in (0, 1))
  assert a.shape == (64, 40) and a.dtype == np.float32
  assert np.abs(a - b).mean() > 0.02


def test_config_validation():
  with pytest.raises(ValueError, match='colour'):
    sc.SyntheticConceptsConfig(name='bad', colours=('pink',))
  with pytest.raises(ValueError, match='examples_per_class'):
    sc.SyntheticConceptsConfig(name='bad', examples_per_class=0)


# --- v2 (generation 2 renderers, no speech) ---------------------------------------------------


@pytest.fixture(scope='module')
def v2_small(tmp_path_factory):
  builder = _prepare(tmp_path_factory.mktemp('tfds_v2_small'), 'v2_small')
  return builder, _load(builder)


def test_v2_keeps_text_and_ids_and_renders_new_image_and_audio(v2_small, small):
  builder, v2 = v2_small
  _, v1 = small
  assert builder.builder_config.generation == 2 and 'speech' not in v2
  assert builder.info.features['label'].names == small[0].info.features['label'].names
  np.testing.assert_array_equal(v2['example_id'], v1['example_id'])
  for key in ('text', 'attributes', 'description', 'label'):
    np.testing.assert_array_equal(v2[key], v1[key], err_msg=key)   # same streams, same text
  for key, (shape, dtype) in SMALL_SHAPES.items():
    if key != 'speech':
      assert v2[key].shape == (64,) + shape and v2[key].dtype == dtype, key
  for key in ('image', 'audio'):
    assert not np.array_equal(v2[key], v1[key]), key
  example = sc.make_example(sc.Concept('large', 'blue', 'striped', 'star'), 1, seed=0,
                            vocab=sc.vocabulary(), tts=None, generation=2)   # what was written
  row = int(np.nonzero(v2['example_id'] == example['example_id'])[0][0])
  for key in ('image', 'audio', 'text'):
    np.testing.assert_array_equal(v2[key][row], example[key], err_msg=key)


def test_v2_nuisance_is_large_and_class_independent():
  """One concept, many instances: v2 spreads level and background far more than v1 does."""
  concept = sc.Concept('small', 'green', 'plain', 'circle')
  v1, v2 = {'image': [], 'audio': []}, {'image': [], 'audio': []}
  for example_id in range(12):
    latents = sc.instance_latents(0, example_id)
    for out, gen in ((v1, 1), (v2, 2)):
      render_image, render_audio = sc.RENDERERS[gen]
      out['image'].append(render_image(concept, latents, np.random.default_rng([example_id, 1])))
      out['audio'].append(render_audio(concept, latents, np.random.default_rng([example_id, 2])))
  corner = lambda images: np.array([im[:3, :3].mean() for im in images])   # background only
  assert corner(v2['image']).std() > 2 * corner(v1['image']).std()
  loudest = lambda mels: np.array([m.max() for m in mels])                 # clip level
  assert loudest(v2['audio']).std() > 2 * loudest(v1['audio']).std()


def test_generation_validation():
  with pytest.raises(ValueError, match='generation=3'):
    sc.SyntheticConceptsConfig(name='bad', generation=3)
