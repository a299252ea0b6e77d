"""Turn a pickle checkpoint (``.pth``/``.pt``/``.ckpt``) into safetensors, safely.

A pickle is a program: loading it with plain ``torch.load`` runs whatever code
it names. The conversion therefore uses torch's ``weights_only`` unpickler,
which only rebuilds tensors and plain containers and refuses every other
global, and accepts the result only if it is a mapping of names to tensors
(optionally the sub-mapping named by ``key``, such as ``state_dict``). The
output's ``__metadata__`` records the source's file name, size and SHA-256 so a
signed safetensors file can always be traced back to the pickle it came from.

Zip-format checkpoints (``torch.save`` since 1.6) are memory-mapped, so peak
memory stays near one copy of the tensors. The source is opened once and its
identity (inode, size, mtime, ctime) is compared before and after, so the
digest recorded is the digest of the bytes that were converted.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .digest import FileDigest
from .errors import DigestMismatchError, UnreadableInputError, UsageError
from .fileio import atomic_writer, open_regular, refuse_to_overwrite
from .formats import sniff
from .hashing import hash_range

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["FORCE_UNSAFE_ENV", "MIN_TORCH", "ConvertResult", "convert_checkpoint"]


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """What was converted: the source's digest, the output path and its tensor count."""

    source: Path
    source_digest: FileDigest
    output: Path
    tensors: int
    metadata: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "source_sha256": self.source_digest.sha256,
            "source_size": self.source_digest.size,
            "output": str(self.output),
            "tensors": self.tensors,
            "metadata": dict(self.metadata),
        }


