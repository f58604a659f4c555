r"""Sweep grids: named sets of runs (tasks x methods x shots x noise x seeds) and their scale.

  python launch/sweep.py --grid cpu_core --root runs/sweep

Task names are those of `tasks.py`, method names those of `methods.py`.
"""

from meta_align_jax.lab.spec import Cell, Grid

_CORE = ('meta_align', 'target_only', 'no_align', 'oracle')
_ALL = _CORE + ('meta_align_zh', 'supervised_ft', 'supervised_align', 'align_only',
                'fomaml_align', 'maml_align', 'protonet_align', 'strong_infonce')
# The reduced CPU protocol: few steps, no meta-validation (the final checkpoint is evaluated),
# 600 fixed meta-test episodes.
# 2 tasks per step; evaluation in chunks of 5 episodes (an unrolled chunk of 50 fine-tuning
# episodes takes minutes to compile on XLA:CPU, 5 take ~20 s and run at ~0.1 s per episode).
_STUDY_TASKS = ('text_audio_v2', 'text_image_v2')   # the tasks that pass the premise gate
_STUDY_METHODS = ('lr_meta_align', 'lr_meta_align_triplet', 'lr_meta_align_weak',
                  'lr_target_only', 'lr_no_align', 'lr_supervised_align', 'lr_pseudo_labels',
                  'lr_ssl_target')
# Conv-4 / log-mel CNN scale: one run fits a device call on one GPU. Converged = the method's own
# label-free criterion picks the checkpoint over the 3000 steps (the oracle stops on patience).
_STUDY_SCALE = {'train.num_steps': 3000, 'train.eval_every': 250, 'train.checkpoint_every': 250,
                'train.val_episodes': 200, 'eval.num_episodes': 600, 'train.log_every': 250}
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
    # Issue 17 part 4, the converged study under the low-resource protocol (meta_align_jax/
    # lowres.py), run from exported bundles on an accelerator (launch/study.py), on the v2 tasks
    # that pass the premise gate. The oracle runs without label noise (the clean upper bound).
    'study_lowres': Grid(
        description='Low-resource protocol: lr_* methods x 1/5 shots x target label noise '
                    '0/20/40/60 % x 3 seeds; the oracle at noise 0.',
        cells=(Cell(_STUDY_TASKS, _STUDY_METHODS, shots=(1, 5), noise=(0.0, 0.2, 0.4, 0.6)),
               Cell(_STUDY_TASKS, ('lr_oracle',), shots=(1, 5)),
               # A shared encoder needs convolutional encoders on both sides.
               Cell(('image_audio',), ('lr_shared_encoder',), shots=(1, 5),
                    noise=(0.0, 0.2, 0.4, 0.6))),
        scale=_STUDY_SCALE),
    # Its first slice: 1-shot, clean labels, the core methods and the oracle.
    'study_lowres_core': Grid(
        description='study_lowres, 1-shot, no noise: meta-alignment (strong pairs), target-only, '
                    'no alignment, pseudo-labels and the oracle.',
        cells=(Cell(_STUDY_TASKS, ('lr_meta_align', 'lr_target_only', 'lr_no_align',
                                   'lr_pseudo_labels', 'lr_oracle')),),
        scale=_STUDY_SCALE),
    # The second session of the study (docs/results/claim.md): the prototype hypothesis on
    # held-out seeds, the remaining baselines and the part-5 variants, 5 shots, label noise.
    'study_heldout': Grid(
        description='Seeds 3-5, 1-shot, no noise: meta-alignment scored with prototypes '
                    '(fixed in advance from seeds 0-2) against the baselines of the first slice.',
        cells=(Cell(_STUDY_TASKS, ('lr_meta_align_proto', 'lr_target_only', 'lr_no_align',
                                   'lr_pseudo_labels')),),
        seeds=(3, 4, 5), scale=_STUDY_SCALE),
    'study_variants': Grid(
        description='1-shot, no noise: the other baselines (weak pairs, supervised + alignment, '
                    'self-supervised target) and the part-5 variants (ProtoNet source learner, '
                    'meta-alignment on top of pseudo-labels).',
        cells=(Cell(_STUDY_TASKS, ('lr_meta_align_weak', 'lr_supervised_align', 'lr_ssl_target',
                                   'lr_protonet_align', 'lr_meta_align_pl')),),
        scale=_STUDY_SCALE),
    'study_shots5': Grid(
        description='5-shot, no noise: the core methods and the best variants.',
        cells=(Cell(_STUDY_TASKS, ('lr_meta_align', 'lr_target_only', 'lr_pseudo_labels',
                                   'lr_protonet_align'), shots=(5,)),),
        scale=_STUDY_SCALE),
    'study_noise': Grid(
        description='1-shot, target label noise 20/40/60 % on the labelled set.',
        cells=(Cell(_STUDY_TASKS, ('lr_meta_align', 'lr_target_only', 'lr_protonet_align'),
                    noise=(0.2, 0.4, 0.6)),),
        scale=_STUDY_SCALE),
    # The study runner's end-to-end check (tests/test_study.py shrinks it further).
    'study_smoke': Grid(
        description='2 methods x 1 seed of study_lowres at a few steps.',
        cells=(Cell(('image_audio',), ('lr_meta_align', 'lr_target_only')),), seeds=(0,),
        scale={**_STUDY_SCALE, 'train.num_steps': 20, 'train.eval_every': 10,
               'train.checkpoint_every': 10, 'train.val_episodes': 10,
               'eval.num_episodes': 20}),
}
