"""Interoperability with other model-signing formats.

Only :mod:`sonic_registry.interop.oms` lives here for now: export and verify
OpenSSF ``model_signing`` (OMS) signatures. Nothing is imported eagerly, so
``import sonic_registry`` stays cheap.
"""

from __future__ import annotations
