"""Omniglot handwritten characters at 28x28, read straight from the original zip files.

One class per character ('<Alphabet>/characterNN'), 20 drawers each. The builder reads either the
full set (images_background.zip + images_evaluation.zip: 50 alphabets, 1,623 characters) or the
"small" background subsets (images_background_small1.zip + images_background_small2.zip), whichever
pair the manual directory holds (the full set wins). In the small pair the Greek and Latin
alphabets appear in both zips with identical images; each image is kept once (8 alphabets, 242
characters, 4,840 images). Images are inverted so that strokes are bright on a black background,
then downsampled from 105x105 to 28x28 (Lanczos, antialiased).

The TFDS name is 'omniglot28' so that it never shadows the TFDS catalog's own 'omniglot'.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import zipfile

import numpy as np
from PIL import Image, ImageOps

from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.tfsetup import tfds

SIZE = 28
FULL_ZIPS = ('images_background.zip', 'images_evaluation.zip')
SMALL_ZIPS = ('images_background_small1.zip', 'images_background_small2.zip')

_LAYOUT = f"""\
  <manual_dir>/                  (or <manual_dir>/omniglot/)
    {FULL_ZIPS[0]} and {FULL_ZIPS[1]}          (full set, 1,623 characters), or
    {SMALL_ZIPS[0]} and {SMALL_ZIPS[1]}   (subset, 242 characters)
  each zip holding <zip root>/<Alphabet>/characterNN/<image id>_<drawer>.png (105x105 PNG),
  as in https://github.com/brendenlake/omniglot/tree/master/python (not unpacked)."""


@dataclasses.dataclass(frozen=True, order=True)
class Member:
  alphabet: str
  character: str
  drawer: int
  filename: str
  zip_path: pathlib.Path = dataclasses.field(compare=False)
  member: str = dataclasses.field(compare=False)

  @property
  def label(self) -> str:
    return f'{self.alphabet}/{self.character}'


def _zip_set(root: pathlib.Path) -> tuple[str, ...] | None:
  for names in (FULL_ZIPS, SMALL_ZIPS):
    if all((root / n).is_file() for n in names):
      return names
  return None


def _missing(root: pathlib.Path) -> list[str]:
  if _zip_set(root):
    return []
  return [f'{" + ".join(FULL_ZIPS)} or {" + ".join(SMALL_ZIPS)}']


def list_members(root: pathlib.Path, zip_names: tuple[str, ...]) -> list[Member]:
  """All character images of the zips, duplicates (same alphabet/character/file) kept once."""
  seen = {}
  for zip_name in zip_names:
    zip_path = root / zip_name
    with zipfile.ZipFile(zip_path) as zf:
      for name in zf.namelist():
        parts = name.split('/')
        if len(parts) != 4 or not parts[3].lower().endswith('.png'):
          continue
        _, alphabet, character, filename = parts
        drawer = int(filename.rsplit('.', 1)[0].rsplit('_', 1)[-1])
        m = Member(alphabet, character, drawer, filename, zip_path, name)
        seen.setdefault((alphabet, character, filename), m)
  if not seen:
    raise _common.ManualDirError(f'omniglot: no character images in {zip_names} under {root}.\n'
                                 f'Expected layout:\n{_LAYOUT}')
  return sorted(seen.values())


def decode(png: bytes) -> np.ndarray:
  """A 105x105 Omniglot PNG as uint8 `[28, 28, 1]`, strokes bright."""
  image = ImageOps.invert(Image.open(io.BytesIO(png)).convert('L'))
  return _common.fit_image(image, (SIZE, SIZE), 'L')


class CorruptMemberError(ValueError):
  """An image inside an Omniglot zip cannot be read or decoded."""


def read_member(archive: zipfile.ZipFile, m: Member) -> np.ndarray:
  """`decode` of one zip member; a bad one raises CorruptMemberError naming the zip and member."""
  try:
    return decode(archive.read(m.member))
  except Exception as e:  # pylint: disable=broad-except  (PIL raises OSError, SyntaxError, zlib...)
    raise CorruptMemberError(
        f'omniglot: {m.zip_path} member {m.member!r} cannot be decoded as a PNG '
        f'({type(e).__name__}: {e}). Replace the zip with an intact copy (download it again) and '
        'prepare the dataset again.') from e


@registry.register('omniglot')
class Omniglot28(tfds.core.GeneratorBasedBuilder):
  """Omniglot characters: 'image' uint8 `[28, 28, 1]`, label '<Alphabet>/characterNN'."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Full or small background set, 28x28 inverted, duplicates dropped.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Expected layout:\n{_LAYOUT}'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Omniglot: handwritten characters of 50 alphabets, each drawn by 20 people. One class '
            "per character, named '<Alphabet>/characterNN'. Read from the original zip files "
            '(full set or the small background subsets; images that appear in two zips are kept '
            'once), inverted (bright strokes) and downsampled from 105x105 to 28x28. '
            "Extra features: 'alphabet', 'drawer'. A single 'train' split holds every image."),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(SIZE, SIZE, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(),  # names come from the zips
            'example_id': tfds.features.Scalar(dtype=np.int64),
            'alphabet': tfds.features.Text(),
            'drawer': tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://github.com/brendenlake/omniglot',
        license='MIT',
        citation="""\
@article{lake2015human,
  title     = {Human-level concept learning through probabilistic program induction},
  author    = {Lake, Brenden M and Salakhutdinov, Ruslan and Tenenbaum, Joshua B},
  journal   = {Science},
  volume    = {350},
  number    = {6266},
  pages     = {1332--1338},
  year      = {2015}
}""",
    )

  def _split_generators(self, dl_manager):
    root = _common.find_manual_dir(dl_manager, dataset='omniglot', layout=_LAYOUT,
                                   subdirs=('omniglot',), missing=_missing)
    members = list_members(root, _zip_set(root))
    _common.set_label_names(self.info, sorted({m.label for m in members}))
    return {'train': self._generate_examples(members)}

  def _generate_examples(self, members: list[Member]):
    label_feature = self.info.features['label']
    archives = {}
    try:
      for example_id, m in enumerate(members):
        if m.zip_path not in archives:
          archives[m.zip_path] = zipfile.ZipFile(m.zip_path)
        yield m.member, {
            'image': read_member(archives[m.zip_path], m),
            'label': label_feature.str2int(m.label),
            'example_id': example_id,
            'alphabet': m.alphabet,
            'drawer': m.drawer,
        }
    finally:
      for zf in archives.values():
        zf.close()
