"""Experiment sweeps: named grids of tasks x methods x shots x noise x seeds, run into one directory.

A *run* is one (task, method, shots, noise, seed): a config file of `configs/` (the task), the
method's overrides (baselines and ablations are override sets, `METHODS`), the shot and noise
settings, the seed and the grid's scale overrides (steps, episodes). Each run trains with
`train.train` in `ROOT/<task>/<method>/k<shots>_n<noise%>/seed<seed>/` and is evaluated with
`evaluate.evaluate` on the final (or best meta-validation) checkpoint; on top of
`eval_results.json` the run writes `episode_accuracies.npy`, the accuracy of every fixed
meta-test episode, so that methods can be compared episode by episode (same seed -> same class
split and same episodes, whatever the method). A run whose `eval_results.json` exists is
finished and skipped, so a sweep can be interrupted and started again.

Shots K set `task.shots` and `eval.shots`; noise rate r sets `data.target_noise` and
`data.align_noise`: every target label a method observes (target training tasks, alignment pairs,
and the supports of meta-test episodes) is flipped with probability r (queries stay clean).

`launch/sweep.py` is the command line; `meta_align_jax.results` aggregates and plots.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Callable, Iterable


RUN_FILE = 'sweep_run.json'          # the run's labels, written before it starts
EPISODES_FILE = 'episode_accuracies.npy'   # evaluate.EPISODES_FILE
RESULTS_FILE = 'eval_results.json'   # evaluate.RESULTS_FILE; its presence marks a finished run
ERROR_FILE = 'error.txt'
LOCK_FILE = 'running.pid'            # pid of the process running the run (several runners share a root)
LOG_FILE = 'log.txt'

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tasks: name -> (config file relative to the repository, extra overrides).
TASKS: dict[str, tuple[str, dict]] = {
    'image_audio': ('configs/image_audio.py', {}),
    'text_image': ('configs/text_image.py', {}),
    'text_speech': ('configs/text_speech.py', {}),
    'digits_fsdd': ('configs/digits_fsdd.py', {'data.manual_dir': '../shared/data/fsdd'}),
    # Diagnostics of image_audio: 2 target examples per meta-train class instead of 5, and the
    # reverse direction (audio, the easier modality here, as the source).
    'image_audio_tts2': ('configs/image_audio.py', {'data.target_train_shots': 2}),
    # Low-resource target: labelled target data (5 per class) for only 5 or 20 of the ~173
    # meta-train classes, for target tasks and alignment pairs; the source keeps all of them.
    'image_audio_c5': ('configs/image_audio.py', {'data.target_train_classes': 5}),
    'image_audio_c20': ('configs/image_audio.py', {'data.target_train_classes': 20}),
    'audio_image': ('configs/image_audio.py', {
        'source.modality': 'audio', 'source.encoder': 'mel_cnn', 'source.input_shape': (32, 40),
        'target.modality': 'image', 'target.encoder': 'conv4', 'target.input_shape': (32, 32, 3),
        'data.source_feature': 'audio', 'data.target_feature': 'image'}),
}
# audio -> image with labelled images for only 5 meta-train classes: the easier modality as the
# high-resource source, the harder one as the low-resource target.
TASKS['audio_image_c5'] = (TASKS['audio_image'][0],
                           {**TASKS['audio_image'][1], 'data.target_train_classes': 5})


# --------------------------------------------------------------------------- methods


@dataclasses.dataclass(frozen=True)
class Method:
  """A named override set. `role`: ours | baseline | ablation | oracle (the upper bound)."""
  role: str
  description: str
  overrides: dict
  # Called with the config after the overrides, shots and noise are set (derived fields).
  finalize: Callable | None = None


def _target_tasks(config) -> None:
  """Target-side training tasks must fit the target training subset (target_train_shots/class)."""
  per_class = int(config.data.target_train_shots)
  config.task.shots = max(1, min(int(config.eval.shots), per_class - 1))
  config.task.queries = max(1, min(int(config.task.queries), per_class - config.task.shots))


def _global_classes(config) -> None:
  """num_global_classes = the number of meta-train classes (loads the data to count them)."""
  from meta_align_jax import data  # pylint: disable=g-import-not-at-top
  config.model.num_global_classes = len(data.make_splits(config)['train'])


METHODS: dict[str, Method] = {
    'meta_align': Method('ours', 'meta-alignment: Reptile on source tasks + weak-pair alignment '
                         '(the paper\'s method)', {}),
    'meta_align_zh': Method('ours', 'meta-alignment with the classifier head re-zeroed before '
                            'every inner loop (meta.zero_head)', {'meta.zero_head': True}),
    'meta_align_w5': Method('ours', 'meta-alignment with alignment weight 5 (align.weight)',
                            {'align.weight': 5.0}),
    'meta_align_tgt': Method('ours', 'meta-alignment plus Reptile on target tasks of the '
                             'low-resource target data (meta_on source and target)',
                             {'task.meta_on': ('source', 'target')}, finalize=_target_tasks),
    # Evaluation-only diagnostics: the training of meta_align / target_only, scored with
    # prototypes in Z (no fine-tuning) instead of fine-tuning on the support.
    'meta_align_evproto': Method('ablation', 'meta-alignment, evaluated with prototypes in Z '
                                 '(eval.method=proto) instead of fine-tuning',
                                 {'eval.method': 'proto'}),
    'target_only_evproto': Method('ablation', 'target-only, evaluated with prototypes in Z '
                                  '(eval.method=proto) instead of fine-tuning',
                                  {'task.meta_on': ('target',), 'align.enabled': False,
                                   'eval.method': 'proto'}, finalize=_target_tasks),
    'no_align_evproto': Method('ablation', 'no alignment, evaluated with prototypes in Z '
                               '(eval.method=proto) instead of fine-tuning',
                               {'align.enabled': False, 'eval.method': 'proto'}),
    'meta_align_tgt_evproto': Method('ablation', 'meta-alignment plus target tasks, evaluated '
                                     'with prototypes in Z (eval.method=proto)',
                                     {'task.meta_on': ('source', 'target'), 'eval.method': 'proto'},
                                     finalize=_target_tasks),
    'meta_align_evhead': Method('ablation', 'meta-alignment, evaluated by fine-tuning the '
                                'classifier head only (eval.adapt=head)', {'eval.adapt': 'head'}),
    'target_only_evhead': Method('ablation', 'target-only, evaluated by fine-tuning the '
                                 'classifier head only (eval.adapt=head)',
                                 {'task.meta_on': ('target',), 'align.enabled': False,
                                  'eval.adapt': 'head'}, finalize=_target_tasks),
    'fomaml_align': Method('ours', 'meta-alignment with first-order MAML', {'meta.learner': 'fomaml'}),
    'maml_align': Method('ours', 'meta-alignment with second-order MAML', {'meta.learner': 'maml'}),
    'protonet_align': Method('ours', 'meta-alignment with ProtoNets (prototype evaluation)',
                             {'meta.learner': 'protonet', 'eval.method': 'proto'}),
    'strong_infonce': Method('ours', 'meta-alignment with strong (instance) pairs and InfoNCE',
                             {'align.kind': 'strong', 'align.loss': 'infonce'}),
    # Alignment-pair budget: the number of distinct target examples per meta-train class that
    # weak pairs may draw (data.target_train_shots; 5 is the default, 0 pairs is no_align).
    'meta_align_p1': Method('ours', 'meta-alignment with 1 target example per meta-train class '
                            'for pairs (data.target_train_shots=1)', {'data.target_train_shots': 1}),
    'meta_align_p2': Method('ours', 'meta-alignment with 2 target examples per meta-train class '
                            'for pairs (data.target_train_shots=2)', {'data.target_train_shots': 2}),
    'meta_align_p20': Method('ours', 'meta-alignment with 20 target examples per meta-train '
                             'class for pairs (data.target_train_shots=20)',
                             {'data.target_train_shots': 20}),
    'target_only': Method('baseline', 'Reptile on target tasks of the low-resource target data '
                          'only; no source, no alignment',
                          {'task.meta_on': ('target',), 'align.enabled': False},
                          finalize=_target_tasks),
    'no_align': Method('baseline', 'source-only Reptile, then target fine-tuning; no alignment '
                       '(= the "no alignment loss" ablation)', {'align.enabled': False}),
    'supervised_ft': Method('baseline', 'supervised pre-training on source classes (global '
                            'classifier), then target fine-tuning; no alignment',
                            {'meta.learner': 'supervised', 'align.enabled': False},
                            finalize=_global_classes),
    'supervised_align': Method('baseline', 'supervised source training + alignment, no '
                               'meta-learning', {'meta.learner': 'supervised'},
                               finalize=_global_classes),
    'shared_encoder': Method('ablation', 'meta-alignment with a single shared encoder: one '
                             'Conv-4 (blocks 2-4 + projection) for both modalities behind '
                             'per-modality first blocks (model.shared_encoder)',
                             {'model.shared_encoder': True}),
    'align_only': Method('ablation', 'alignment without the classifier loss (Reptile inner lr 0: '
                         'the meta-gradient is exactly zero)', {'meta.inner_lr': 0.0}),
    'oracle': Method('oracle', 'target-only Reptile with abundant target data '
                     '(target_train_shots=20 per class)',
                     {'task.meta_on': ('target',), 'align.enabled': False,
                      'data.target_train_shots': 20}, finalize=_target_tasks),
}


# --------------------------------------------------------------------------- grids


@dataclasses.dataclass(frozen=True)
class Cell:
  """Part of a grid: these tasks x methods x shots x noise rates (x the grid's seeds)."""
  tasks: tuple[str, ...]
  methods: tuple[str, ...]
  shots: tuple[int, ...] = (1,)
  noise: tuple[float, ...] = (0.0,)


@dataclasses.dataclass(frozen=True)
class Grid:
  cells: tuple[Cell, ...]
  seeds: tuple[int, ...] = (0, 1, 2)
  scale: dict = dataclasses.field(default_factory=dict)   # overrides of every run (steps, episodes)
  description: str = ''


_CORE = ('meta_align', 'target_only', 'no_align', 'oracle')
_ALL = _CORE + ('meta_align_zh', 'supervised_ft', 'supervised_align', 'align_only',
                'fomaml_align', 'maml_align', 'protonet_align', 'strong_infonce')
# The reduced CPU protocol: few steps, no meta-validation (the final checkpoint is evaluated),
# 600 fixed meta-test episodes.
# 2 tasks per step; evaluation in chunks of 5 episodes (an unrolled chunk of 50 fine-tuning
# episodes takes minutes to compile on XLA:CPU, 5 take ~20 s and run at ~0.1 s per episode).
_CPU_SCALE = {'train.num_steps': 200, 'train.eval_every': 0, 'train.checkpoint_every': 200,
              'train.log_every': 20, 'task.tasks_per_device': 2, 'eval.num_episodes': 600,
              'eval.batch_episodes': 5}

GRIDS: dict[str, Grid] = {
    'cpu_core': Grid(
        description='image->audio: meta-alignment vs target-only, no alignment and the oracle; '
                    '1-shot, no noise (reduced CPU protocol).',
        cells=(Cell(('image_audio',), _CORE),), scale=_CPU_SCALE),
    'cpu_noise': Grid(
        description='image->audio, 1-shot: target label noise 20/40/60 % (0 % is cpu_core).',
        cells=(Cell(('image_audio',), ('meta_align', 'target_only', 'no_align'),
                    noise=(0.0, 0.2, 0.4, 0.6)),), scale=_CPU_SCALE),
    'cpu_noise40': Grid(
        description='image->audio, 1-shot: 40 % target label noise vs none (a cut-down cpu_noise).',
        cells=(Cell(('image_audio',), ('meta_align', 'target_only'), noise=(0.0, 0.4)),),
        scale=_CPU_SCALE),
    'cpu_noise_align': Grid(
        description='image->audio, 1-shot: noise 0/20/40/60 % for the methods that run with '
                    'noisy target labels (target-only cannot: see the README).',
        cells=(Cell(('image_audio',), ('meta_align', 'no_align'), noise=(0.0, 0.2, 0.4, 0.6)),),
        scale=_CPU_SCALE),
    'cpu_shots': Grid(
        description='image->audio: 5-shot (1-shot is cpu_core).',
        cells=(Cell(('image_audio',), _CORE, shots=(1, 5)),), scale=_CPU_SCALE),
    # 10 shots + 15 queries would need 25 examples per class; the embedded data have 20, so
    # meta-test episodes take 10 queries per class at 10 shots (the expected accuracy does not
    # depend on the number of queries, only its sampling error does).
    'cpu_shots10': Grid(
        description='image->audio: 10-shot, 10 queries per class (1- and 5-shot are cpu_shots).',
        cells=(Cell(('image_audio',), _CORE, shots=(10,)),),
        scale={**_CPU_SCALE, 'eval.queries': 10}),
    'cpu_ablations': Grid(
        description='image->audio, 1-shot: the other baselines, ablations and meta-learners.',
        cells=(Cell(('image_audio',), _ALL),), scale=_CPU_SCALE),
    'cpu_shared': Grid(
        description='image->audio and digits->FSDD, 1-shot: a single shared encoder '
                    '(per-modality first blocks) vs the two-tower meta_align of cpu_core / '
                    'cpu_digits.',
        cells=(Cell(('image_audio', 'digits_fsdd'), ('shared_encoder',)),), scale=_CPU_SCALE),
    'cpu_pairs': Grid(
        description='image->audio, 1-shot: alignment-pair budget, 1/2/5/20 target examples per '
                    'meta-train class for weak pairs (5 is cpu_core\'s meta_align, 0 its no_align).',
        cells=(Cell(('image_audio',), ('meta_align_p1', 'meta_align_p2', 'meta_align_p20')),),
        scale=_CPU_SCALE),
    'cpu_investigate': Grid(
        description='image->audio, 1-shot: tuning meta-alignment (zero head, alignment weight, '
                    'target tasks too).',
        cells=(Cell(('image_audio',), ('meta_align_zh', 'meta_align_w5', 'meta_align_tgt')),),
        scale=_CPU_SCALE),
    'cpu_hypotheses': Grid(
        description='Why target-only wins on image->audio: less target data (2 per class), and '
                    'audio as the source.',
        cells=(Cell(('image_audio_tts2', 'audio_image'), ('meta_align', 'target_only')),),
        scale=_CPU_SCALE),
    'cpu_lowres': Grid(
        description='image->audio, 1-shot: labelled target data for only 5 or 20 meta-train '
                    'classes (data.target_train_classes; all ~173 classes is cpu_core).',
        cells=(Cell(('image_audio_c5', 'image_audio_c20'),
                    ('meta_align', 'target_only', 'no_align')),), scale=_CPU_SCALE),
    'cpu_lowres_why': Grid(
        description='image->audio with 5 (20) labelled target classes: meta-alignment plus '
                    'target tasks, and the methods scored with prototypes instead of fine-tuning.',
        cells=(Cell(('image_audio_c5',), ('meta_align_tgt', 'meta_align_evproto',
                                          'target_only_evproto', 'meta_align_tgt_evproto',
                                          'meta_align_evhead', 'target_only_evhead')),
               Cell(('image_audio_c20',), ('meta_align_evproto', 'target_only_evproto'))),
        scale=_CPU_SCALE),
    'cpu_lowres5': Grid(
        description='image->audio with 5 labelled target classes: meta-alignment vs target-only '
                    'over 3 seeds (seed 0 is also in cpu_lowres).',
        cells=(Cell(('image_audio_c5',), ('meta_align', 'target_only')),), scale=_CPU_SCALE),
    'cpu_lowres5_proto': Grid(
        description='cpu_lowres5 scored with prototypes in Z (evaluation-only, see '
                    'cpu_proto_eval).',
        cells=(Cell(('image_audio_c5',), ('meta_align_evproto', 'target_only_evproto')),),
        scale=_CPU_SCALE),
    'cpu_lowres_reverse': Grid(
        description='audio->image with 5 labelled target (image) classes: meta-alignment vs '
                    'target-only.',
        cells=(Cell(('audio_image_c5',), ('meta_align', 'target_only')),), scale=_CPU_SCALE),
    'cpu_lowres_reverse_proto': Grid(
        description='cpu_lowres_reverse scored with prototypes in Z (evaluation-only, see '
                    'cpu_proto_eval).',
        cells=(Cell(('audio_image_c5',), ('meta_align_evproto', 'target_only_evproto')),),
        scale=_CPU_SCALE),
    # Evaluation-only: *_evproto runs train exactly as the method without the suffix (training
    # is deterministic), so a finished run's checkpoints can be copied in to skip training.
    'cpu_proto_eval': Grid(
        description='image->audio, all meta-train classes labelled: meta-alignment, target-only '
                    'and no alignment scored with prototypes in Z instead of fine-tuning.',
        cells=(Cell(('image_audio',), ('meta_align_evproto', 'target_only_evproto',
                                       'no_align_evproto')),), scale=_CPU_SCALE),
    'cpu_digits': Grid(
        description='real image->speech: sklearn digits -> FSDD, 3-way 1-shot.',
        cells=(Cell(('digits_fsdd',), _CORE),), scale=_CPU_SCALE),
    'cpu_tasks': Grid(
        description='text->image and text->speech (embedded), core methods.',
        cells=(Cell(('text_image', 'text_speech'), _CORE),), scale=_CPU_SCALE),
    'cpu_tasks3': Grid(
        description='text->image and text->speech (embedded): meta-alignment, target-only and '
                    'no alignment (cpu_tasks without the oracle).',
        cells=(Cell(('text_image', 'text_speech'), ('meta_align', 'target_only', 'no_align')),),
        scale=_CPU_SCALE),
    'cpu_tasks3_proto': Grid(
        description='text->image and text->speech: the cpu_tasks3 methods scored with '
                    'prototypes in Z instead of fine-tuning (evaluation-only, see cpu_proto_eval).',
        cells=(Cell(('text_image', 'text_speech'), ('meta_align_evproto', 'target_only_evproto',
                                                    'no_align_evproto')),),
        seeds=(0,), scale=_CPU_SCALE),
    'cpu_speech': Grid(
        description='text->speech only (seeds 1-2 of cpu_tasks3\'s text->speech cell).',
        cells=(Cell(('text_speech',), ('meta_align', 'target_only', 'no_align')),),
        scale=_CPU_SCALE),
    'cpu_speech_proto': Grid(
        description='cpu_speech scored with prototypes in Z (evaluation-only, see cpu_proto_eval).',
        cells=(Cell(('text_speech',), ('meta_align_evproto', 'target_only_evproto',
                                       'no_align_evproto')),), scale=_CPU_SCALE),
    # The paper-scale protocol (accelerator): 5-way and 1/5/10 shots, all methods, 3 seeds.
    'full': Grid(
        description='All embedded tasks and digits->FSDD, all methods, 1/5/10 shots, noise sweep.',
        cells=(Cell(('image_audio', 'text_image', 'text_speech', 'digits_fsdd'), _ALL,
                    shots=(1, 5, 10)),
               Cell(('image_audio', 'text_image', 'text_speech', 'digits_fsdd'),
                    ('meta_align', 'target_only', 'no_align', 'supervised_ft'),
                    noise=(0.2, 0.4, 0.6)),
               # A shared encoder needs convolutional encoders on both sides (images, spectrograms).
               Cell(('image_audio', 'digits_fsdd'), ('shared_encoder',), shots=(1, 5, 10))),
        scale={'train.num_steps': 5000, 'train.eval_every': 500,
               'train.checkpoint_every': 500}),
}


# --------------------------------------------------------------------------- runs


@dataclasses.dataclass(frozen=True)
class RunSpec:
  task: str
  method: str
  shots: int
  noise: float
  seed: int
  overrides: tuple[tuple[str, object], ...] = ()   # scale + user overrides, applied last

  @property
  def relpath(self) -> str:
    return os.path.join(self.task, self.method, f'k{self.shots}_n{int(round(100 * self.noise))}',
                        f'seed{self.seed}')

  def labels(self) -> dict:
    return {'task': self.task, 'method': self.method, 'shots': self.shots, 'noise': self.noise,
            'seed': self.seed, 'role': METHODS[self.method].role,
            'overrides': {k: v for k, v in self.overrides}}


def grid_runs(grid: Grid | str, *, seeds: Iterable[int] | None = None,
              overrides: dict | None = None) -> list[RunSpec]:
  """The runs of `grid` (a `Grid` or a name of `GRIDS`), deduplicated, in a stable order.

  Seeds are the outer loop: the first runs done are one seed of every cell, so a sweep cut
  short still compares every method.
  """
  grid = GRIDS[grid] if isinstance(grid, str) else grid
  extra = tuple(sorted({**grid.scale, **(overrides or {})}.items()))
  out, seen = [], set()
  for seed in (grid.seeds if seeds is None else seeds):
    for cell in grid.cells:
      for task in cell.tasks:
        if task not in TASKS:
          raise ValueError(f'Unknown task {task!r}; known: {sorted(TASKS)}.')
        for method in cell.methods:
          if method not in METHODS:
            raise ValueError(f'Unknown method {method!r}; known: {sorted(METHODS)}.')
          for shots in cell.shots:
            for noise in cell.noise:
              spec = RunSpec(task, method, int(shots), float(noise), int(seed), extra)
              if spec.relpath not in seen:
                seen.add(spec.relpath)
                out.append(spec)
  return out


def set_field(config, dotted: str, value) -> None:
  *parents, leaf = dotted.split('.')
  node = config
  for p in parents:
    node = node[p]
  if leaf not in node:
    raise KeyError(f'config.{dotted} does not exist.')
  current = node[leaf]
  if isinstance(current, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  node[leaf] = value


def parse_value(text: str):
  """'0.5' -> 0.5, "('target',)" -> ('target',), 'True' -> True; anything else stays a string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def load_config_file(path: str):
  path = path if os.path.isabs(path) else os.path.join(REPO, path)
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  spec = importlib.util.spec_from_file_location(
      f'_sweep_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def build_config(spec: RunSpec):
  """The config of one run: task file, task extras, method, shots, noise, seed, overrides."""
  path, task_extra = TASKS[spec.task]
  config = load_config_file(path)
  method = METHODS[spec.method]
  for k, v in {**task_extra, **method.overrides}.items():
    set_field(config, k, v)
  config.seed = spec.seed
  config.task.shots = config.eval.shots = spec.shots
  config.data.target_noise = config.data.align_noise = spec.noise
  for k, v in spec.overrides:
    set_field(config, k, v)
  if method.finalize is not None:
    method.finalize(config)
  return config


def is_finished(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, RESULTS_FILE))


def run_one(spec: RunSpec, workdir: str) -> dict:
  """Trains and evaluates one run in `workdir` (resuming); returns its eval results."""
  from meta_align_jax import evaluate, train  # pylint: disable=g-import-not-at-top
  config = build_config(spec)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, RUN_FILE), 'w') as f:
    json.dump(spec.labels(), f, indent=1)
  result = train.train(config, workdir)
  if not result.finished:
    raise RuntimeError(f'Training of {workdir} stopped at step {result.step} (signal '
                       f'{result.stopped_by}); run the sweep again to resume.')
  # Writes episode_accuracies.npy (EPISODES_FILE), then eval_results.json: a finished run has both.
  return evaluate.evaluate(config, workdir, checkpoint='best')


def _main_one(argv: list[str]) -> None:
  """`python -m meta_align_jax.sweep RUN_JSON WORKDIR`: one run (used by `run_grid`'s workers)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  # Orbax reports every step of every save at INFO: keep its warnings only (as launch/run.py).
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  logging.get_absl_logger().addFilter(
      lambda r: r.levelno >= std_logging.WARNING or f'{os.sep}orbax{os.sep}' not in r.pathname)
  with open(argv[0]) as f:
    d = json.load(f)
  spec = RunSpec(d['task'], d['method'], d['shots'], d['noise'], d['seed'],
                 tuple((k, tuple(v) if isinstance(v, list) else v)
                       for k, v in sorted(d['overrides'].items())))
  run_one(spec, argv[1])


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def take_lock(workdir: str) -> bool:
  """Atomically claims `workdir` for this process; False when a live process holds it."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        with open(path) as f:
          pid = int(f.read().strip() or 0)
      except (OSError, ValueError):
        pid = 0
      if pid and _alive(pid):
        return False
      try:
        os.remove(path)   # stale: its process is gone
      except FileNotFoundError:
        pass
      continue
    with os.fdopen(fd, 'w') as f:
      f.write(str(os.getpid()))
    return True
  return False


def _set_lock(workdir: str, pid: int | None) -> None:
  path = os.path.join(workdir, LOCK_FILE)
  if pid is None:
    if os.path.exists(path):
      os.remove(path)
    return
  with open(path + '.tmp', 'w') as f:
    f.write(str(pid))
  os.replace(path + '.tmp', path)


def run_grid(specs: list[RunSpec], root: str, *, jobs: int = 1, dry_run: bool = False,
             log: Callable[[str], None] = print, env: dict | None = None) -> dict[str, list]:
  """Runs the unfinished `specs` under `root`, `jobs` at a time, each in its own process.

  Returns {'skipped': [...], 'done': [...], 'failed': [...]} of relpaths. A failed run leaves
  `error.txt` (its log's tail) and does not stop the sweep. A run is claimed with a lock file
  (`running.pid`) just before it starts, so several runners can work on one root: each skips
  runs that are finished or held by a live process.
  """
  status = {'skipped': [], 'done': [], 'failed': [], 'pending': [], 'busy': []}
  todo = []
  for spec in specs:
    workdir = os.path.join(root, spec.relpath)
    if is_finished(workdir):
      status['skipped'].append(spec.relpath)
    else:
      todo.append(spec)
  log(f'{len(specs)} runs: {len(status["skipped"])} finished, {len(todo)} to run.')
  if dry_run:
    status['pending'] = [s.relpath for s in todo]
    return status
  running: list[tuple[RunSpec, subprocess.Popen, float, object]] = []
  proc_env = dict(os.environ, **(env or {}))
  proc_env['PYTHONPATH'] = REPO + os.pathsep + proc_env.get('PYTHONPATH', '')

  def start(spec):
    workdir = os.path.join(root, spec.relpath)
    if is_finished(workdir) or not take_lock(workdir):
      status['busy'].append(spec.relpath)
      log(f'skip  {spec.relpath} (finished or running elsewhere)')
      return
    if os.path.exists(os.path.join(workdir, ERROR_FILE)):
      os.remove(os.path.join(workdir, ERROR_FILE))
    spec_path = os.path.join(workdir, RUN_FILE)
    with open(spec_path, 'w') as f:
      json.dump(spec.labels(), f, indent=1)
    logf = open(os.path.join(workdir, LOG_FILE), 'a')
    proc = subprocess.Popen([sys.executable, '-m', 'meta_align_jax.sweep', spec_path, workdir],
                            stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, env=proc_env)
    _set_lock(workdir, proc.pid)
    log(f'start {spec.relpath} (pid {proc.pid})')
    running.append((spec, proc, time.time(), logf))

  queue = list(todo)
  while queue or running:
    while queue and len(running) < max(1, jobs):
      start(queue.pop(0))
    time.sleep(2)
    for item in list(running):
      spec, proc, t0, logf = item
      if proc.poll() is None:
        continue
      running.remove(item)
      logf.close()
      workdir = os.path.join(root, spec.relpath)
      _set_lock(workdir, None)
      if proc.returncode == 0 and is_finished(workdir):
        status['done'].append(spec.relpath)
        with open(os.path.join(workdir, RESULTS_FILE)) as f:
          acc = json.load(f).get('accuracy_mean', float('nan'))
        log(f'done  {spec.relpath} in {time.time() - t0:.0f} s: accuracy {100 * acc:.2f} %')
      else:
        status['failed'].append(spec.relpath)
        with open(os.path.join(workdir, LOG_FILE)) as f:
          tail = f.read()[-4000:]
        with open(os.path.join(workdir, ERROR_FILE), 'w') as f:
          f.write(tail)
        log(f'FAIL  {spec.relpath} (exit {proc.returncode}); see {workdir}/{ERROR_FILE}')
  return status


if __name__ == '__main__':
  _main_one(sys.argv[1:])
