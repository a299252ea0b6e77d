"""pre-commit hooks for model repositories: ``sonic-registry-hook verify|no-pickle|workflows``.

Each hook follows the pre-commit-hooks conventions: silent and exit 0 when
clean, one ``path: problem`` line per bad file on stdout and exit 1 otherwise,
exit 2 (one line on stderr) for usage errors such as a missing trust file.

* ``verify`` (:mod:`.verify_hook`): every bundle of the repository matches its
  signed manifest, whatever changed; fast on unchanged repos thanks to the
  caches in :mod:`.cache`; Git LFS pointers checked by oid and size.
* ``no-pickle`` (:mod:`.no_pickle_hook`): pickle checkpoints refused by content.
* ``workflows`` (:mod:`.workflows_hook`): workflows resolve to one release and
  their parameters are inside its signed ranges.

Only light modules are imported here: an unchanged repository is answered
without loading the verifier (``cryptography``, ``jsonschema``, ``packaging``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from .cache import Caches
from .no_pickle_hook import no_pickle
from .repo import default_cache_dir, find_bundles, git_dir, is_below
from .trust_input import Trust
from .verify_hook import verify_repo
from .workflows_hook import find_workflows, is_workflow, workflows

__all__ = [
    "Caches",
    "Trust",
    "find_bundles",
    "find_workflows",
    "git_dir",
    "is_workflow",
    "main",
    "no_pickle",
    "run",
    "verify_repo",
    "workflows",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonic-registry-hook",
        description="pre-commit hooks: silent + exit 0 when clean, one line per bad file + "
        "exit 1 otherwise, exit 2 for usage errors.",
    )
    sub = parser.add_subparsers(dest="hook", required=True, metavar="{verify,no-pickle,workflows}")

    def trust_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--trust", type=Path, help="trust.json (usually committed in the repo)")
        p.add_argument(
            "--public-key",
            dest="public_keys",
            type=Path,
            action="append",
            default=[],
            help="trust this public key (PEM) for both channels; repeatable",
        )
        p.add_argument("--cache-dir", type=Path, help="default: $GIT_DIR/sonic-registry")

    v = sub.add_parser("verify", help="every bundle matches its signed release.dsse.json")
    trust_args(v)
    v.add_argument(
        "--under",
        type=Path,
        action="append",
        default=[],
        help="look for bundles only below this directory (repeatable; default: the repo)",
    )
    v.add_argument("--no-cache", action="store_true", help="re-hash everything")
    v.add_argument("files", nargs="*", help="changed files (from pre-commit)")

    n = sub.add_parser("no-pickle", help="refuse pickle checkpoints by content")
    n.add_argument("files", nargs="*")

    w = sub.add_parser("workflows", help="workflows resolve to one release with valid params")
    trust_args(w)
    w.add_argument("--registry", help="registry directory or URL (default: the repo's bundles)")
    w.add_argument(
        "--registry-root",
        type=Path,
        default=os.environ.get("SONIC_REGISTRY_ROOT") or None,
        help="the published registry's TUF root.json: read --registry through signed TUF "
        "metadata (default: env SONIC_REGISTRY_ROOT), as the CLI's --registry-root",
    )
    w.add_argument(
        "--models-dir",
        type=Path,
        default=Path("."),
        help="folder the workflows' file names are relative to (default: the repo root)",
    )
    w.add_argument(
        "--no-builtin-catalog",
        action="store_true",
        help="do not count the built-in catalog of the published Sonic files",
    )
    w.add_argument(
        "--require-signed",
        action="store_true",
        help="policy: only a release signed by a trusted key counts (published files do not)",
    )
    w.add_argument(
        "files", nargs="*", help="workflow files to check (default: every workflow in the repo)"
    )
    return parser


def _trust_from(args: argparse.Namespace) -> Trust:
    if args.trust is None and not args.public_keys:
        raise UsageError(
            "",
            "no trusted keys: add `args: [--trust, trust.json]` (or --public-key KEY.pub) "
            "to the hook",
        )
    return Trust(args.trust, tuple(args.public_keys))


def _run_verify(args: argparse.Namespace, trust: Trust) -> list[str]:
    for d in args.under:
        if not d.is_dir():
            raise UsageError(f"--under {d}", "expected a directory of the repository")
    bundles = find_bundles(args.under or [Path(".")])
    if args.under and not bundles:
        where = ", ".join(str(d) for d in args.under)
        raise UsageError(f"--under {where}", "no bundle (release.toml / release.dsse.json)")
    # With --under, only changed files below those directories are this hook's business.
    loose = [f for f in args.files if is_below(f, args.under)] if args.under else args.files
    caches = Caches() if args.no_cache else Caches(args.cache_dir or default_cache_dir())
    return verify_repo(bundles, trust, caches=caches, loose=loose)


def _run_workflows(args: argparse.Namespace, trust: Trust) -> list[str]:
    from .workflows_hook import lfs_aware_cache

    cache = lfs_aware_cache((args.cache_dir or default_cache_dir()) / "statcache.json")
    files = [f for f in args.files if is_workflow(f)] if args.files else find_workflows()
    found = workflows(
        files,
        trust,
        registry=args.registry,
        registry_root=args.registry_root,
        models_dir=args.models_dir,
        bundles=find_bundles() if args.registry is None else (),
        stat_cache=cache,
        builtin_catalog=not args.no_builtin_catalog,
        require_signed=args.require_signed,
    )
    cache.save()
    return found


def run(argv: Sequence[str]) -> list[str]:
    """Run one hook; return its problem lines (raises a UsageError for exit 2)."""
    args = _parser().parse_args(argv)
    if args.hook == "no-pickle":
        return no_pickle(args.files)
    trust = _trust_from(args)
    if args.hook == "workflows":
        return _run_workflows(args, trust)
    return _run_verify(args, trust)


def main(argv: Sequence[str] | None = None) -> int:
    """``sonic-registry-hook verify|no-pickle|workflows [args] [files]``."""
    from ..errors import SonicRegistryError

    try:
        problems = run(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    except SonicRegistryError as exc:
        for p in exc.problems:
            sys.stderr.write(f"sonic-registry-hook: {p}\n")
        return max(p.exit_code for p in exc.problems)
    except KeyboardInterrupt:
        return 130
    from ..terminal import printable

    for line in problems:
        sys.stdout.write(printable(line) + "\n")  # names in it are escaped, never drawn
    return 1 if problems else 0
