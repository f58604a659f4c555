"""The modalities the library knows, defined once for the models and the data side.

Imports nothing, so that `data/` (which must not import the training stack) and `models/` can both
use it.
"""

MODALITIES = ('image', 'audio', 'speech', 'text')
