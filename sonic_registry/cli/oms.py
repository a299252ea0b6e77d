"""``sonic-registry export-oms`` and the ``verify --oms`` path: OpenSSF model_signing interop."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo, emit_json, handle_errors, json_option, progress_bar, tree_bytes
from .keys import passphrase_options, read_passphrase, signing_key_option

__all__ = ["export_oms", "run_verify_oms"]


def _is_encrypted(key_path: Path) -> bool:
    try:
        with key_path.open("rb") as fh:
            return b"ENCRYPTED" in fh.read(64 * 1024)
    except OSError:
        return False  # load_private_key reports the unreadable file


@click.command("export-oms")
@click.argument("model_dir", type=click.Path(path_type=Path))
@signing_key_option
@passphrase_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("model.sig"),
    show_default=True,
    help="Signature file to write (left out of the signature when inside MODEL_DIR).",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    metavar="SIZE",
    default=None,
    help="Sign every SIZE-byte slice instead of every file (OMS 'shards' serialization).",
)
@click.option(
    "--ignore",
    "ignore_paths",
    multiple=True,
    metavar="PATH",
    help="Leave PATH (relative to MODEL_DIR) out of the signature; never a weight file.",
)
@click.option("--allow-symlinks", is_flag=True, help="Follow symlinks to files inside MODEL_DIR.")
@click.option("--model-name", default=None, help="Subject name (default: the directory name).")
@click.option("--force", is_flag=True, help="Replace the --out file if it exists.")
@json_option
@handle_errors
def export_oms(
    model_dir: Path,
    key_path: Path,
    passphrase_env: str | None,
    out: Path,
    shard_size: int | None,
    ignore_paths: tuple[str, ...],
    allow_symlinks: bool,
    model_name: str | None,
    force: bool,
    json_output: bool,
) -> None:
    """Write an OpenSSF model_signing signature of MODEL_DIR (`model_signing verify key` checks it).

    OMS key signatures carry only ECDSA keys: use an ecdsa-p256 key
    (`sonic-registry keygen --algorithm ecdsa-p256`); Ed25519 keys are refused.
    """
    from ..fileio import refuse_to_overwrite
    from ..interop.oms import export_oms as do_export

    if out.resolve() != model_dir.resolve():  # the model itself: export_oms says so
        refuse_to_overwrite(out, force=force)

    # Prompt only for an encrypted key: OMS keys are often plain PEM files made
    # by openssl, and a prompt for nothing would block a script on a terminal.
    passphrase = (
        read_passphrase(passphrase_env, purpose=str(key_path))
        if passphrase_env or _is_encrypted(key_path)
        else None
    )
    with progress_bar(lambda: tree_bytes(model_dir), "hashing") as progress:
        result = do_export(
            model_dir,
            key_path,
            out,
            passphrase=passphrase,
            shard_size=shard_size,
            ignore_paths=ignore_paths,
            allow_symlinks=allow_symlinks,
            model_name=model_name,
            progress=progress,
        )
    if json_output:
        emit_json(result.to_dict())
        return
    echo(
        f"wrote {result.out}: OMS signature of {result.model_name!r} "
        f"({result.method} serialization, {len(result.files)} files, "
        f"root sha256 {result.root_digest})"
    )
    for name in result.ignored:
        echo(f"  not signed (ignored): {name}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@handle_errors
def run_verify_oms(
    model_dir: Path,
    oms: Path,
    public_keys: tuple[Path, ...],
    trust_path: Path | None = None,
    *,
    certificate_chain: tuple[Path, ...] = (),
    ignore_paths: tuple[Path, ...] = (),
    json_output: bool,
) -> None:
    """``verify MODEL --oms SIG (--public-key PEM | --trust JSON | --certificate-chain CA)``."""
    from ..errors import UsageError
    from ..interop.oms import verify_oms
    from ..trust import TrustStore

    given = len(public_keys) + (trust_path is not None) + bool(certificate_chain)
    if given != 1 or len(public_keys) > 1:
        raise UsageError(
            "--public-key",
            "--oms needs exactly one of: one --public-key (the ECDSA key that signed), a --trust "
            f"store, or --certificate-chain ROOTS.pem; found {len(public_keys)} key(s)"
            + (", a trust store" if trust_path is not None else "")
            + (", certificate roots" if certificate_chain else ""),
        )
    key = (
        TrustStore.load(trust_path)
        if trust_path is not None
        else public_keys[0]
        if public_keys
        else None
    )
    with progress_bar(lambda: tree_bytes(model_dir), "verifying") as progress:
        result = verify_oms(
            model_dir,
            oms,
            key,
            certificate_chain=certificate_chain,
            ignore_paths=ignore_paths,
            progress=progress,
        )
    if json_output:
        emit_json(result.to_dict())
        return
    size = f", shard size {result.shard_size}" if result.shard_size is not None else ""
    legacy = ", model_signing 0.2 format" if result.legacy_format else ""
    echo(
        f"verified OMS signature {result.signature} for {result.model_name or model_dir.name!r} "
        f"({result.method} serialization{size}{legacy}): {_count(len(result.files), 'file')}, "
        f"{_count(result.resources, 'digest')}"
    )
    channel = f" ({result.channel})" if result.channel else ""
    kind = " (certificate)" if result.certificate_subject else ""
    echo(f"  signed by: {result.signer}{kind}{channel}")
    echo(f"  root sha256 {result.root_digest}")
    for name in result.files:
        echo(
            f"  covers: {model_dir.name} (a single-file model)"
            if name == "."
            else f"  covers: {name}"
        )
    for name in result.ignored:
        echo(f"  not covered (ignored): {name}")
    for line in result.warnings:
        echo(f"warning: {line}", err=True)
