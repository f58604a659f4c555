"""Multilingual read speech (CMU Wilderness or any corpus in festvox layout), labelled by language.

Read from a local copy with one directory per language, each a festvox voice directory:
`<lang>/wav/<utt>.wav` plus the transcripts `<lang>/etc/txt.done.data`, lines
`( <utt> "transcript" [score] )`. The CMU Wilderness build scripts leave the aligned utterances in
`<lang>/aligned/`, which is accepted too. Each utterance gives one example with two modalities of
the same instance (equal 'example_id' = strong pair): 'speech', the first 2 s as a log-mel
`[64, 40]`, and 'text', its transcript as int32 word ids `[64]`. The vocabulary (at most 5,000
entries, 0 = pad, 1 = unk) is built over all languages' transcripts and stored in the dataset's
metadata (`_common.vocabulary(builder)`). Transcripts are folded to ASCII (accents dropped) before
tokenising, because `features.tokenize` keeps only [a-z0-9']: words in non-Latin scripts are lost.

Configs: 'max500' (default) keeps at most 500 utterances per language, evenly spread over the
sorted utterance ids, to balance languages and bound the prepared size; 'all' keeps every one.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import unicodedata

from absl import logging
import numpy as np

from meta_align_jax.data import features
from meta_align_jax.data import registry
from meta_align_jax.data.builders import _common
from meta_align_jax.data.tfsetup import tfds

FRAMES, SECONDS, N_MELS = 64, 2.0, 40
TEXT_LENGTH = 64
MAX_VOCAB = 5000
TRANSCRIPTS = 'txt.done.data'
# Where a language directory keeps (wav dir, transcript file), in order of preference.
_VOICE_LAYOUTS = (('aligned/wav', f'aligned/etc/{TRANSCRIPTS}'), ('wav', f'etc/{TRANSCRIPTS}'),
                  ('wav', TRANSCRIPTS))
_LINE_RE = re.compile(r'^\(\s*(\S+)\s+"(.*)"(?:\s+[^\s")]+)*\s*\)\s*$')

_LAYOUT = f"""\
  <manual_dir>/                  (or <manual_dir>/cmu_wilderness/)
    <LANG>/wav/<utt>.wav         one directory per language (e.g. the 6-letter Bible.is codes of
    <LANG>/etc/{TRANSCRIPTS}     CMU Wilderness), festvox transcripts: ( <utt> "text" [score] )
  also accepted per language: <LANG>/aligned/wav + <LANG>/aligned/etc/{TRANSCRIPTS} (as left by the
  CMU Wilderness scripts) or <LANG>/{TRANSCRIPTS}. Directories without wav/ are ignored.
