"""A tamper-evident generation log: one canonical-JSON line per generated video.

Each line is the RFC 8785 canonical JSON of a record (:func:`generation_record`
builds one) plus two fields the log owns:

* ``seq``: 1 for the first record, then +1 per line;
* ``prev``: the sha256 of the previous line's bytes (without its newline),
  64 zeros for the first record.

So editing, deleting, inserting or reordering any record breaks the chain at a
line :func:`verify_log` can name. Removing whole records from the *end* leaves
a valid shorter chain; that is caught only by a signed head
(``<log>.head.json``, a DSSE envelope over ``{seq, sha256}`` of the last line),
written on every append when :class:`AuditLog` holds a key, or by
:func:`sign_head`.

Writers take the log's lock (:mod:`sonic_registry.locks`: under ``.git/`` in a work
tree, else ``<log>.lock``), then write each line with one
``os.write`` on an ``O_APPEND`` descriptor and ``fsync``: several processes can
append safely. A crash mid-write can still leave a torn last line (no trailing
newline); writers then refuse to append until :func:`recover` moves the torn
bytes aside to ``<log>.torn-<time>`` and says so. Recovery is never implicit.

The package's modules: :mod:`.log` (the file: lines, lock, append, recover),
:mod:`.verify` (chain and head checks, finding a video's record), :mod:`.head`
(the signed head) and :mod:`.record` (the fields of one generation).
"""

from __future__ import annotations

from .head import HEAD_PREDICATE_TYPE, MAX_HEAD_BYTES, sign_head
from .log import DEFAULT_LOG, GENESIS, AuditLog, Record, Recovery, head_path, read_records, recover
from .record import VerifiedLike, generation_record, output_digest, runtime_versions
from .verify import LogProblem, LogReport, find_output, find_output_verified, verify_log

__all__ = [
    "DEFAULT_LOG",
    "GENESIS",
    "HEAD_PREDICATE_TYPE",
    "MAX_HEAD_BYTES",
    "AuditLog",
    "LogProblem",
    "LogReport",
    "Record",
    "Recovery",
    "VerifiedLike",
    "find_output",
    "find_output_verified",
    "generation_record",
    "head_path",
    "output_digest",
    "read_records",
    "recover",
    "runtime_versions",
    "sign_head",
    "verify_log",
]
