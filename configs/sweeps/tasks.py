"""Sweep tasks: name -> (config file relative to the repository, extra overrides).

A task is an experiment config of `configs/` plus overrides; the methods (`methods.py`) and the
grid's shots, noise, seeds and scale are applied on top (`meta_align_jax.lab.sweep.build_config`).
"""

TASKS: dict[str, tuple[str, dict]] = {
    'image_audio': ('configs/image_audio.py', {}),
    'text_image': ('configs/text_image.py', {}),
    'text_speech': ('configs/text_speech.py', {}),
    'digits_fsdd': ('configs/digits_fsdd.py', {'data.manual_dir': '../shared/data/fsdd'}),
    # Embedded benchmark v2: the two tasks that pass the premise gate (docs/results/premise.md).
    'text_audio_v2': ('configs/text_audio_v2.py', {}),
    'text_image_v2': ('configs/text_image_v2.py', {}),
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
