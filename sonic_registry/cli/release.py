"""``sonic-registry init / sign / verify``: describe, sign and check a model directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import echo, emit_json, handle_errors, json_option, progress_bar, tree_bytes
from .keys import passphrase_options, read_passphrase, signing_key_option

if TYPE_CHECKING:
    from ..trust import TrustStore

__all__ = ["init", "load_trust", "sign", "trust_options", "verify"]


def trust_options(fn: Any) -> Any:
    """``--trust`` / ``--public-key``: the keys a verifying command trusts."""
    fn = click.option(
        "--public-key",
        "public_keys",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Trust this public key (PEM) for both channels; repeatable.",
    )(fn)
    fn = click.option(
        "--trust",
        "trust_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Trust store (trust.json) with keys, roles, thresholds and seen serials.",
    )(fn)
    return fn


def load_trust(trust_path: Path | None, public_keys: tuple[Path, ...]) -> TrustStore:
    """The trust store named by ``--trust`` plus every ``--public-key``."""
    from ..signing import load_public_key
    from ..trust import resolve_trust

    return resolve_trust(trust_path, [load_public_key(p) for p in public_keys])


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", default="sonic", show_default=True, help="Model name.")
@click.option("--version", "version", default="0.1.0", show_default=True, help="PEP 440 version.")
@json_option
@handle_errors
def init(model_dir: Path, model: str, version: str, json_output: bool) -> None:
    """Draft MODEL_DIR/release.toml from the weight files found there (never overwrites)."""
    from ..scaffold import write_release_toml

    path = write_release_toml(model_dir, model=model, version=version)
    if json_output:
        emit_json({"ok": True, "release_toml": str(path)})
    else:
        echo(
            f"wrote {path}: review roles, interfaces and ranges, then run "
            f"`sonic-registry sign {model_dir} --key KEY`"
        )


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@signing_key_option
@passphrase_options
@click.option(
    "--blake3",
    "with_blake3",
    is_flag=True,
    help="Also sign BLAKE3 digests (extra `blake3`); verifiers that have it check those.",
)
@json_option
@handle_errors
def sign(
    model_dir: Path,
    key_path: Path,
    passphrase_env: str | None,
    with_blake3: bool,
    json_output: bool,
) -> None:
    """Sign MODEL_DIR (release.toml + every file) into MODEL_DIR/release.dsse.json.

    Signing an unchanged release again with another key adds a signature
    (threshold signing).
    """
    from ..bundle import sign_bundle
    from ..errors import InvalidKeyError
    from ..signing import load_private_key

    try:
        key = load_private_key(key_path, read_passphrase(passphrase_env, purpose=str(key_path)))
    except InvalidKeyError as exc:
        if "encrypted" in exc.detail and not passphrase_env and not sys.stdin.isatty():
            raise InvalidKeyError(
                exc.where,
                "the key is encrypted and stdin is not a terminal: give --passphrase-env VAR",
            ) from exc
        raise
    with progress_bar(lambda: tree_bytes(model_dir), "hashing") as progress:
        out, envelope, added = sign_bundle(model_dir, key, progress=progress, blake3=with_blake3)
    if json_output:
        emit_json(
            {
                "ok": True,
                "envelope": str(out),
                "keyid": key.keyid,
                "signatures": len(envelope.signatures),
                "added": added,
                "manifest_digest": envelope.payload_digest,
            }
        )
        return
    verb = "added a signature to" if added else "wrote"
    echo(
        f"{verb} {out} ({len(envelope.signatures)} signature(s); "
        f"key {key.keyid[:16]}, manifest sha256 {envelope.payload_digest[:16]})"
    )


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@trust_options
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept a release no trusted key signed; it is labelled 'unverified'.",
)
@click.option(
    "--no-record",
    is_flag=True,
    help="Do not record the serial in the trust store (rollback protection).",
)
@click.option(
    "--digest",
    type=click.Choice(["auto", "sha256"]),
    default="auto",
    show_default=True,
    help="auto: check signed BLAKE3 digests when blake3 is installed, else SHA-256.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse hard-linked files (their bytes can change through another path).",
)
@click.option(
    "--oms",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Verify this OpenSSF model_signing signature instead (MODEL_DIR may then be one file).",
)
@click.option(
    "--certificate-chain",
    "certificate_chain",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PEM",
    help="With --oms: root certificate(s) a certificate signature must chain to (repeatable).",
)
@click.option(
    "--ignore-paths",
    "ignore_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="With --oms: leave PATH (inside the model) out, as model_signing does; never a weight.",
)
@click.option(
    "--model",
    "model_name",
    metavar="NAME",
    help="Refuse a release of another model (e.g. --model sonic refuses a dicetalk bundle).",
)
@json_option
@handle_errors
def verify(
    model_dir: Path,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    allow_unsigned: bool,
    no_record: bool,
    digest: str,
    strict: bool,
    oms: Path | None,
    certificate_chain: tuple[Path, ...],
    ignore_paths: tuple[Path, ...],
    model_name: str | None,
    json_output: bool,
) -> None:
    """Verify MODEL_DIR against its signed release.dsse.json and the keys you trust.

    Exit 0 verified, 1 verification failed (one line per problem), 2 usage or
    unreadable input. Re-hashes every byte; never unpickles anything.
    """
    if oms is not None:
        from .oms import run_verify_oms

        return run_verify_oms(
            model_dir,
            oms,
            public_keys,
            trust_path,
            certificate_chain=certificate_chain,
            ignore_paths=ignore_paths,
            json_output=json_output,
        )
    if certificate_chain or ignore_paths:
        from ..errors import UsageError

        flag = "--certificate-chain" if certificate_chain else "--ignore-paths"
        raise UsageError(flag, "applies to OpenSSF model_signing signatures only: add --oms SIG")
    if not model_dir.is_dir():
        from ..errors import UnreadableInputError

        raise UnreadableInputError(str(model_dir), "expected a model directory")
    with progress_bar(lambda: tree_bytes(model_dir), "verifying") as prog:
        # Hashing starts first; the signature code is imported and the keys are
        # loaded beside it (verify_bundle uses the digests only if it passes).
        from ..prehash import Prehash, start_prehash

        # the console script may have started hashing before click loaded (console.py)
        started = click.get_current_context().obj
        early = start_prehash(
            model_dir,
            progress=prog,
            prefer_blake3=digest == "auto",
            started=started if isinstance(started, Prehash) else None,
        )
        try:
            from ..bundle import verify_bundle

            store = load_trust(trust_path, public_keys)
        except BaseException:
            if early is not None:
                early.cancel()
            raise
        verified = verify_bundle(
            model_dir,
            store,
            allow_unsigned=allow_unsigned,
            record_serial=not no_record,
            progress=prog,
            prefer_blake3=digest == "auto",
            prehash=early,
            model=model_name,
            strict=strict,
        )
    from ..trust import channel_label

    if json_output:
        emit_json({"ok": True, **verified.to_dict()})
        return
    r = verified.release
    label = channel_label(verified.channel, long=True)
    echo(f"verified {r.model} {r.version} (serial {r.serial}): {label}")
    echo(f"  signed by: {', '.join(verified.signers) or 'nobody'}")
    echo(f"  {len(verified.subjects)} files, manifest sha256 {verified.manifest_digest}")
    for w in verified.warnings:
        echo(f"warning: {w}", err=True)
