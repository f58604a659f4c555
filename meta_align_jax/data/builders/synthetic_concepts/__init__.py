r"""`synthetic_concepts`, the embedded default dataset: attribute-composed concepts in 4 modalities.

Every class is a *concept*, one combination of four attributes:

  size    (2):  small, large
  colour  (6):  red, orange, yellow, green, blue, purple
  pattern (4):  plain, striped, dotted, checkered
  shape   (6):  circle, square, triangle, star, cross, diamond

which gives 2 x 6 x 4 x 6 = 288 classes named 'size colour pattern shape', e.g.
'large red striped circle'. Every attribute value is shared by many classes, so classes held out
for meta-testing are new combinations of familiar attributes. The data is generated offline from
a seed; nothing is downloaded. The `default` config makes 20 examples per class (5,760 examples,
110 MB) in about a minute on 2 CPU cores: 64 s measured on a 2-core machine while another job kept
one core busy (86 CPU-seconds in all, spread over `num_workers` worker processes). `small` (16
classes x 4 examples, about 2 s) is for tests.

Each example (one instance of one concept) exists in every modality, and each modality is
rendered *independently* from the class attributes with its own nuisance variation:

  'image'   uint8 [32, 32, 3]: the shape (2x supersampled, numpy) in the concept's colour with
            its fill pattern (stripes, dots or checks in a lighter or darker tone, turning with
            the shape), the size class setting the radius, on a tinted gradient background with
            0-3 random lines and blobs (one more may occlude the shape); jittered colour,
            position, scale (+-15 %) and rotation (+-30 degrees); Gaussian pixel noise.
  'audio'   float32 [32, 40]: log-mel (`features.log_mel`, 1 s, 40 mels) of a 1 s, 16 kHz
            sound. Colour sets the pitch class (a whole-tone scale), size the octave (large is
            low), shape the timbre (near-sine, odd harmonics 1/k or 1/k^2, sawtooth, inharmonic
            bell partials, a formant), pattern the rhythm (sustained, regular pulses, random
            staccato notes, a two-note trill). Mixed with coloured noise at 0-12 dB SNR, often
            an unrelated chirp, and a random gain.
  'text'    int32 [16]: token ids (0 = padding) of a short description with synonyms ('big',
            'crimson', 'spotted', 'rhombus', ...), one of eight word orders, filler words
            ('there is', 'i think', ...) and an optional position phrase ('on the left'). The
            vocabulary, `vocabulary()` (95 ids), is fixed by the word inventory and stored in the
            dataset's metadata ('vocabulary'); descriptions never exceed 16 tokens.
  'speech'  float32 [64, 40]: log-mel (2 s, 40 mels) of the description's attribute phrase (same
            words and order as the text, without the fillers) spoken by eSpeak NG, the library
            the `espeakng-loader` package ships, driven through ctypes (`EspeakNG`): one of 48
            voices (6 English accents x 8 voice variants), a random rate (fast enough to fit the
            window), pitch and intonation range, a random onset and gain, 5-20 dB SNR noise.

Instances: `instance_latents(seed, example_id)` draws four factors per example (x and y position,
scale, rotation; each in [-1, 1]) that every modality expresses. The image places, scales and
turns the shape with them; the sound starts later the further right the shape is, is lower the
larger it is, and its tempo rises with the rotation angle; the text (and so the speech) may say
where the shape is. So equal `example_id`s across modalities (strong pairs) share more
than the class, while two examples of one class (weak pairs) share only the attributes. Every
other random choice comes from a per-example, per-modality stream
`numpy.random.default_rng([seed, example_id, stream])`, so no example depends on which others are
generated or in what order (or on `num_workers`): the `small` config's examples are the very same
examples as in `default`, and a seed always gives bit-identical arrays (given the same library
versions and CPU; BLAS runs on one thread while generating, so that no threaded reduction changes
the rounding).

Other features: 'label' (ClassLabel over the config's class names), 'example_id' (int64: index of
the concept among all 288 * 10_000 + instance index), 'attributes' (int32 [4], indices into
`SIZES`, `COLOURS`, `PATTERNS`, `SHAPES`) and 'description' (the text before tokenisation). One
split, 'train'.

Difficulty, 5-way 1-shot with 5 queries per class over random classes of the `default` build,
on raw features (mean-centred; 600 episodes; nearest neighbour / cosine / logistic regression):
image 42 / 46 / 47 %, audio 38 / 43 / 42 %, text (bag of words) 40 / 42 / 41 %, speech 21 % (at
chance, 20 %: words said by different voices at different rates do not match frame by frame).
With 15 shots per class, logistic regression on standardised raw features reaches 73 %
(image), 95 % (audio) and 30 % (speech), so the classes are learnable and the 1-shot target task
is hard for an encoder trained on its support alone, which is what cross-modal alignment is
meant to fix.

Build it (the episode pipeline does this on first use, in `config.data.data_dir`):

  builder = SyntheticConcepts(data_dir=..., config='default')   # or 'small'
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))

A different seed or attribute subset is a new config:
`SyntheticConcepts(config=SyntheticConceptsConfig(name='seed1', seed=1))`.

Benchmark v2 (`config='v2'`, dataset name 'synthetic_concepts/v2'; 'v2_small' for tests): the
same concepts, example ids, random streams, text and descriptions, with the image and audio
rendered by generation-2 renderers (`image_v2.py`, `audio_v2.py`) and no speech. v1 did not
embody the premise of cross-modal alignment (docs/results/premise.md): its audio was
separable from raw features and its images were not linearly learnable even from every class.
v2 keeps each modality's class code and moves the instance variation into large,
class-independent nuisance that a read-out learnt from many classes can discount and one fit on
a few labelled classes cannot (lighting, background and colour cast for images; equaliser, level,
noise for audio). text -> audio and text -> image on v2 pass the premise gate
(`configs/text_audio_v2.py`, `configs/text_image_v2.py`). The `default` and `small` configs
(generation 1) are unchanged: the same seed gives the same examples as before the package split.

Layout: `concepts.py` (attributes, latents, streams), `image.py`, `audio.py`, `text.py`,
`speech.py` (generation 1), `image_v2.py`, `audio_v2.py`, `builder.py` (configs, TFDS builder).
"""

from meta_align_jax.data.builders.synthetic_concepts.audio import render_audio
from meta_align_jax.data.builders.synthetic_concepts.audio import synthesize_audio
from meta_align_jax.data.builders.synthetic_concepts.builder import make_example
from meta_align_jax.data.builders.synthetic_concepts.builder import RENDERERS
from meta_align_jax.data.builders.synthetic_concepts.builder import SyntheticConcepts
from meta_align_jax.data.builders.synthetic_concepts.builder import SyntheticConceptsConfig
from meta_align_jax.data.builders.synthetic_concepts.concepts import *  # noqa: F401,F403
from meta_align_jax.data.builders.synthetic_concepts.concepts import _ID_STRIDE  # noqa: F401
from meta_align_jax.data.builders.synthetic_concepts.image import render_image
from meta_align_jax.data.builders.synthetic_concepts.speech import render_speech
from meta_align_jax.data.builders.synthetic_concepts.speech import SPEECH_VOICES
from meta_align_jax.data.builders.synthetic_concepts.text import _SYNONYMS  # noqa: F401
from meta_align_jax.data.builders.synthetic_concepts.text import describe
from meta_align_jax.data.builders.synthetic_concepts.text import Description
from meta_align_jax.data.builders.synthetic_concepts.text import vocabulary
from meta_align_jax.data.builders.synthetic_concepts.text import word_inventory