#: torch's weights_only unpickler had an RCE fixed in 2.6 (CVE-2025-32434) and a
#: memory corruption fixed in 2.10 (CVE-2026-24747); older ones are refused.
MIN_TORCH = "2.10"
#: Set, this makes torch.load ignore weights_only=True: convert refuses to run.
FORCE_UNSAFE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def _import_torch() -> Any:
    """torch, if its weights_only unpickler is one convert may rely on."""
    if os.environ.get(FORCE_UNSAFE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        raise UsageError(
            FORCE_UNSAFE_ENV,
            "is set: torch.load would ignore weights_only and run the pickle's code; unset it",
        )
    try:
        import torch
    except ImportError as exc:
        raise UsageError("convert", "needs torch: pip install 'sonic-registry[runtime]'") from exc
    from packaging.version import InvalidVersion, Version

    try:
        found = Version(str(torch.__version__).split("+")[0])
    except InvalidVersion:
        found = Version("0")
    if found < Version(MIN_TORCH):
        raise UsageError(
            "torch",
            f"expected torch >= {MIN_TORCH} (its weights_only unpickler had CVE-2025-32434 and "
            f"CVE-2026-24747), found {torch.__version__}",
        )
    return torch


def _check_pinned(digest: FileDigest, pins: Mapping[str, str], where: str) -> str:
    """Which pin vouches for ``digest``, before a byte of it is unpickled.

    ``pins`` maps sha256 -> where the pin comes from (``--source-sha256``, a
    verified release); the built-in catalog of published files always counts.
    """
    if digest.sha256 in pins:
        return pins[digest.sha256]
    from .catalog import load_catalog

    published = load_catalog().by_sha256(digest.sha256)
    if published is not None and (published.size is None or published.size == digest.size):
        return "the built-in catalog of published files"
    raise UsageError(
        where,
        f"sha256 {digest.sha256} is not pinned: only a checkpoint whose digest is known is "
        "unpickled (pass --source-sha256 HEX from its publisher, or --release DIR of a "
        "verified release that lists it)",
    )


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _reason(exc: BaseException) -> str:
    """The informative line of torch's (long, multi-paragraph) unpickling error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Unsupported") or "WeightsUnpickler error: " in line:
            tail = line.partition("WeightsUnpickler error: ")[2] or line
            if tail.strip():
                return tail.strip()
    return lines[0] if lines else type(exc).__name__


def _same_file(fd: int, src: Path) -> str:
    """A name for the very file behind ``fd`` (Linux), so torch cannot open a swapped one."""
    proc = f"/proc/self/fd/{fd}"
    return proc if os.path.exists(proc) else str(src)


def _select(obj: Any, key: str | None, where: str) -> Mapping[str, Any]:
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, Mapping) or part not in obj:
                raise UsageError(f"{where}: {key}", "no such entry in the checkpoint")
            obj = obj[part]
    if not isinstance(obj, Mapping):
        raise UsageError(
            where, f"expected a mapping of names to tensors, found {type(obj).__name__}"
        )
    return obj


def _tensors_only(obj: Mapping[str, Any], key: str | None, where: str) -> dict[str, torch.Tensor]:
    tensor_type = _import_torch().Tensor
    out: dict[str, torch.Tensor] = {}
    nested = [k for k, v in obj.items() if isinstance(v, Mapping)]
    for name, value in obj.items():
        if not isinstance(name, str):
            raise UsageError(where, f"expected string tensor names, found {name!r}")
        if not isinstance(value, tensor_type):
            hint = f" (pick the tensors with --key {nested[0]})" if nested and key is None else ""
            raise UsageError(
                f"{where}: {name}",
                f"expected only tensors, found {type(value).__name__}{hint}",
            )
        out[name] = value
    if not out:
        raise UsageError(where, "the checkpoint holds no tensors")
    return out


def _detach(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, with storage shared between two names un-shared."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        storage = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if storage in seen and t.numel():
            t = t.clone()
        seen.add(storage)
        out[name] = t.contiguous()
    return out


def convert_checkpoint(
    source: str | Path,
    output: str | Path,
    *,
    key: str | None = None,
    overwrite: bool = False,
    source_sha256: str | None = None,
    pins: Mapping[str, str] | None = None,
) -> ConvertResult:
    """Convert ``source`` (a pickle checkpoint) to the safetensors file ``output``.

    Only a source whose SHA-256 is pinned is unpickled: ``source_sha256`` (the
    publisher's digest), ``pins`` (sha256 -> who pins it, e.g. a verified
    release) or the built-in catalog. The digest is taken before loading and
    the file must not change until the load is done.

    Raises :class:`UsageError` (exit 2) when the source is missing, unpinned,
    not a pickle checkpoint, holds anything but tensors, or asks the unpickler
    for code; :class:`DigestMismatchError` (exit 1) when it differs from
    ``source_sha256``. The output is written atomically and never half-written.
    """
    src = Path(source)
    dst = Path(output)
    where = str(src)
    torch = _import_torch()
    refuse_to_overwrite(dst, force=overwrite)
    try:
        fd, _ = open_regular(src)  # a FIFO in place of the source is refused, never waited on
    except FileNotFoundError as exc:
        raise UnreadableInputError(where, "no such file") from exc
    except OSError as exc:
        raise UnreadableInputError(where, f"cannot read: {exc.strerror}") from exc
    try:
        before = os.fstat(fd)
        # Step 1: decide by content. Only pickles need converting, and only
        # torch's zip format can be memory-mapped.
        kind = sniff(src)
        if kind not in ("pickle", "torch-zip"):
            raise UsageError(where, f"expected a pickle checkpoint (.pth/.pt/.ckpt), found {kind}")
        if _identity(os.stat(src)) != _identity(before):
            raise UnreadableInputError(where, "changed while being opened")
        # Step 2a: pinned before anything is unpickled (the unpickler is the attack surface).
        digest = FileDigest(*hash_range(src, fd=fd))
        if source_sha256 is not None and digest.sha256 != source_sha256.lower():
            raise DigestMismatchError(
                where, f"expected sha256 {source_sha256} (--source-sha256), found {digest.sha256}"
            )
        all_pins = dict(pins or {})
        if source_sha256 is not None:
            all_pins[digest.sha256] = "--source-sha256"
        _check_pinned(digest, all_pins, where)
        # Step 2: rebuild through the weights-only unpickler; no other code can run.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # protocol notices are not the user's problem
                loaded = torch.load(
                    _same_file(fd, src),
                    map_location="cpu",
                    weights_only=True,
                    mmap=kind == "torch-zip",
                )
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ...
            reason = _reason(exc)
            raise UnreadableInputError(
                where, f"not a weights-only checkpoint, refused to unpickle it: {reason}"
            ) from exc
        tensors = _detach(_tensors_only(_select(loaded, key, where), key, where))
        # Step 3: the digest is of the bytes that were loaded: the file must not
        # have changed (ctime cannot be set back) between hash and load.
        if _identity(os.fstat(fd)) != _identity(before) or digest.size != before.st_size:
            raise UnreadableInputError(where, "changed while being converted; try again")
    finally:
        os.close(fd)
    metadata = {
        "format": "pt",
        "source_name": src.name,
        "source_size": str(digest.size),
        "source_sha256": digest.sha256,
        "converted_by": f"sonic-registry {__version__}",
    }
    _write_atomic(tensors, dst, metadata)
    return ConvertResult(src, digest, dst, len(tensors), metadata)


def _safetensors_header(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> bytes:
    """The header with sorted keys, so the same checkpoint always gives the same bytes.

    (``safetensors.save_file`` writes metadata from a hash map, in varying order.)
    Tensors are laid out widest dtype first, so every tensor stays aligned.
    """
    from .loader import DTYPES

    by_torch = {torch_name: name for name, (_, torch_name, _) in DTYPES.items()}
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in _layout(tensors):
        t = tensors[name]
        dtype = by_torch.get(str(t.dtype).removeprefix("torch."))
        if dtype is None:
            raise UsageError(name, f"dtype {t.dtype} has no safetensors equivalent")
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def _layout(tensors: Mapping[str, Any]) -> list[str]:
    return sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))


def _write_atomic(tensors: dict[str, Any], dst: Path, metadata: dict[str, str]) -> None:
    """Stream the header and each tensor's bytes into ``dst`` via :func:`fileio.atomic_writer`."""
    import torch

    directory = dst.parent if str(dst.parent) else Path(".")
    if not directory.is_dir():
        raise UnreadableInputError(str(directory), "no such directory")
    header = _safetensors_header(tensors, metadata)
    with atomic_writer(dst) as fh:
        fh.write(header)
        for name in _layout(tensors):
            t = tensors[name]
            if t.numel():
                fh.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
