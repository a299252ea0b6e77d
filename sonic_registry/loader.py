"""Verified safetensors loading: one read of each file both hashes it and builds the tensors.

Why not "verify, then call ``safetensors.load_file``": between the check and the
reopen, the file can be swapped, and the bytes that run are not the bytes that
were checked. Here every file is read exactly once, into one buffer the size of
the file, while a second thread hashes each chunk as soon as it lands. The
tensors are views into that buffer and are handed out only after the SHA-256
of exactly those bytes equals the signed digest; only then are they copied to
the device (pinned host memory and non-blocking copies on CUDA). Nothing is
ever unpickled.

Peak memory is the size of the file (plus, on CUDA, the device copy). torch is
imported lazily; without torch the tensors are numpy arrays.

The safetensors header of the hashed bytes is parsed strictly by
:mod:`sonic_registry.safetensors_header` (caps on tensors, dimensions and header
bytes; known dtypes; no overlap, no gap), so a malformed signed file raises only
this project's errors.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .digest import FileDigest
from .errors import (
    DigestMismatchError,
    InvalidManifest,
    UnlistedFileError,
    UnreadableInputError,
    UnsafePathError,
    UsageError,
    digest_mismatch,
    size_mismatch,
)
from .fileio import NotRegularFileError, open_regular
from .safetensors_header import DTYPES, MAX_HEADER_BYTES, TensorInfo, parse_header

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .manifest import Release

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "TensorInfo",
    "VerifiedFiles",
    "load_component_verified",
    "load_file_verified",
    "load_state_dict_verified",
    "load_verified",
    "parse_safetensors_header",
    "resolve_device",
]

#: Bytes read per system call; the hash thread works one chunk behind the reader.
READ_CHUNK = 8 << 20


class _Subject(Protocol):
    @property
    def file(self) -> FileDigest: ...


class VerifiedFiles(Protocol):
    """What the loader needs from a verified statement: the release and the signed subjects.

    ``bundle.VerifiedRelease`` (from ``verify_bundle``) has both plus its
    ``root``. ``bundle.VerifiedStatement`` (from ``verify_envelope``: signatures
    only, no file hashed yet) works too when ``root=`` is given; the loader's
    own hash is then the only pass over each file's bytes.
    """

    @property
    def release(self) -> Release: ...

    @property
    def subjects(self) -> Mapping[str, _Subject]: ...


def parse_safetensors_header(
    head: bytes | memoryview, file_size: int, *, where: str = ""
) -> tuple[int, dict[str, TensorInfo], dict[str, str]]:
    """Kept for callers of the loader: :func:`sonic_registry.safetensors_header.parse_header`."""
    return parse_header(head, file_size, where=where)


# --- reading: one pass, hashed while it lands -----------------------------------


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda[:n]`` must exist."""
    if device == "auto":
        if _have_torch():
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not _have_torch():
            raise UsageError("device", "cuda needs torch: pip install 'sonic-registry[runtime]'")
        import torch

        if not torch.cuda.is_available():
            raise UsageError("device", "expected a CUDA device, found none (use --device cpu)")
        return device
    raise UsageError("device", f"expected auto, cpu, cuda or cuda:N, found {device!r}")


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """Open without following a final symlink or blocking on a FIFO; refuse non-files."""
    try:
        return open_regular(path, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise DigestMismatchError(str(path), "expected a signed file, found none") from exc
    except NotRegularFileError as exc:
        raise UnsafePathError(str(path), f"{exc.strerror}, expected a regular file") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: the final component is a symlink
            raise UnsafePathError(str(path), "expected a regular file, found a symlink") from exc
        raise UnreadableInputError(str(path), f"cannot read: {exc.strerror}") from exc


def _read_and_hash(fd: int, target: memoryview, where: str) -> str:
    """Fill ``target`` from ``fd`` while a worker thread hashes each filled chunk in order.

    Reading (a memcpy from the page cache) and SHA-256 run on different cores,
    so a verified read costs about as much as the hash alone. The file must end
    exactly at ``len(target)``: a file that grew or shrank does not match.
    """
    h = hashlib.sha256()
    size = len(target)
    pos = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sonic-load-hash") as pool:
        pending = []
        while pos < size:
            n = os.readv(fd, [target[pos : min(size, pos + READ_CHUNK)]])
            if n == 0:
                break
            # One worker runs updates in submission order: the digest is sequential.
            pending.append(pool.submit(h.update, target[pos : pos + n]))
            pos += n
        for fut in pending:
            fut.result()
    if pos != size or os.read(fd, 1):
        raise DigestMismatchError(where, f"expected {size} bytes, the file changed while read")
    return h.hexdigest()


def _allocate(size: int, *, pinned: bool) -> tuple[Any, memoryview]:
    """A writable buffer of ``size`` bytes: a torch uint8 tensor (pinned for CUDA) or bytearray."""
    if _have_torch():
        import torch

        buf = torch.empty(size, dtype=torch.uint8, pin_memory=pinned)
        view = buf.numpy().data.cast("B") if size else memoryview(bytearray())
        return buf, view
    raw = bytearray(size)
    return raw, memoryview(raw)


def _torch_tensors(
    buf: torch.Tensor, data_start: int, infos: Mapping[str, TensorInfo]
) -> dict[str, torch.Tensor]:
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, info in infos.items():
        itemsize, tname, _ = DTYPES[info.dtype]
        dtype = getattr(torch, tname)
        start = data_start + info.begin
        raw = buf[start : start + info.nbytes]
        if start % itemsize:
            raw = raw.clone()  # a misaligned view cannot be reinterpreted; copy this one
        tensor = (
            raw.view(dtype).reshape(info.shape)
            if info.nbytes
            else torch.empty(info.shape, dtype=dtype)
        )
        if sys.byteorder != "little" and itemsize > 1:  # pragma: no cover - big-endian hosts
            tensor = torch.from_numpy(tensor.numpy().byteswap())
        out[name] = tensor
    return out


def _numpy_arrays(
    raw: bytearray, data_start: int, infos: Mapping[str, TensorInfo], where: str
) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    for name, info in infos.items():
        np_dtype = DTYPES[info.dtype][2]
        if np_dtype is None:
            raise UsageError(
                f"{where}: {name}",
                f"{info.dtype} tensors need torch: pip install 'sonic-registry[runtime]'",
            )
        count = info.nbytes // DTYPES[info.dtype][0]
        arr = np.frombuffer(raw, dtype=np_dtype, count=count, offset=data_start + info.begin)
        out[name] = arr.reshape(info.shape)
    return out


def load_file_verified(
    path: str | Path, expected: FileDigest, *, device: str = "cpu"
) -> dict[str, Any]:
    """Load a safetensors file whose bytes must hash to ``expected``; one read, no reopen.

    Returns torch tensors (numpy arrays when torch is not installed) on ``device``.
    Raises :class:`DigestMismatchError` when the size or SHA-256 differs, and
    :class:`InvalidManifest` when the (signed!) file is not valid safetensors.
    """
    p = Path(path)
    where = str(p)
    target = resolve_device(device)
    fd, st = _open_regular(p)
    try:
        # Step 1: refuse a wrong size before allocating anything that large.
        if st.st_size != expected.size:
            raise size_mismatch(where, expected.size, st.st_size)
        # Step 2: one pass fills the buffer and hashes it (pinned for a later DMA).
        buf, view = _allocate(expected.size, pinned=target.startswith("cuda"))
        try:
            found = _read_and_hash(fd, view, where)
        except OSError as exc:
            raise UnreadableInputError(where, f"cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    # Step 3: nothing is interpreted until the bytes are the signed bytes.
    if found != expected.sha256:
        raise digest_mismatch(where, "sha256", expected.sha256, found)
    data_start, infos, _ = parse_safetensors_header(view, expected.size, where=where)
    if not _have_torch():
        return _numpy_arrays(buf, data_start, infos, where)
    tensors = _torch_tensors(buf, data_start, infos)
    # Step 4: only verified tensors move to the device.
    return _to_device(tensors, target)


def _to_device(tensors: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    if device == "cpu":
        return tensors
    import torch

    # The source views live in pinned memory, so these copies are asynchronous
    # DMAs; synchronise once so the caller never sees a half-copied tensor and
    # the pinned buffer can be freed safely afterwards.
    moved = {name: t.to(device, non_blocking=True) for name, t in tensors.items()}
    torch.cuda.synchronize(device)
    return moved


# --- release-level API -----------------------------------------------------------


def _component_paths(release: VerifiedFiles, role: str) -> tuple[str, ...]:
    component = release.release.components.get(role)
    if component is None:
        known = ", ".join(sorted(release.release.components)) or "none"
        raise UsageError(
            release.release.release_id, f"expected a role among {known}, found {role!r}"
        )
    if component.format != "safetensors":
        raise UsageError(
            f"{release.release.release_id}: components.{role}.format",
            f"expected safetensors (run `sonic-registry convert`), found {component.format!r}",
        )
    return component.paths


def _relative_name(path: str | Path, root: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError as exc:
            raise UnsafePathError(str(p), f"expected a file inside {root}") from exc
    return p.as_posix()


def load_verified(
    path: str | Path,
    release: VerifiedFiles,
    role: str,
    *,
    root: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Load one file of ``role`` from a verified release, re-checking its signed digest.

    ``path`` is the file's name inside the bundle (or an absolute path inside
    ``root``, which defaults to the release's root). The file must be one the
    signed manifest lists for ``role``.
    """
    base = _root_of(release, root)
    name = _relative_name(path, base)
    if name not in _component_paths(release, role):
        raise UnlistedFileError(
            str(base / name), f"expected a file of the signed {role} component, found another"
        )
    subject = release.subjects.get(name)
    if subject is None:
        raise UnlistedFileError(str(base / name), "expected a signed file, found no digest")
    from .bundle import path_in_bundle

    # Open what verify checked: the target inside the root, never a link out of it.
    return load_file_verified(path_in_bundle(base, name), subject.file, device=device)


def _root_of(release: VerifiedFiles, root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    own = getattr(release, "root", None)
    if own is None:
        raise UsageError(release.release.release_id, "expected root= (the bundle directory)")
    return Path(own)


def load_component_verified(
    release: VerifiedFiles,
    role: str,
    *,
    root: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Every file of ``role`` merged into one state dict (a key in two files is an error)."""
    out: dict[str, Any] = {}
    for name in _component_paths(release, role):
        tensors = load_verified(name, release, role, root=root, device=device)
        clash = sorted(set(tensors) & set(out))
        if clash:
            raise InvalidManifest(
                f"components.{role}", f"tensor {clash[0]!r} appears in two files", path=name
            )
        out.update(tensors)
    return out


def load_state_dict_verified(
    module: torch.nn.Module,
    release: VerifiedFiles,
    role: str,
    *,
    root: str | Path | None = None,
    device: str = "cpu",
    strict: bool = True,
) -> torch.nn.Module:
    """Load ``role``'s verified tensors into ``module``; with ``strict``, keys and shapes match.

    A mismatch is one line listing the missing and unexpected keys (and the first
    wrong shapes), raised before any parameter of ``module`` is touched.
    """
    state = load_component_verified(release, role, root=root, device=device)
    own = module.state_dict()
    where = f"{release.release.release_id}: {role}"
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} expected {tuple(own[k].shape)} found {tuple(state[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if strict and (missing or unexpected):
        raise InvalidManifest(
            "",
            f"state dict does not fit {type(module).__name__}: missing keys "
            f"{missing or 'none'}; unexpected keys {unexpected or 'none'}",
            path=where,
        )
    if shapes:
        raise InvalidManifest(
            "",
            f"state dict does not fit {type(module).__name__}: wrong shapes: "
            + "; ".join(shapes[:5]),
            path=where,
        )
    module.load_state_dict(state, strict=strict)
    return module