Get it by running the scripts of https://github.com/festvox/datasets-CMU_Wilderness for the
languages you want."""


@dataclasses.dataclass(eq=False)
class ReadSpeechConfig(tfds.core.BuilderConfig):
  """`max_per_language`: utterances kept per language (None: all)."""
  max_per_language: int | None = None


@dataclasses.dataclass(frozen=True)
class Utterance:
  language: str
  utt_id: str
  text: str
  path: pathlib.Path


def ascii_fold(text: str) -> str:
  """Drops accents and other combining marks ('é' -> 'e') so the tokeniser keeps the word."""
  decomposed = unicodedata.normalize('NFKD', text)
  return ''.join(c for c in decomposed if not unicodedata.combining(c))


def read_transcripts(path: pathlib.Path) -> dict[str, str]:
  """`{utterance id: transcript}` of a festvox txt.done.data file."""
  out = {}
  with path.open(encoding='utf-8', errors='replace') as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      m = _LINE_RE.match(line.strip())
      if not m:
        raise ValueError(f'{path}:{line_no}: not a festvox transcript line '
                         f'( <utt> "text" [score] ): {line.strip()[:80]!r}')
      out[m[1]] = m[2]
  return out


def _voice_dirs(lang_dir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path] | None:
  for wav, transcripts in _VOICE_LAYOUTS:
    if (lang_dir / wav).is_dir() and (lang_dir / transcripts).is_file():
      return lang_dir / wav, lang_dir / transcripts
  return None


def _language_dirs(root: pathlib.Path) -> list[pathlib.Path]:
  """Subdirectories that look like a language (hold a wav/ directory somewhere we look)."""
  return sorted(p for p in root.iterdir() if p.is_dir()
                and any((p / wav).is_dir() for wav, _ in _VOICE_LAYOUTS))


def _missing(root: pathlib.Path) -> list[str]:
  langs = _language_dirs(root)
  if not langs:
    return ['<LANG>/wav/ directories']
  return [f'{p.name}/etc/{TRANSCRIPTS}' for p in langs if _voice_dirs(p) is None]


def list_utterances(root: pathlib.Path, max_per_language: int | None) -> list[Utterance]:
  """Utterances with both a transcript and a wav, by language and id, capped per language."""
  out = []
  for lang_dir in _language_dirs(root):
    wav_dir, transcript_file = _voice_dirs(lang_dir)
    transcripts = read_transcripts(transcript_file)
    wavs = {p.stem: p for p in wav_dir.iterdir() if p.suffix.lower() == '.wav'}
    ids = sorted(u for u in transcripts if u in wavs)
    if len(ids) < len(transcripts):
      logging.info('cmu_wilderness: %s: %d of %d transcribed utterances have no wav; skipped.',
                   lang_dir.name, len(transcripts) - len(ids), len(transcripts))
    if not ids:
      raise _common.ManualDirError(
          f'cmu_wilderness: {lang_dir} has no utterance with both a line in {transcript_file} '
          f'and a wav in {wav_dir}.\nExpected layout:\n{_LAYOUT}')
    if max_per_language is not None and len(ids) > max_per_language:
      keep = np.linspace(0, len(ids) - 1, max_per_language).round().astype(int)
      ids = [ids[i] for i in keep]
    out.extend(Utterance(lang_dir.name, u, ascii_fold(transcripts[u]), wavs[u]) for u in ids)
  return out


@registry.register('cmu_wilderness')
class CmuWilderness(tfds.core.GeneratorBasedBuilder):
  """Read speech by language: 'speech' log-mel `[64, 40]` + 'text' int32 `[64]` per utterance."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Log-mel [64, 40] of the first 2 s and transcript tokens [64].'}
  BUILDER_CONFIGS = [
      ReadSpeechConfig(name='max500', max_per_language=500,
                       description='At most 500 utterances per language, evenly spread.'),
      ReadSpeechConfig(name='all', max_per_language=None, description='Every utterance.'),
  ]
  DEFAULT_CONFIG_NAME = 'max500'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Expected layout:\n{_LAYOUT}'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Multilingual read speech (the CMU Wilderness Multilingual Speech Dataset: New '
            'Testament readings in 700+ languages, aligned per verse; or any corpus in festvox '
            "layout). Label: the language directory's name. 'speech' is a log-mel spectrogram "
            f'[{FRAMES}, {N_MELS}] of the first {SECONDS:g} s of each utterance '
            f"(features.log_mel); 'text' its transcript, folded to ASCII, as {TEXT_LENGTH} word "
            f'ids of a vocabulary of at most {MAX_VOCAB} words built over the corpus (stored in '
            f"metadata '{_common.VOCAB_KEY}'). Speech and text of an utterance share its "
            "example_id. A single 'train' split holds every kept utterance."),
        features=tfds.features.FeaturesDict({
            'speech': tfds.features.Tensor(shape=(FRAMES, N_MELS), dtype=np.float32),
            'text': tfds.features.Tensor(shape=(TEXT_LENGTH,), dtype=np.int32),
            'label': tfds.features.ClassLabel(),  # names: the language directories
            'example_id': tfds.features.Scalar(dtype=np.int64),
            'utterance': tfds.features.Text(),
        }),
        supervised_keys=('speech', 'label'),
        homepage='https://github.com/festvox/datasets-CMU_Wilderness',
        metadata=tfds.core.MetadataDict(),
        citation="""\
@inproceedings{black2019cmu,
  title     = {{CMU} {Wilderness} Multilingual Speech Dataset},
  author    = {Black, Alan W.},
  booktitle = {{ICASSP} 2019 - 2019 {IEEE} International Conference on Acoustics, Speech and
               Signal Processing},
  pages     = {5971--5975},
  year      = {2019}
}""",
    )

  def _split_generators(self, dl_manager):
    root = _common.find_manual_dir(dl_manager, dataset='cmu_wilderness', layout=_LAYOUT,
                                   subdirs=('cmu_wilderness',), missing=_missing)
    utterances = list_utterances(root, self.builder_config.max_per_language)
    _common.set_label_names(self.info, sorted({u.language for u in utterances}))
    vocab = features.Vocabulary.build((u.text for u in utterances), max_size=MAX_VOCAB)
    _common.store_vocabulary(self.info, vocab)
    return {'train': self._generate_examples(utterances, vocab)}

  def _generate_examples(self, utterances: list[Utterance], vocab: features.Vocabulary):
    label_feature = self.info.features['label']
    for example_id, u in enumerate(utterances):
      yield f'{u.language}/{u.utt_id}', {
          'speech': _common.log_mel_of_file(u.path, frames=FRAMES, seconds=SECONDS,
                                            n_mels=N_MELS),
          'text': vocab.encode(u.text, TEXT_LENGTH),
          'label': label_feature.str2int(u.language),
          'example_id': example_id,
          'utterance': u.utt_id,
      }
