"""A tiny Sonic-shaped talking-portrait model that runs only signed, verified bundles.

It is *not* a photoreal generator. It exists so the checks of ``sonic_registry``
can be exercised end to end with real tensors, real files and real video: an
audio encoder (16 kHz audio -> tokens on a 25 fps timeline), a motion decoder
(tokens -> mouth opening and head motion per frame) and a renderer (portrait +
motion -> frames), whose weights are built deterministically by
:mod:`reference_runtime.weights` and loaded only through
:func:`sonic_registry.loader.load_state_dict_verified`.
"""

from __future__ import annotations

__all__ = ["FPS", "HOP", "SAMPLE_RATE", "__version__"]

#: The runtime's own version: releases declare ``reference_runtime >=1.3,<1.4``.
__version__ = "1.3.0"

SAMPLE_RATE = 16000
FPS = 25
#: Audio samples per video frame (16000 / 25).
HOP = SAMPLE_RATE // FPS
