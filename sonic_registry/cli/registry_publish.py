"""``registry init|publish|rotate-online-key``: a registry directory as a TUF repository.

Copy (or sync) the directory to any static HTTP server or object store and
clients read it with ``--registry URL --registry-root root.json``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from ._common import echo, emit_json, handle_errors, json_option

__all__ = ["PUBLISH_COMMANDS", "online_key_option", "publish_after_add"]

ROOT_KEY_NAME = "registry-root.pem"
ONLINE_KEY_NAME = "registry-online.pem"


def _directory(location: str) -> Path:
    from ..errors import UsageError

    if "://" in location:
        raise UsageError(location, "publish a registry directory, then copy it to the server")
    return Path(location)


def online_key_option(fn: Any, *, required: bool = False) -> Any:
    return click.option(
        "--online-key",
        required=required,
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="SONIC_REGISTRY_ONLINE_KEY",
        help="The registry's online TUF key (from `registry init`): re-sign the TUF "
        "metadata so the change is published (env SONIC_REGISTRY_ONLINE_KEY).",
    )(fn)


directory_option = click.option(
    "--registry",
    "registry_location",
    required=True,
    envvar="SONIC_REGISTRY",
    help="The registry directory (publish it here, then copy it to the server).",
)


def _publish(root: Path, online_key: Path, json_output: bool) -> dict[str, Any]:
    from ..registry.tuf_repo import publish
    from ..signing import load_private_key

    result = publish(root, load_private_key(online_key))
    out = {
        "timestamp_version": result.timestamp_version,
        "snapshot_version": result.snapshot_version,
        "bins_changed": list(result.bins_changed),
        "targets": result.targets,
    }
    if not json_output:
        echo(
            f"published: {result.targets} release(s); timestamp v{result.timestamp_version}, "
            f"snapshot v{result.snapshot_version}, {len(result.bins_changed)} role(s) re-signed"
        )
    return out


def publish_after_add(location: str, online_key: Path | None, json_output: bool) -> None:
    """After ``registry add``: re-sign the TUF metadata, or say that it still must be."""
    from ..registry.tuf_repo import is_tuf_registry

    if "://" in location or not is_tuf_registry(Path(location)):
        return
    if online_key is None:
        echo(
            "warning: not yet published to TUF clients: run `sonic-registry registry publish "
            "--online-key KEY` (or pass --online-key to add)",
            err=True,
        )
        return
    _publish(Path(location), online_key, json_output)


@click.command("init")
@directory_option
@click.option(
    "--keys-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where to write {ROOT_KEY_NAME} (keep it offline) and {ONLINE_KEY_NAME}.",
)
@click.option(
    "--bins-bits",
    default=5,
    show_default=True,
    help="Start with 2**N hashed bins (one new release rewrites one bin); `publish` "
    "doubles them as the registry grows, so each bin stays small (docs/registry.md).",
)
@json_option
@handle_errors
def registry_init(
    registry_location: str, keys_dir: Path, bins_bits: int, json_output: bool
) -> None:
    """Make a registry directory a TUF repository: keys, root.json, signed metadata.

    Writes one offline root key and one online key (for targets, bins,
    snapshot and timestamp), unencrypted and 0600: move the root key offline.
    Give clients REGISTRY/metadata/root.json (--registry-root).
    """
    from ..errors import UsageError
    from ..fileio import atomic_write_bytes
    from ..registry.tuf_repo import init_repository
    from ..signing import generate_key

    root = _directory(registry_location)
    paths = [keys_dir / ROOT_KEY_NAME, keys_dir / ONLINE_KEY_NAME]
    for path in paths:
        if path.exists():
            raise UsageError(str(path), "already exists; refusing to overwrite a registry key")
    root_key, online_key = generate_key(), generate_key()
    init_repository(root, root_key, online_key, bins_bits)
    keys_dir.mkdir(parents=True, exist_ok=True)
    for path, key in zip(paths, (root_key, online_key), strict=True):
        atomic_write_bytes(path, key.to_pem(None), mode=0o600)
    if not json_output:
        echo(f"root key (keep offline): {paths[0]}")
        echo(f"online key: {paths[1]}")
        echo(f"give clients: {root / 'metadata' / 'root.json'}")
    result = _publish(root, paths[1], json_output)
    if json_output:
        emit_json(
            {
                "ok": True,
                "root_key": str(paths[0]),
                "online_key": str(paths[1]),
                "root": str(root / "metadata" / "root.json"),
                **result,
            }
        )


@click.command("publish")
@directory_option
@functools.partial(online_key_option, required=True)
@json_option
@handle_errors
def registry_publish(registry_location: str, online_key: Path, json_output: bool) -> None:
    """Re-sign the TUF metadata for the registry's current releases; always a new timestamp.

    Run it after `registry add` (or pass --online-key there) and at least
    daily from cron: the timestamp expires after 7 days, and clients refuse
    an expired one (that is how they notice a frozen mirror).
    """
    result = _publish(_directory(registry_location), online_key, json_output)
    if json_output:
        emit_json({"ok": True, **result})


@click.command("rotate-online-key")
@directory_option
@click.option("--root-key", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--new-online-key",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A fresh key (sonic-registry keygen) to replace a leaked or retired online key.",
)
@json_option
@handle_errors
def registry_rotate_online_key(
    registry_location: str, root_key: Path, new_online_key: Path, json_output: bool
) -> None:
    """Replace the online key: the offline root signs a new root version, all else is re-signed.

    Clients follow the root chain on their next refresh and from then on
    refuse anything the old online key signs.
    """
    from ..registry.tuf_repo import rotate_online_key
    from ..signing import load_private_key

    version = rotate_online_key(
        _directory(registry_location),
        load_private_key(root_key),
        load_private_key(new_online_key),
    )
    if json_output:
        emit_json({"ok": True, "root_version": version})
    else:
        echo(f"rotated: root v{version} trusts the new online key; all metadata re-signed")


PUBLISH_COMMANDS = (registry_init, registry_publish, registry_rotate_online_key)
