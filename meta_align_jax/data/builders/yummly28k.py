"""Yummly-28K recipes: ingredient text and dish photo of each recipe, labelled by cuisine or course.

Read from a local copy of Yummly-28K (27,638 recipes scraped from the Yummly API by Min et al.),
laid out as `metadata27638/metaNNNNN.json` + `images27638/imgNNNNN.jpg`. Each recipe gives one
example with two modalities of the same instance (equal 'example_id' = strong pair):
'text', the recipe's `ingredientLines` as int32 token ids `[64]`, and 'image', its photo
centre-cropped and resized to uint8 `[64, 64, 3]`. The word vocabulary (at most 5,000 entries,
0 = pad, 1 = unk) is built from the ingredient lines of the kept recipes and stored in the
dataset's metadata (`_common.vocabulary(builder)`).

Configs: 'cuisine' (default) labels by `attributes.cuisine`, 'course' by `attributes.course`;
a recipe listing several values takes the first, and recipes without one are left out.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

from absl import logging
import numpy as np
from PIL import Image

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.tfsetup import tfds

TEXT_LENGTH = 64
IMAGE_SIZE = 64
MAX_VOCAB = 5000
META_DIR, IMAGE_DIR = 'metadata27638', 'images27638'
_META_RE = re.compile(r'^meta(\d+)\.json$')

_LAYOUT = f"""\
  <manual_dir>/                  (or <manual_dir>/yummly28k/, <manual_dir>/Yummly28K/)
    {META_DIR}/metaNNNNN.json    one Yummly recipe per file, with "name", "ingredientLines" and
                                 "attributes": {{"cuisine": [...], "course": [...]}}
    {IMAGE_DIR}/imgNNNNN.jpg     the recipe's photo, same number NNNNN
  (the layout of the Yummly28K archive of Min et al., 2017)"""
_SUBDIRS = ('yummly28k', 'Yummly28K', 'Yummly-28K')


@dataclasses.dataclass(eq=False)
class Yummly28kConfig(tfds.core.BuilderConfig):
  """Which recipe attribute is the class label."""
  attribute: str = 'cuisine'


@dataclasses.dataclass(frozen=True)
class Recipe:
  number: int
  stem: str
  name: str
  text: str
  label: str


def _meta_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """metaNNNNN.json files keyed by their number string NNNNN."""
  meta_dir = root / META_DIR
  return {m[1]: p for p in meta_dir.iterdir() if (m := _META_RE.match(p.name))}


def _missing(root: pathlib.Path) -> list[str]:
  if not (root / META_DIR).is_dir():
    return [f'{META_DIR}/']
  if not (root / IMAGE_DIR).is_dir():
    return [f'{IMAGE_DIR}/']
  numbers = _meta_files(root)
  if not numbers:
    return [f'{META_DIR}/metaNNNNN.json files']
  images = {p.name for p in (root / IMAGE_DIR).iterdir()}
  return [f'{IMAGE_DIR}/img{n}.jpg (for {META_DIR}/meta{n}.json)' for n in sorted(numbers)
          if f'img{n}.jpg' not in images]


def _attribute(meta: dict, attribute: str) -> str | None:
  """The recipe's first value of `attribute`, under "attributes" or at the top level."""
  value = (meta.get('attributes') or {}).get(attribute, meta.get(attribute))
  if isinstance(value, (list, tuple)):
    value = next((v for v in value if isinstance(v, str) and v.strip()), None)
  return value.strip() if isinstance(value, str) and value.strip() else None


def read_recipes(root: pathlib.Path, attribute: str) -> list[Recipe]:
  """Recipes that have a value of `attribute`, sorted by number."""
  recipes, unlabelled = [], 0
  for number, path in sorted(_meta_files(root).items(), key=lambda kv: int(kv[0])):
    with path.open(encoding='utf-8') as f:
      meta = json.load(f)
    label = _attribute(meta, attribute)
    if label is None:
      unlabelled += 1
      continue
    lines = meta.get('ingredientLines') or []
    recipes.append(Recipe(int(number), number, str(meta.get('name') or ''),
                          ' ; '.join(str(line) for line in lines), label))
  if unlabelled:
    logging.info('yummly28k: %d recipes without a %r attribute left out.', unlabelled, attribute)
  if not recipes:
    raise _common.ManualDirError(f'yummly28k: no recipe under {root / META_DIR} has a '
                                 f'{attribute!r} attribute.\nExpected layout:\n{_LAYOUT}')
  return recipes


