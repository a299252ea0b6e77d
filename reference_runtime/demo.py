"""``make demo``: the whole story on one machine, printed step by step, files in demo-output/.

1. build and sign releases 1.2.0 and 1.3.0 (official key) and a community
   1.3.1, and add them to a registry;
2. generate with the consistent 1.3.0 bundle (offset near 0 ms, audit record),
   and with the community 1.3.1 (runs, labelled non-official);
3. refuse a 1.2.0 encoder + 1.3.0 decoder, then run it with the explicit unsafe
   override and show the measured ~300 ms offset;
4. refuse a tampered weight, an unsigned bundle (and one signed by an unknown
   key), v1.2 runtime code on the 1.3.0 release, a duration that does not match
   the audio, and out-of-range params;
5. ``sonic-registry audit verify`` and ``audit find`` say which release made
   the video; ``sync.png`` plots mouth opening vs audio energy for both runs.

Every step checks that what happened is what should happen; :func:`run_demo`
returns False (and the command exits 1) when one did not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sonic_registry.errors import (
    DigestMismatchError,
    IncompatibleRuntimeError,
    MixedReleaseError,
    SonicRegistryError,
    UnsignedReleaseError,
    UsageError,
    VerificationError,
)

from . import __version__
from .runtime import GenerateRequest, GenerateResult, generate

__all__ = ["MARKER", "DemoConfig", "run_demo"]

#: A file that marks a directory as the demo's own, so a re-run may clear it.
MARKER = ".sonic-reference-demo"
#: |offset| a consistent release must stay under, and the mixed run's expected window.
IN_SYNC_MS = 40.0
MIXED_MS = (250.0, 350.0)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("demo-output")
    seconds: float = 8.0
    size: int = 256
    device: str = "auto"


class _Steps:
    """Prints numbered steps and remembers whether each turned out as expected."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.failures: list[str] = []

    def header(self, text: str) -> None:
        self.echo("")
        self.echo(f"== {text}")

    def expect(self, ok: bool, line: str) -> None:
        self.echo(("  ok    " if ok else "  FAIL  ") + line)
        if not ok:
            self.failures.append(line)

    def refused(
        self, what: str, expected: type[SonicRegistryError], fn: Callable[[], object]
    ) -> None:
        try:
            fn()
        except SonicRegistryError as exc:
            name = type(exc).__name__
            self.expect(
                isinstance(exc, expected), f"{what}: refused ({name}, exit {exc.exit_code}): {exc}"
            )
            return
        self.expect(False, f"{what}: was NOT refused")


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise UsageError(str(out), "exists and is not a demo output directory; choose --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("created by `python -m reference_runtime demo`\n")


def _cli(args: list[str]) -> tuple[int, str]:
    """Run ``sonic-registry`` as a user would (a real subprocess, its real output)."""
    code = "import sys; from sonic_registry.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    return proc.returncode, (proc.stdout + proc.stderr).rstrip()


def _command(req: GenerateRequest) -> str:
    """The ``python -m reference_runtime generate`` line that does what ``req`` does."""
    parts = ["python -m reference_runtime generate", f"--bundle {req.bundle}"]
    parts += [f"--component {role}={path}" for role, path in req.components.items()]
    parts += [f"--image {req.image}", f"--audio {req.audio}", f"--out {req.out}"]
    if req.trust is not None:
        parts.append(f"--trust {req.trust}")
    if req.registry is not None:
        parts.append(f"--registry {req.registry}")
    parts += [f"--{k.replace('_', '-')} {v}" for k, v in req.params.items()]
    if req.duration is not None:
        parts.append(f"--duration {req.duration:g}")
    parts.append(f"--audit-log {req.audit_log}")
    if req.device != "auto":
        parts.append(f"--device {req.device}")
    if req.allow_mixed_unsafe:
        parts.append("--allow-mixed-unsafe")
    if req.runtime_version != __version__:
        parts.append(f"--runtime-version {req.runtime_version}  # pretend to be older code")
    return " ".join(parts)


def run_demo(cfg: DemoConfig, *, echo: Echo = print) -> bool:
    from sonic_registry.bundle import sign_bundle
    from sonic_registry.registry import Registry
    from sonic_registry.signing import generate_key, save_private_key
    from sonic_registry.trust import TrustStore, channel_label

    from .media import synth_face, synth_speech, write_wav
    from .plot import Trace, plot_sync
    from .weights import COMMUNITY_VERSION, write_bundle

    out = cfg.out
    steps = _Steps(echo)
    _prepare(out)

    # --- 1. keys, releases, registry ------------------------------------------------
    steps.header("1. build and sign releases 1.2.0, 1.3.0 (official) and 1.3.1 (community)")
    keys = out / "keys"
    keys.mkdir()
    official, community = generate_key("ed25519"), generate_key("ed25519")
    for name, key in (("official", official), ("community", community)):
        save_private_key(key, keys / f"{name}.key", None)
        (keys / f"{name}.pub").write_text(key.public.to_pem())
    trust_path = out / "trust.json"
    TrustStore().with_key(official.public, ["official"], name="official").with_key(
        community.public, ["community"], name="community"
    ).save(trust_path)
    echo(f"  keys in {keys}/, trust store {trust_path}")
    bundles = out / "bundles"
    roots = {}
    for version, key in (("1.2.0", official), ("1.3.0", official), (COMMUNITY_VERSION, community)):
        root = write_bundle(bundles / f"sonic-reference-{version}", version)
        sign_bundle(root, key)
        roots[version] = root
        echo(f"  built + signed {root}")
    registry_dir = out / "registry"
    store = TrustStore.load(trust_path)
    with Registry(registry_dir, store) as registry:
        for root in roots.values():
            registry.add(root / "release.dsse.json")
        for statement in registry.releases():
            r = statement.release
            label = channel_label(statement.channel)
            echo(f"  registry {registry_dir}: {r.release_id} ({label})")
    steps.expect(len(roots) == 3, "three signed releases in the registry")

    # Inputs, made deterministically (no TTS, no download).
    face, speech = out / "face.png", out / "speech.wav"
    synth_face(512).save(face)
    write_wav(speech, synth_speech(cfg.seconds))
    echo(f"  inputs: {face} (drawn portrait), {speech} ({cfg.seconds:g} s speech-like audio)")

    base = GenerateRequest(
        bundle=roots["1.3.0"],
        image=face,
        audio=speech,
        out=out / "ok.mp4",
        trust=trust_path,
        registry=registry_dir,
        device=cfg.device,
        params={"min_resolution": cfg.size},
        audit_log=out / "generations.jsonl",
    )

    def run(req: GenerateRequest) -> GenerateResult:
        echo(f"  $ {_command(req)}")
        return generate(req, echo=lambda line: echo(f"    {line}"))

    # --- 2. the consistent release ---------------------------------------------------
    steps.header("2. generate with the consistent 1.3.0 bundle")
    good = run(base)
    steps.expect(
        abs(good.sync.offset_ms) < IN_SYNC_MS,
        f"{good.output}: offset {good.sync.offset_text} ({good.label}), "
        f"audit record #{good.audit_seq}",
    )
    echo("  the community fine-tune runs too, but is labelled as such:")
    fork = run(replace(base, bundle=roots[COMMUNITY_VERSION], out=out / "community.mp4"))
    steps.expect(
        fork.label == "non-official" and abs(fork.sync.offset_ms) < IN_SYNC_MS,
        f"{fork.output}: {fork.release_id} labelled {fork.label}, offset {fork.sync.offset_text}",
    )

    # --- 3. mixed releases -------------------------------------------------------------
    steps.header("3. a 1.2.0 audio encoder with the 1.3.0 motion decoder")
    mixed_req = replace(base, out=out / "mixed.mp4", components={"audio_encoder": roots["1.2.0"]})
    steps.refused("1.2.0 encoder + 1.3.0 decoder", MixedReleaseError, lambda: run(mixed_req))
    echo("  ... and again with --allow-mixed-unsafe:")
    mixed = run(replace(mixed_req, allow_mixed_unsafe=True))
    lo, hi = MIXED_MS
    steps.expect(
        lo <= mixed.sync.offset_ms <= hi,
        f"{mixed.output}: offset {mixed.sync.offset_text}: the mouth moves after the "
        "sound (logged as UNSAFE)",
    )

    # --- 4. refusals -----------------------------------------------------------------
    steps.header("4. what the runtime refuses")
    tampered = bundles / "tampered-1.3.0"
    shutil.copytree(roots["1.3.0"], tampered)
    weight = tampered / "audio2bucket.safetensors"
    data = bytearray(weight.read_bytes())
    data[-1] ^= 0x01
    weight.write_bytes(bytes(data))
    steps.refused(
        "one flipped bit in audio2bucket.safetensors",
        DigestMismatchError,
        lambda: run(replace(base, bundle=tampered, out=out / "tampered.mp4")),
    )
    unsigned = bundles / "unsigned-1.3.0"
    shutil.copytree(roots["1.3.0"], unsigned)
    (unsigned / "release.dsse.json").unlink()
    steps.refused(
        "a bundle without release.dsse.json",
        UnsignedReleaseError,
        lambda: run(replace(base, bundle=unsigned, out=out / "unsigned.mp4")),
    )
    stranger = bundles / "stranger-1.3.0"
    shutil.copytree(roots["1.3.0"], stranger)
    (stranger / "release.dsse.json").unlink()
    sign_bundle(stranger, generate_key("ed25519"))
    steps.refused(
        "the same bundle signed by a key nobody trusts",
        UnsignedReleaseError,
        lambda: run(replace(base, bundle=stranger, out=out / "stranger.mp4")),
    )
    steps.refused(
        "reference_runtime 1.2.0 on the 1.3.0 release",
        IncompatibleRuntimeError,
        lambda: run(replace(base, runtime_version="1.2.0", out=out / "old-runtime.mp4")),
    )
    steps.refused(
        f"duration={cfg.seconds / 2:g} for {cfg.seconds:g} s of audio",
        VerificationError,
        lambda: run(replace(base, duration=cfg.seconds / 2, out=out / "short.mp4")),
    )
    steps.refused(
        "dynamic_scale=2.0 (allowed 0.5..1.3)",
        VerificationError,
        lambda: run(
            replace(base, params={**base.params, "dynamic_scale": 2.0}, out=out / "wild.mp4")
        ),
    )
    made = ("ok.mp4", "community.mp4", "mixed.mp4")
    leftovers = [p.name for p in out.glob("*.mp4") if p.name not in made]
    steps.expect(not leftovers, f"no video written by a refused run {leftovers or ''}".strip())

    # --- 5. the audit log ----------------------------------------------------------
    steps.header("5. which release made the video?")
    log = str(base.audit_log)
    for args in (["audit", "verify", log], ["audit", "find", str(good.output), "--log", log]):
        echo(f"  $ sonic-registry {' '.join(args)}")
        code, text = _cli(args)
        for line in text.splitlines():
            echo(f"    {line}")
        steps.expect(code == 0, f"sonic-registry {args[0]} {args[1]} exit {code}")

    plot = plot_sync(
        [
            Trace(
                f"1.3.0 (consistent): offset {good.sync.offset_text}",
                good.envelope,
                good.mouth,
            ),
            Trace(
                f"1.2.0 encoder + 1.3.0 decoder (UNSAFE): offset {mixed.sync.offset_text}",
                mixed.envelope,
                mixed.mouth,
            ),
        ],
        out / "sync.png",
    )
    echo(f"  plot: {plot}")

    steps.header("result")
    if steps.failures:
        echo(f"  {len(steps.failures)} step(s) did not behave as expected")
        return False
    echo(f"  every step behaved as expected; files in {out}/")
    return True
