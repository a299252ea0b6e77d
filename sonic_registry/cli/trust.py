"""``sonic-registry trust init|add-key|revoke|threshold|show``: manage trust.json."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from ..locks import file_lock
from ._common import cells, echo, emit_json, handle_errors, json_option, stdout_console

__all__ = ["trust"]

_store_option = click.option(
    "--trust",
    "trust_path",
    default="trust.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The trust store to edit.",
)


@click.group()
def trust() -> None:
    """Manage the trust store: keys, roles, thresholds, revocations, seen serials."""


@trust.command("init")
@_store_option
@json_option
@handle_errors
def trust_init(trust_path: Path, json_output: bool) -> None:
    """Create an empty trust store (refuses to overwrite)."""
    from ..errors import UsageError
    from ..trust import TrustStore

    if trust_path.exists():
        raise UsageError(str(trust_path), "already exists; refusing to overwrite it")
    written = TrustStore().save(trust_path)
    if json_output:
        emit_json({"ok": True, "trust": str(trust_path), "version": written.version})
    else:
        echo(f"wrote {trust_path} (no keys yet: add one with `trust add-key`)")


@trust.command("add-key")
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path))
@_store_option
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["official", "community"]),
    default=("official",),
    show_default=True,
    help="Channel(s) this key may sign.",
)
@click.option("--name", default="", help="A label shown in verify output.")
@click.option("--expires", default=None, help="UTC expiry, e.g. 2027-12-31T00:00:00Z.")
@json_option
@handle_errors
def trust_add_key(
    public_key: Path,
    trust_path: Path,
    roles: tuple[str, ...],
    name: str,
    expires: str | None,
    json_output: bool,
) -> None:
    """Trust PUBLIC_KEY for the given role(s)."""
    from ..errors import UsageError
    from ..manifest import format_time, parse_time
    from ..signing import load_public_key
    from ..trust import TrustStore

    if expires:
        when = parse_time(expires, field="--expires")
        if when <= datetime.now(UTC):
            raise UsageError(
                "--expires",
                f"expected a future time, found {expires}, already past "
                f"(it is now {format_time(datetime.now(UTC))})",
            )
    key = load_public_key(public_key)
    with file_lock(trust_path):
        store = TrustStore.load(trust_path)
        # Adding a key again adds its roles: a second --role never silently
        # drops the first (remove a role by editing trust.json and reviewing it).
        before = store.keys.get(key.keyid)
        had = before.roles if before is not None else ()
        merged = tuple(sorted({*had, *roles}))
        label = name or (before.name if before is not None else "") or public_key.stem
        written = store.with_key(
            key, merged, name=label, expires=expires or (before.expires if before else None)
        ).save()
    if json_output:
        emit_json(
            {
                "ok": True,
                "keyid": key.keyid,
                "roles": list(merged),
                "added_roles": sorted(set(merged) - set(had)),
                "version": written.version,
            }
        )
    elif before is None:
        echo(f"trusted {key.keyid[:16]} ({label}) for {', '.join(merged)}")
    else:
        added = sorted(set(merged) - set(had))
        change = f"added {', '.join(added)}" if added else "no new role"
        echo(f"trusted {key.keyid[:16]} ({label}) for {', '.join(merged)} ({change})")


@trust.command("revoke")
@click.argument("keyid")
@_store_option
@json_option
@handle_errors
def trust_revoke(keyid: str, trust_path: Path, json_output: bool) -> None:
    """Revoke KEYID (full, or a unique prefix of 4+ hex digits): its signatures never count."""
    from ..trust import TrustStore

    with file_lock(trust_path):
        store = TrustStore.load(trust_path)
        full = store.match_keyid(keyid)
        written = store.with_revoked(full).save()
    if json_output:
        emit_json({"ok": True, "revoked": full, "version": written.version})
    else:
        echo(f"revoked {full}")


@trust.command("threshold")
@click.argument("role", type=click.Choice(["official", "community"]))
@click.argument("count", type=click.IntRange(1, 64))
@_store_option
@json_option
@handle_errors
def trust_threshold(role: str, count: int, trust_path: Path, json_output: bool) -> None:
    """Require COUNT distinct ROLE keys to sign a ROLE release."""
    from ..trust import TrustStore

    with file_lock(trust_path):
        written = TrustStore.load(trust_path).with_threshold(role, count).save()
    if json_output:
        emit_json({"ok": True, "role": role, "threshold": count, "version": written.version})
    else:
        echo(f"{role} releases now need {count} signature(s)")


@trust.command("show")
@_store_option
@json_option
@handle_errors
def trust_show(trust_path: Path, json_output: bool) -> None:
    """Print the keys, thresholds, revocations and seen serials."""
    from ..trust import TrustStore

    store = TrustStore.load(trust_path)
    if json_output:
        emit_json(store.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"{trust_path} (version {store.version})")
    for col in ("keyid", "name", "roles", "algorithm", "expires", "status"):
        table.add_column(col)
    for kid, k in sorted(store.keys.items()):
        status = "revoked" if kid in store.revoked else "ok"
        table.add_row(
            *cells(
                kid[:16], k.name, ", ".join(k.roles), k.public.algorithm, k.expires or "-", status
            )
        )
    console = stdout_console()
    console.print(table)
    thresholds = ", ".join(f"{r} {n}" for r, n in sorted(store.thresholds.items()))
    console.print(f"thresholds: {thresholds}")
    if store.serials:
        console.print("serials seen: " + ", ".join(f"{k}#{v}" for k, v in store.serials.items()))