@registry.register('yummly28k')
class Yummly28k(tfds.core.GeneratorBasedBuilder):
  """Yummly-28K: 'text' int32 `[64]` + 'image' uint8 `[64, 64, 3]` per recipe."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Ingredient tokens [64] (vocabulary <= 5,000) and 64x64 photos.'}
  BUILDER_CONFIGS = [
      Yummly28kConfig(name='cuisine', attribute='cuisine',
                      description='Label: the first value of attributes.cuisine.'),
      Yummly28kConfig(name='course', attribute='course',
                      description='Label: the first value of attributes.course.'),
  ]
  DEFAULT_CONFIG_NAME = 'cuisine'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Expected layout:\n{_LAYOUT}'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Yummly-28K: 27,638 recipes, each with a photo, ingredient lines, cuisine and course. '
            f"'text' holds the ingredient lines as {TEXT_LENGTH} word ids (features.Vocabulary of "
            f"at most {MAX_VOCAB} words built from the corpus, stored in metadata "
            f"'{_common.VOCAB_KEY}'); 'image' the photo centre-cropped to a square and resized "
            f'to {IMAGE_SIZE}x{IMAGE_SIZE}. Text and image of a recipe share its example_id. '
            f'Label: the recipe\'s {self.builder_config.attribute}. '
            "A single 'train' split holds every labelled recipe."),
        features=tfds.features.FeaturesDict({
            'text': tfds.features.Tensor(shape=(TEXT_LENGTH,), dtype=np.int32),
            'image': tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
            'label': tfds.features.ClassLabel(),  # names come from the recipes
            'example_id': tfds.features.Scalar(dtype=np.int64),
            'name': tfds.features.Text(),
        }),
        supervised_keys=('text', 'label'),
        homepage='http://123.57.42.89/FoodComputing__Dataset.html',
        metadata=tfds.core.MetadataDict(),
        citation="""\
@article{min2017being,
  title   = {Being a Supercook: Joint Food Attributes and Multimodal Content Modeling for
             Recipe Retrieval and Exploration},
  author  = {Min, Weiqing and Jiang, Shuqiang and Sang, Jitao and Wang, Huayang and Liu, Xinda
             and Herranz, Luis},
  journal = {IEEE Transactions on Multimedia},
  volume  = {19},
  number  = {5},
  pages   = {1100--1113},
  year    = {2017}
}""",
    )

  def _split_generators(self, dl_manager):
    root = _common.find_manual_dir(dl_manager, dataset='yummly28k', layout=_LAYOUT,
                                   subdirs=_SUBDIRS, missing=_missing)
    recipes = read_recipes(root, self.builder_config.attribute)
    _common.set_label_names(self.info, sorted({r.label for r in recipes}))
    vocab = features.Vocabulary.build((r.text for r in recipes), max_size=MAX_VOCAB)
    _common.store_vocabulary(self.info, vocab)
    return {'train': self._generate_examples(root, recipes, vocab)}

  def _generate_examples(self, root: pathlib.Path, recipes: list[Recipe],
                         vocab: features.Vocabulary):
    label_feature = self.info.features['label']
    for r in recipes:
      with Image.open(root / IMAGE_DIR / f'img{r.stem}.jpg') as image:
        pixels = _common.fit_image(image, (IMAGE_SIZE, IMAGE_SIZE), 'RGB')
      yield r.stem, {
          'text': vocab.encode(r.text, TEXT_LENGTH),
          'image': pixels,
          'label': label_feature.str2int(r.label),
          'example_id': r.number,
          'name': r.name,
      }
