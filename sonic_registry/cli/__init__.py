"""The ``sonic-registry`` command: a thin click layer over the library.

Each command group lives in its own module (``keys``, ``release``, ...); this
module only assembles them. Command modules import the library lazily inside
their functions so that ``sonic-registry --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

# module name -> attribute names of the click commands it defines
_COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "keys": ("keygen",),
    "release": ("init", "sign", "verify"),
    "trust": ("trust",),
    "oms": ("export_oms",),
    "params": ("check_params_command",),
    "audit": ("audit",),
    "registry": ("registry", "identify", "resolve", "doctor"),
    "convert": ("convert",),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sonic-registry")
def main() -> None:
    """Sign, verify and resolve model releases so parts that do not belong together never run.

    Exit codes: 0 ok, 1 a check failed, 2 usage or unreadable input.
    """


for _module, _names in _COMMAND_MODULES.items():
    _mod = importlib.import_module(f".{_module}", __name__)
    for _name in _names:
        main.add_command(getattr(_mod, _name))
