"""A registry of signed releases: plain files that any static server can publish.

Layout of a registry directory::

    releases/<model>/<version>/<serial>.dsse.json   the signed envelopes (source of truth)
    releases.json                                    listing of the newest envelope per
                                                     model@version (for plain HTTP clients)
    index.sqlite                                     sha256 -> (model, version, role, path)
    metadata/                                        TUF metadata, after `registry init`
    .registry.lock                                   serialises writers

Modules: :mod:`.core` (the :class:`Registry` callers query), :mod:`.index`
(the SQLite index), :mod:`.local` (a directory), :mod:`.sources` (in-memory and
plain remote), :mod:`.fetch` (bounded downloads), :mod:`.tuf_repo` (publishing
TUF metadata) and :mod:`.tuf_client` (reading it with python-tuf's ngclient, :mod:`.tuf_sync` one
refresh, :mod:`.tuf_fresh` the unchanged-registry fast path).
"""

from __future__ import annotations

from .core import AddResult, Match, Registry, open_registry, start_refresh
from .index import INDEX_NAME, LISTING_NAME, RELEASES_DIR

__all__ = [
    "INDEX_NAME",
    "LISTING_NAME",
    "RELEASES_DIR",
    "AddResult",
    "Match",
    "Registry",
    "open_registry",
    "start_refresh",
]
