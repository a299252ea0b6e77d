"""`sonic-registry convert`: pickle -> safetensors through weights_only, source digest recorded."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sonic_registry.cli import main
from sonic_registry.convert import convert_checkpoint
from sonic_registry.digest import hash_file
from sonic_registry.errors import UsageError
from sonic_registry.loader import load_file_verified


class _Payload:
    """A pickle that runs a command when loaded the unsafe way."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(*args: str) -> tuple[int, str]:
    """``convert`` with the source pinned by --source-sha256 (as its publisher would give it)."""
    src = Path(args[0])
    pin = ["--source-sha256", _sha(src)] if src.is_file() else []
    result = CliRunner().invoke(main, ["convert", *args, *pin])
    return result.exit_code, result.output


def test_zip_checkpoint_converts_and_records_source(tmp_path: Path) -> None:
    src = tmp_path / "audio2token.pth"
    tensors = {
        "proj.weight": torch.randn(4, 3),
        "steps": torch.arange(5),
        "h": torch.ones(2).half(),
    }
    torch.save(tensors, src)
    out = tmp_path / "audio2token.safetensors"
    code, text = _run(str(src), str(out))
    assert code == 0, text
    assert hashlib.sha256(src.read_bytes()).hexdigest() in text
    got = load_file(str(out))
    assert set(got) == set(tensors)
    assert all(torch.equal(got[k], v) for k, v in tensors.items())
    with safe_open(str(out), "pt") as fh:
        meta = fh.metadata()
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["source_name"] == "audio2token.pth"
    assert meta["source_size"] == str(src.stat().st_size)
    # The output is an ordinary safetensors file the verified loader reads.
    assert torch.equal(load_file_verified(out, hash_file(out))["steps"], torch.arange(5))


def test_output_is_byte_identical_for_the_same_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "mixed.pth"
    tensors = {
        "b16": torch.randn(3, 2).bfloat16(),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "flags": torch.tensor([True, False]),
        "bytes": torch.arange(7, dtype=torch.uint8),
        "empty": torch.zeros(0, 3),
        "f32": torch.randn(5),
    }
    torch.save(tensors, src)
    convert_checkpoint(src, tmp_path / "one.safetensors", source_sha256=_sha(src))
    convert_checkpoint(src, tmp_path / "two.safetensors", source_sha256=_sha(src))
    one = (tmp_path / "one.safetensors").read_bytes()
    assert one == (tmp_path / "two.safetensors").read_bytes()
    got = load_file(str(tmp_path / "one.safetensors"))
    for name, tensor in tensors.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


def test_legacy_pickle_and_json_output(tmp_path: Path) -> None:
    src = tmp_path / "old.pt"
    torch.save({"w": torch.eye(3)}, src, _use_new_zipfile_serialization=False)
    code, text = _run(str(src), str(tmp_path / "old.safetensors"), "--json")
    assert code == 0, text
    doc = json.loads(text)
    assert doc["ok"] is True and doc["tensors"] == 1
    assert doc["source_sha256"] == hash_file(src).sha256


def test_code_in_a_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    src = tmp_path / "evil.pth"
    src.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    out = tmp_path / "evil.safetensors"
    code, text = _run(str(src), str(out))
    assert code == 2
    assert "refused to unpickle" in text and text.count("\n") == 1
    assert not marker.exists() and not out.exists()
    # The same inside a zip-format checkpoint.
    zsrc = tmp_path / "evil-zip.pth"
    torch.save({"w": _Payload(marker)}, zsrc)
    with pytest.raises(UsageError, match="refused to unpickle"):
        convert_checkpoint(zsrc, out, source_sha256=_sha(zsrc))
    assert not marker.exists()


def test_only_tensors_and_key_selects_a_sub_dict(tmp_path: Path) -> None:
    src = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"a": torch.ones(2), "b": torch.zeros(3)}, "epoch": 3}, src)
    out = tmp_path / "ckpt.safetensors"
    code, text = _run(str(src), str(out))
    assert code == 2
    assert "expected only tensors" in text and "--key state_dict" in text
    code, text = _run(str(src), str(out), "--key", "state_dict")
    assert code == 0, text
    assert set(load_file(str(out))) == {"a", "b"}
    code, text = _run(str(src), str(tmp_path / "x.safetensors"), "--key", "nope")
    assert code == 2 and "no such entry" in text


def test_tied_weights_are_written_once_each(tmp_path: Path) -> None:
    shared = torch.randn(4, 4)
    src = tmp_path / "tied.pth"
    torch.save({"embed": shared, "lm_head": shared, "view": shared[1]}, src)
    out = tmp_path / "tied.safetensors"
    convert_checkpoint(src, out, source_sha256=_sha(src))
    got = load_file(str(out))
    assert torch.equal(got["embed"], shared) and torch.equal(got["lm_head"], shared)
    assert torch.equal(got["view"], shared[1])


def test_refusals_for_wrong_input_and_existing_output(tmp_path: Path) -> None:
    st_file = tmp_path / "already.safetensors"
    save_file({"a": torch.ones(1)}, str(st_file))
    code, text = _run(str(st_file), str(tmp_path / "o.safetensors"))
    assert code == 2 and "found safetensors" in text
    code, text = _run(str(tmp_path / "missing.pth"), str(tmp_path / "o.safetensors"))
    assert code == 2 and "no such file" in text
    src = tmp_path / "a.pth"
    torch.save({"a": torch.ones(1)}, src)
    code, text = _run(str(src), str(st_file))
    assert code == 2 and "--force" in text
    code, text = _run(str(src), str(st_file), "--force")
    assert code == 0, text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_missing_torch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.pth"
    torch.save({"a": torch.ones(1)}, src)
    monkeypatch.setitem(sys.modules, "torch", None)
    code, text = _run(str(src), str(tmp_path / "a.safetensors"))
    assert code == 2
    assert text.strip() == "error: convert: needs torch: pip install 'sonic-registry[runtime]'"
