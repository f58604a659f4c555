"""The TFDS builder of `synthetic_concepts`: configs, per-example generation, worker processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator

import numpy as np
import threadpoolctl

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.builders._espeak import EspeakNG
from meta_align_jax.data.builders.synthetic_concepts import audio
from meta_align_jax.data.builders.synthetic_concepts import audio_v2
from meta_align_jax.data.builders.synthetic_concepts import image
from meta_align_jax.data.builders.synthetic_concepts import image_v2
from meta_align_jax.data.builders.synthetic_concepts.concepts import (
    _AUDIO_STREAM, _ID_STRIDE, _IMAGE_STREAM, _SPEECH_STREAM, _TEXT_STREAM, AUDIO_FRAMES, COLOURS,
    IMAGE_SIZE, N_MELS, PATTERNS, SHAPES, SIZES, SPEECH_FRAMES, TEXT_LENGTH, Concept,
    all_concepts, instance_latents)
from meta_align_jax.data.builders.synthetic_concepts.speech import SPEECH_VOICES, render_speech
from meta_align_jax.data.builders.synthetic_concepts.text import describe, vocabulary
from meta_align_jax.data.tfsetup import tfds

# The renderers of each generation: (image, audio). Text and speech are v1's in both; v2 makes
# no speech (see docs/results/premise.md).
RENDERERS = {1: (image.render_image, audio.render_audio),
             2: (image_v2.render_image, audio_v2.render_audio)}


def make_example(concept: Concept, instance: int, *, seed: int, vocab: features.Vocabulary,
                 tts: EspeakNG | None, generation: int = 1) -> dict:
  """All features of one example except 'label' (which depends on the config's class list).

  `tts=None` skips speech (the 'speech' entry is then absent). `generation` picks the image and
  audio renderers (`RENDERERS`); the random streams are the same in every generation.
  """
  render_image, render_audio = RENDERERS[generation]
  example_id = concept.index * _ID_STRIDE + instance
  latents = instance_latents(seed, example_id)

  def stream(index: int) -> np.random.Generator:
    return np.random.default_rng([seed, example_id, index])

  # One BLAS thread: results are then bit-identical wherever they are computed (a multi-threaded
  # matrix product may round differently), and librosa's small products run several times faster.
  with threadpoolctl.threadpool_limits(1, user_api='blas'):
    description = describe(concept, latents, stream(_TEXT_STREAM))
    example = {
        'example_id': np.int64(example_id),
        'attributes': concept.attribute_ids,
        'description': description.text,
        'image': render_image(concept, latents, stream(_IMAGE_STREAM)),
        'audio': render_audio(concept, latents, stream(_AUDIO_STREAM)),
        'text': vocab.encode(description.text, TEXT_LENGTH),
    }
    if tts is not None:
      example['speech'] = render_speech(description.spoken, stream(_SPEECH_STREAM), tts)
  return example


def _make_class_examples(job: tuple[Concept, int, int, int, bool]) -> list[dict]:
  """All examples of one concept (the unit of work of a generation process)."""
  concept, num_examples, seed, generation, speech = job
  vocab = vocabulary()
  with EspeakNG() if speech else contextlib.nullcontext() as tts:
    return [make_example(concept, i, seed=seed, vocab=vocab, tts=tts, generation=generation)
            for i in range(num_examples)]


@dataclasses.dataclass(eq=False, kw_only=True)
class SyntheticConceptsConfig(tfds.core.BuilderConfig):
  """Which attribute values make the classes, how many examples per class, and the seed."""
  sizes: tuple[str, ...] = SIZES
  colours: tuple[str, ...] = COLOURS
  patterns: tuple[str, ...] = PATTERNS
  shapes: tuple[str, ...] = SHAPES
  examples_per_class: int = 20
  seed: int = 0
  generation: int = 1     # image and audio renderers (RENDERERS): 1 = the original, 2 = v2
  speech: bool = True     # render the 'speech' feature (eSpeak NG; most of the build time)

  def __post_init__(self):
    if self.generation not in RENDERERS:
      raise ValueError(f'generation={self.generation}: use one of {sorted(RENDERERS)}.')
    if not 1 <= self.examples_per_class <= _ID_STRIDE:
      raise ValueError(f'examples_per_class={self.examples_per_class}: use 1..{_ID_STRIDE}.')
    if self.seed < 0:
      raise ValueError(f'seed={self.seed}: use a non-negative integer.')
    self.concepts()  # checks the attribute values

  def concepts(self) -> list[Concept]:
    return all_concepts(self.sizes, self.colours, self.patterns, self.shapes)

  def class_names(self) -> list[str]:
    return [c.name for c in self.concepts()]


class SyntheticConcepts(tfds.core.GeneratorBasedBuilder):
  """Attribute-composed concepts as image, sound, text and speech; generated from a seed."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      SyntheticConceptsConfig(
          name='default',
          description='All 288 concepts (2 sizes x 6 colours x 4 patterns x 6 shapes), '
                      '20 examples each.'),
      SyntheticConceptsConfig(
          name='small',
          description='16 concepts (2 sizes x 2 colours x 2 patterns x 2 shapes), 4 examples '
                      'each: for tests.',
          colours=('red', 'blue'), patterns=('plain', 'striped'), shapes=('circle', 'star'),
          examples_per_class=4),
      SyntheticConceptsConfig(
          name='v2',
          description='Benchmark v2 (generation 2 image and audio renderers, no speech): all '
                      '288 concepts, 20 examples each. See docs/results/premise.md.',
          generation=2, speech=False),
      SyntheticConceptsConfig(
          name='v2_small',
          description='v2 on the 16 concepts of `small`, 4 examples each: for tests.',
          colours=('red', 'blue'), patterns=('plain', 'striped'), shapes=('circle', 'star'),
          examples_per_class=4, generation=2, speech=False),
  ]
  DEFAULT_CONFIG_NAME = 'default'

  def __init__(self, *, num_workers: int | None = None, **kwargs):
    """`num_workers`: processes that generate examples (default: the usable CPUs, at most 8;
    0 or 1: this process). The data does not depend on it. Other arguments go to TFDS.
    """
    super().__init__(**kwargs)
    if num_workers is None:
      cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
      num_workers = min(8, cpus or 1)
    self._num_workers = num_workers

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    vocab = vocabulary()
    feats = {
        'image': tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
        'audio': tfds.features.Tensor(shape=(AUDIO_FRAMES, N_MELS), dtype=np.float32),
        'speech': tfds.features.Tensor(shape=(SPEECH_FRAMES, N_MELS), dtype=np.float32),
        'text': tfds.features.Tensor(shape=(TEXT_LENGTH,), dtype=np.int32),
        'description': tfds.features.Text(),
        'attributes': tfds.features.Tensor(shape=(4,), dtype=np.int32),
        'label': tfds.features.ClassLabel(names=config.class_names()),
        'example_id': tfds.features.Scalar(dtype=np.int64),
    }
    if not config.speech:
      del feats['speech']
    return self.dataset_info_from_configs(
        description=_SHORT_DESCRIPTION,
        features=tfds.features.FeaturesDict(feats),
        supervised_keys=None,
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(
            vocabulary=vocab.words, vocab_size=len(vocab),
            attributes={'size': list(SIZES), 'colour': list(COLOURS),
                        'pattern': list(PATTERNS), 'shape': list(SHAPES)},
            seed=config.seed, examples_per_class=config.examples_per_class,
            speech_voices=list(SPEECH_VOICES)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    return {'train': self._generate_examples()}

  def _generate_examples(self) -> Iterator[tuple[int, dict]]:
    config = self.builder_config
    concepts = config.concepts()
    labels = {c: i for i, c in enumerate(concepts)}
    jobs = [(c, config.examples_per_class, config.seed, config.generation, config.speech)
            for c in concepts]
    with _map(_make_class_examples, jobs, self._num_workers) as results:
      for concept, examples in zip(concepts, results):
        for example in examples:
          yield int(example['example_id']), {**example, 'label': labels[concept]}


_map = _common.map_in_processes   # workers from a fork server: no fork after JAX has started


_SHORT_DESCRIPTION = (
    'Synthetic concepts, generated offline from a seed. Each class is a concept made of a size, '
    'colour, fill pattern and shape (e.g. "large red striped circle"); every example exists as a '
    '32x32 image, a 1 s synthetic sound (log-mel), a tokenised text description and that '
    'description spoken by eSpeak NG (log-mel), each rendered independently from the attributes '
    'with its own nuisance variation. Equal example_ids across modalities are strong pairs (they '
    'share position, scale and rotation).')

_CITATION = """\
@software{meta_align_jax_synthetic_concepts,
  title = {{synthetic\\_concepts}: attribute-composed concepts in image, sound, text and speech},
  author = {{meta\\_align\\_jax authors}},
  year = {2026},
  note = {Generated offline by meta\\_align\\_jax.data.builders.synthetic\\_concepts},
}
"""

registry.register('synthetic_concepts', SyntheticConcepts)
