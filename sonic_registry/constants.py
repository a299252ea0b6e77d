"""File names and size limits shared by the verifier and the pre-commit hook.

This module imports nothing, so the hook's warm path (which must not import
the verifier) and the verifier read the same values instead of keeping copies
that could drift. Add a limit here when more than one module enforces it.
"""

from __future__ import annotations

__all__ = [
    "ENVELOPE_NAME",
    "MAX_ENVELOPE_BYTES",
    "MAX_SAFETENSORS_DIM",
    "MAX_SAFETENSORS_DIMS",
    "MAX_SAFETENSORS_HEADER_BYTES",
    "MAX_SAFETENSORS_TENSORS",
    "MAX_WORKFLOW_BYTES",
    "OMS_SIGNATURE_NAME",
    "RACY_SECONDS",
    "TOML_NAME",
]

#: The signed DSSE envelope beside a bundle's files.
ENVELOPE_NAME = "release.dsse.json"
#: The unsigned manifest a bundle is signed from.
TOML_NAME = "release.toml"
#: An OpenSSF model_signing signature carried beside the envelope (`export-oms`).
OMS_SIGNATURE_NAME = "model.sig"

#: Largest DSSE envelope read; a larger one is refused as malformed.
MAX_ENVELOPE_BYTES = 64 * 1024 * 1024
#: Largest safetensors JSON header accepted: the format's own limit
#: (``MAX_HEADER_SIZE`` in the safetensors library), used both to load and to sniff.
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000
#: Most tensors in one safetensors file; the largest published checkpoints hold a few thousand.
MAX_SAFETENSORS_TENSORS = 100_000
#: Most dimensions of one tensor (numpy's own limit is 64; real weights use <= 5).
MAX_SAFETENSORS_DIMS = 32
#: Largest single dimension, even of an empty tensor (torch refuses shapes near 2^63).
MAX_SAFETENSORS_DIM = 1 << 48
#: Larger JSON/TOML files are not workflows (and are not read whole to find out).
MAX_WORKFLOW_BYTES = 64 * 1024 * 1024

#: Stat-cache entries are not kept for files changed within this many seconds
#: of "now" (Git's "racily clean" problem: a second write in the same clock tick
#: would leave every stat field unchanged).
RACY_SECONDS = 2.0
