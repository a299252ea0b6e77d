"""sonic-registry inside ComfyUI: guard Sonic prompts, badge loaders, check models, log runs.

The logic lives in small ComfyUI-free modules (testable without ComfyUI):
:mod:`.config` (the TOML policy), :mod:`.context` (releases and digest cache),
:mod:`.guard` (the verdict on a queued prompt), :mod:`.messages` (English and
Chinese text), :mod:`.check` (the one-click check and badge statuses),
:mod:`.records` (generation log records) and :mod:`.install` (writing the pack
into ``custom_nodes``). :mod:`.glue` is the thin layer that touches ComfyUI;
``web/sonic_registry.js`` is the browser side.
"""
