"""``generate``: verify, resolve, check, load, run, write, measure, log, in that order.

Nothing runs before every check that can refuse it has passed:

1. every bundle involved is verified against the trust store (signatures,
   threshold, expiry, revocation, rollback, every file's digest);
2. the runtime's own graph (encoder -> decoder -> renderer) is resolved against
   a registry: all components must come from one release (or the newer one's
   signed ``compatible_with``), sit on slots of their interface, and the
   release must accept this runtime's version;
3. the parameters and the requested duration are checked against the release's
   signed ranges and the audio file's measured length;
4. weights are loaded only through :func:`sonic_registry.loader.load_state_dict_verified`
   (one read hashes and builds the tensors: a file swapped after step 1 fails here);
5. the video is written, its audio/visual sync measured from the file, and a
   generation record appended to the hash-chained audit log.

``allow_mixed_unsafe`` turns a mixed-release refusal (and only that) into a
loud warning that is also written to the audit record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sonic_registry.bundle import VerifiedRelease, verify_bundle
from sonic_registry.errors import (
    MixedReleaseError,
    SonicRegistryError,
    UsageError,
)
from sonic_registry.trust import TrustStore, channel_label

from . import FPS, __version__
from .sync import SyncResult

__all__ = [
    "DEFAULT_PARAMS",
    "ROLES",
    "GenerateRequest",
    "GenerateResult",
    "generate",
    "load_trust_store",
]

#: The runtime's graph, in the order data flows.
ROLES = ("audio_encoder", "motion_decoder", "renderer")
DEFAULT_PARAMS: Mapping[str, int | float] = MappingProxyType(
    {"inference_steps": 25, "dynamic_scale": 1.0, "motion_scale": 1.0, "min_resolution": 256}
)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class GenerateRequest:
    """Everything one ``generate`` run needs; paths are as the user gave them."""

    bundle: Path
    image: Path
    audio: Path
    out: Path
    trust: Path | None = None
    public_keys: tuple[Path, ...] = ()
    components: Mapping[str, Path] = field(default_factory=dict)  # role -> another bundle
    registry: Path | None = None
    device: str = "auto"
    params: Mapping[str, int | float | str] = field(default_factory=dict)
    duration: float | None = None
    allow_mixed_unsafe: bool = False
    allow_unsigned: bool = False
    builtin_catalog: bool = True  # count the built-in catalog of published files
    audit_log: Path = Path("generations.jsonl")
    runtime_version: str = __version__


@dataclass(frozen=True)
class GenerateResult:
    output: Path
    release_id: str
    label: str  # official / non-official / unverified
    device: str
    frames: int
    sync: SyncResult
    warnings: tuple[str, ...]
    unsafe: tuple[str, ...]  # mixed-release problems overridden by the caller
    audit_seq: int
    envelope: np.ndarray  # per-frame audio energy (for plots)
    mouth: np.ndarray  # per-frame mouth opening measured from the video

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "output": str(self.output),
            "release": self.release_id,
            "label": self.label,
            "device": self.device,
            "frames": self.frames,
            "sync": self.sync.to_dict(),
            "warnings": list(self.warnings),
            "unsafe": list(self.unsafe),
            "audit_seq": self.audit_seq,
        }


def load_trust_store(trust: Path | None, public_keys: tuple[Path, ...]) -> TrustStore:
    """The trust store file, plus pinned keys (trusted for both channels)."""
    from sonic_registry.signing import load_public_key
    from sonic_registry.trust import resolve_trust

    return resolve_trust(trust, [load_public_key(p) for p in public_keys])


def _verify_all(
    req: GenerateRequest, store: TrustStore, echo: Echo
) -> tuple[VerifiedRelease, dict[str, VerifiedRelease]]:
    """Step 1: every bundle involved verifies; role -> the verified release it comes from.

    Each bundle is verified (and hashed) once, however many roles it supplies.
    """
    for role in req.components:
        if role not in ROLES:
            raise UsageError(
                "--component", f"expected a role among {', '.join(ROLES)}, found {role!r}"
            )
    # Roles grouped by the bundle that supplies them (main bundle first); a
    # --component naming the main bundle itself belongs to the main bundle.
    main_key = req.bundle.resolve()
    groups: dict[Path, tuple[Path, list[str]]] = {main_key: (req.bundle, [])}
    for role in ROLES:
        path = req.components.get(role, req.bundle)
        groups.setdefault(path.resolve(), (path, []))[1].append(role)
    sources: dict[str, VerifiedRelease] = {}
    by_bundle: dict[Path, VerifiedRelease] = {}
    for key, (path, roles) in groups.items():
        # The weights this runtime loads are hashed by the verified loader in the
        # same read that builds the tensors (hash_on_load), so each byte is read once.
        verified = verify_bundle(
            path, store, allow_unsigned=req.allow_unsigned, hash_on_load=tuple(roles)
        )
        echo(_verified_line(path, verified))
        by_bundle[key] = verified
        for role in roles:
            sources[role] = verified
    main = by_bundle[main_key]
    for role in ROLES:
        verified = sources[role]
        if role not in verified.release.components:
            raise UsageError(
                str(verified.root), f"{verified.release.release_id} has no {role} component"
            )
    return main, sources


def _verified_line(path: Path, verified: VerifiedRelease) -> str:
    """What is true once verify_bundle returned: files deferred to the loader are not checked yet.

    Their bytes are hashed by the loader in the read that builds the tensors and
    refused there if they differ, so "verified" would be premature.
    """
    what = f"{path}: {verified.release.release_id} ({channel_label(verified.channel)})"
    if verified.unhashed:
        return f"{what}: signature ok; contents are checked while loading"
    return f"verified {what}"


def _runtime_graph(
    sources: Mapping[str, VerifiedRelease], models_dir: Path, runtime_version: str
) -> Any:
    """The graph this runtime is about to run, as the resolver sees pipelines."""
    from sonic_registry.workflows.graph import Graph, Link, Node, WeightRef

    nodes = {role: Node(id=role, type=f"reference_runtime.{role}") for role in ROLES}
    weights = []
    for role in ROLES:
        verified = sources[role]
        component = verified.release.components[role]
        for name in component.paths:
            rel = os.path.relpath(verified.root.resolve() / name, models_dir)
            weights.append(
                WeightRef(
                    node=role,
                    node_type=f"reference_runtime.{role}",
                    slot="weights",
                    path=Path(rel).as_posix(),
                    expected_role=role,
                    interface=component.interface,
                )
            )
    # Only the token edge joins two components with the same interface; the
    # renderer consumes the decoder's motion, which is not a component slot.
    links = (Link("audio_encoder", "tokens", "motion_decoder", "tokens"),)
    return Graph(
        source=f"reference_runtime {runtime_version} graph",
        format="pipeline.toml",
        nodes=MappingProxyType(nodes),
        links=links,
        weights=tuple(weights),
        strict_roles=True,  # each node is a role of this runtime
        typed_edges=True,
    )


def _resolve(
    req: GenerateRequest,
    store: TrustStore,
    sources: Mapping[str, VerifiedRelease],
    stack: ExitStack,
    echo: Echo,
) -> tuple[str, tuple[str, ...]]:
    """Step 2: resolve the graph; returns (channel, overridden mixed-release lines)."""
    from sonic_registry.catalog import load_catalog
    from sonic_registry.digest import KnownDigests
    from sonic_registry.known import KnownReleases
    from sonic_registry.registry import Registry
    from sonic_registry.resolver import analyze_graph

    roots = {v.root.resolve() for v in sources.values()}
    models_dir = Path(os.path.commonpath([str(r) for r in roots]))
    unique = {id(v): v for v in sources.values()}.values()
    if req.registry is not None:
        signed_source = stack.enter_context(Registry(req.registry, store))
    else:
        # No registry given: the releases being run are the registry. They were
        # verified moments ago; hand over the statements, not their envelopes.
        signed = [v for v in unique if v.channel != "unverified"]
        signed_source = stack.enter_context(Registry.from_statements(signed, store))
    # The built-in catalog of published files counts too (label "published").
    registry = KnownReleases(signed_source, load_catalog() if req.builtin_catalog else None)
    # Every file is identified by its subject digest, never re-read here: each
    # subject either matched in verify_bundle (or was just hashed, for an
    # unsigned bundle) or was deferred to the loader, which hashes the very
    # bytes it loads and refuses any that differ.
    known = KnownDigests({v.path_of(n): s.file for v in unique for n, s in v.subjects.items()})
    resolution = analyze_graph(
        _runtime_graph(sources, models_dir, req.runtime_version),
        registry,
        models_dir,
        runtime_version=req.runtime_version,
        allow_unsigned=req.allow_unsigned,
        stat_cache=known,
    )
    mixed = [p for p in resolution.problems if isinstance(p, MixedReleaseError)]
    others = [p for p in resolution.problems if not isinstance(p, MixedReleaseError)]
    if mixed and req.allow_mixed_unsafe and not others:
        # The resolver skips the runtime check when no single release was
        # chosen; every release involved must still accept this runtime.
        _check_runtime_each(unique, req.runtime_version)
        unsafe = tuple(f"UNSAFE (--allow-mixed-unsafe): {p}" for p in mixed)
        for line in unsafe:
            echo(line)
        return resolution.channel, unsafe
    resolution.raise_for_problems()
    chosen = resolution.release
    what = chosen.release.release_id if chosen is not None else "no signed release"
    echo(f"resolved graph: {what} ({resolution.label})")
    return resolution.channel, ()


def _check_runtime_each(releases: Iterable[VerifiedRelease], runtime_version: str) -> None:
    """Every release involved accepts this runtime; raise the first problem."""
    # The resolver's own check (PEP 440 validation included), so a forced mix
    # is judged exactly as a single release would be.
    from sonic_registry.resolver import check_runtime

    for verified in releases:
        problems = check_runtime(verified, runtime_version, str(verified.root))
        if problems:
            raise problems[0]


def _check_params(
    req: GenerateRequest, main: VerifiedRelease, echo: Echo
) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    """Step 3: signed ranges and the measured audio length; returns (report, params, warnings).

    A knob the release declares no range for is not judged, but a non-default
    value for it is reported: nobody validated the model there.
    """
    from sonic_registry.params import check_params

    params: dict[str, Any] = {**DEFAULT_PARAMS, **req.params}
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise UsageError(unknown[0], f"unknown parameter (known: {', '.join(DEFAULT_PARAMS)})")
    declared = {k: v for k, v in params.items() if k in main.release.params}
    report = check_params(main.release, declared, audio=req.audio, duration=req.duration)
    report.raise_for_errors()
    warnings = [item.message for item in report.warnings]
    warnings += [
        f"{name}={value} is not validated by {main.release.release_id} (it declares no range)"
        for name, value in params.items()
        if name not in declared and value != DEFAULT_PARAMS[name]
    ]
    for line in warnings:
        echo(f"warning: {line}")
    echo(f"params ok: {', '.join(f'{k}={v}' for k, v in params.items())}")
    return report, params, tuple(warnings)


def generate(req: GenerateRequest, *, echo: Echo = lambda line: None) -> GenerateResult:
    """Run the whole checked pipeline; raises a library error on the first refusal."""
    import torch

    from sonic_registry.audit import AuditLog, generation_record
    from sonic_registry.loader import load_state_dict_verified, resolve_device

    from .engine import Models, generate_frames
    from .media import decode_audio, load_image, read_video, write_video
    from .model import AudioEncoder, MotionDecoder, Renderer, frame_count
    from .sync import audio_envelope, measure_offset, mouth_opening

    store = load_trust_store(req.trust, req.public_keys)
    with ExitStack() as stack:
        main, sources = _verify_all(req, store, echo)
        channel, unsafe = _resolve(req, store, sources, stack, echo)
    report, params, param_warnings = _check_params(req, main, echo)
    device = resolve_device(req.device)
    # Inputs next: an unreadable portrait or audio file fails before any weight is read.
    audio = decode_audio(req.audio)
    frames = frame_count(len(audio))
    image = load_image(req.image, int(params["min_resolution"]))
    models = Models(AudioEncoder(), MotionDecoder(), Renderer())
    modules: dict[str, torch.nn.Module] = {
        "audio_encoder": models.encoder,
        "motion_decoder": models.decoder,
        "renderer": models.renderer,
    }
    for role, module in modules.items():
        # Parameters live on the device first, so the verified tensors are
        # copied once (pinned host buffer -> device) and never back.
        module.to(device).eval()
        load_state_dict_verified(module, sources[role], role, device=device)
    echo(f"loaded {len(modules)} components on {device} (each read once, digest checked)")
    output = generate_frames(
        models,
        image,
        audio,
        frames=frames,
        inference_steps=int(params["inference_steps"]),
        dynamic_scale=float(params["dynamic_scale"]),
        motion_scale=float(params["motion_scale"]),
        device=device,
    )
    write_video(req.out, output.frames, audio)
    renderer = models.renderer
    decoded = read_video(req.out)
    mouth = mouth_opening(
        decoded,
        _floats4(renderer.mouth_geometry),
        _floats3(renderer.mouth_color),
        _floats2(renderer.head_gain),
    )
    envelope = audio_envelope(audio, len(mouth))
    sync = measure_offset(envelope, mouth)
    echo(
        f"wrote {req.out}: {frames} frames at {FPS} fps, "
        f"audio/visual offset {sync.offset_text} (correlation {sync.correlation:.2f})"
    )
    warnings = param_warnings + unsafe
    record = generation_record(
        main,
        params,
        sources=sources,
        audio=report.audio or req.audio,
        duration=req.duration,
        output=req.out,
        device=device,
        warnings=warnings,
        runtime={"reference_runtime": req.runtime_version},
    )
    # A forced mix is never shown as plainly "official", whoever signed the parts.
    label = channel_label(channel)
    if unsafe:
        label = f"UNSAFE mixed releases ({label})"
    record["label"] = label
    record["sync"] = {**sync.to_dict(), "method": "audio RMS envelope vs mouth area in video"}
    if unsafe:
        record["unsafe_mixed_releases"] = list(unsafe)
    appended = AuditLog(req.audit_log).append(record)
    echo(f"audit record #{appended.seq} appended to {req.audit_log}")
    return GenerateResult(
        output=req.out,
        release_id=main.release.release_id,
        label=label,
        device=device,
        frames=frames,
        sync=sync,
        warnings=warnings,
        unsafe=unsafe,
        audit_seq=appended.seq,
        envelope=envelope,
        mouth=mouth,
    )


def _floats(t: Any, n: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in t.detach().cpu().tolist())
    if len(values) != n:
        raise SonicRegistryError("renderer", f"expected {n} values, found {len(values)}")
    return values


def _floats2(t: Any) -> tuple[float, float]:
    a, b = _floats(t, 2)
    return (a, b)


def _floats3(t: Any) -> tuple[float, float, float]:
    a, b, c = _floats(t, 3)
    return (a, b, c)


def _floats4(t: Any) -> tuple[float, float, float, float]:
    a, b, c, d = _floats(t, 4)
    return (a, b, c, d)
