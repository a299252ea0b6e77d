"""``sonic-registry keygen`` and the passphrase / key options other commands share."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ._common import echo, emit_json, handle_errors, json_option

__all__ = ["keygen", "passphrase_options", "read_passphrase", "signing_key_option"]


class _AlgorithmChoice(click.Choice[str]):
    """``--algorithm``: the names in ``signing.ALGORITHMS``, read when the option is used.

    The one list of algorithms stays in :mod:`sonic_registry.signing` (add one
    there), and ``sonic-registry --help`` still does not import cryptography.
    """

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from ..signing import ALGORITHMS

        return tuple(ALGORITHMS)

    @choices.setter
    def choices(self, _value: object) -> None:
        """click.Choice.__init__ assigns the list; the property above is the list."""


def passphrase_options(fn: Any) -> Any:
    fn = click.option(
        "--passphrase-env",
        metavar="VAR",
        help="Read the key's passphrase from environment variable VAR (never blocks).",
    )(fn)
    return fn


def signing_key_option(fn: Any) -> Any:
    return click.option(
        "--key",
        "key_path",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Private key file (PEM) written by `sonic-registry keygen`.",
    )(fn)


def read_passphrase(
    passphrase_env: str | None, *, purpose: str, confirm: bool = False, required: bool = False
) -> bytes | None:
    """Passphrase from ``$VAR``, or a hidden prompt when stdin is a terminal.

    Never waits on a terminal that is not there: without a TTY and without
    ``--passphrase-env`` we return None (or fail when ``required``).
    """
    from ..errors import UsageError

    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if value is None:
            raise UsageError(
                "--passphrase-env", f"environment variable {passphrase_env} is not set"
            )
        return value.encode("utf-8") or None
    if sys.stdin is not None and sys.stdin.isatty():
        text: str = click.prompt(
            f"Passphrase for {purpose}",
            hide_input=True,
            confirmation_prompt=confirm,
            default="",
            show_default=False,
        )
        return text.encode("utf-8") or None
    if required:
        raise UsageError(
            "--passphrase-env",
            "stdin is not a terminal: give --passphrase-env VAR or --no-passphrase",
        )
    return None


@click.command()
@click.argument("name", type=click.Path(path_type=Path))
@click.option(
    "--algorithm",
    type=_AlgorithmChoice(),
    default="ed25519",
    show_default=True,
    help="ECDSA keys (SHA-256/384/512 by curve) can also sign OpenSSF model_signing signatures.",
)
@click.option("--no-passphrase", is_flag=True, help="Store the private key unencrypted.")
@passphrase_options
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
@handle_errors
def keygen(
    name: Path,
    algorithm: str,
    no_passphrase: bool,
    passphrase_env: str | None,
    force: bool,
    json_output: bool,
) -> None:
    """Create NAME.key (private, mode 0600) and NAME.pub (public).

    The passphrase comes from --passphrase-env VAR, else a prompt when stdin is
    a terminal; without either, pass --no-passphrase.
    """
    from ..fileio import atomic_write_text, refuse_to_overwrite
    from ..signing import generate_key, save_private_key

    key_path = name.with_name(name.name + ".key")
    pub_path = name.with_name(name.name + ".pub")
    for p in (key_path, pub_path):
        refuse_to_overwrite(p, force=force)
    passphrase = None
    if not no_passphrase:
        passphrase = read_passphrase(
            passphrase_env, purpose=str(key_path), confirm=True, required=True
        )
    key = generate_key(algorithm)
    save_private_key(key, key_path, passphrase)
    atomic_write_text(pub_path, key.public.to_pem())
    if json_output:
        emit_json(
            {
                "ok": True,
                "private_key": str(key_path),
                "public_key": str(pub_path),
                "keyid": key.keyid,
                "algorithm": algorithm,
                "encrypted": passphrase is not None,
            }
        )
    else:
        echo(f"wrote {key_path} (private, 0600{', encrypted' if passphrase else ''})")
        echo(f"wrote {pub_path} (public)")
        echo(f"keyid {key.keyid}")
