"""The generation log: hash chain, every kind of tampering, torn lines, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import wave
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sonic_registry.audit import (
    GENESIS,
    AuditLog,
    find_output,
    generation_record,
    head_path,
    read_records,
    recover,
    sign_head,
    verify_log,
)
from sonic_registry.bundle import verify_bundle
from sonic_registry.canonical import canonical_bytes
from sonic_registry.cli import main
from sonic_registry.errors import UnreadableInputError, UsageError
from sonic_registry.signing import generate_key


def fill(log: Path, n: int, **kwargs: Any) -> AuditLog:
    writer = AuditLog(log, **kwargs)
    for i in range(n):
        writer.append({"params": {"seed": i, "inference_steps": 25}, "device": "cpu"})
    return writer


def lines_of(log: Path) -> list[bytes]:
    return log.read_bytes().splitlines(keepends=True)


def write_lines(log: Path, lines: list[bytes]) -> None:
    log.write_bytes(b"".join(lines))


def first_problem(log: Path, key: Any = None) -> tuple[int, str]:
    report = verify_log(log, key)
    assert not report.ok, "tampering went unnoticed"
    return report.problems[0].line, report.problems[0].kind


# -- the chain ------------------------------------------------------------------------------


def test_append_builds_a_canonical_hash_chain(tmp_path: Path) -> None:
    log = tmp_path / "generations.jsonl"
    fill(log, 4)
    raw = lines_of(log)
    assert len(raw) == 4 and all(line.endswith(b"\n") for line in raw)
    prev = GENESIS
    for number, line in enumerate(raw, 1):
        doc = json.loads(line)
        assert doc["seq"] == number and doc["prev"] == prev
        assert canonical_bytes(doc) + b"\n" == line
        prev = hashlib.sha256(line[:-1]).hexdigest()
    report = verify_log(log)
    assert report.ok and report.records == 4
    assert [r.seq for _, r in read_records(log)] == [1, 2, 3, 4]


def test_reserved_and_unserialisable_fields_are_refused(tmp_path: Path) -> None:
    writer = AuditLog(tmp_path / "log.jsonl")
    with pytest.raises(UsageError, match="reserved"):
        writer.append({"seq": 5})
    with pytest.raises(UsageError):
        writer.append({"x": float("nan")})
    assert not (tmp_path / "log.jsonl").exists() or verify_log(tmp_path / "log.jsonl").ok


# -- every kind of tampering, named by line ------------------------------------------------


def forged(prev_line: bytes | None, seq: int) -> bytes:
    prev = hashlib.sha256(prev_line.rstrip(b"\n")).hexdigest() if prev_line else GENESIS
    return canonical_bytes({"device": "evil", "params": {}, "prev": prev, "seq": seq}) + b"\n"


def test_edited_record(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 6)
    raw = lines_of(log)
    doc = json.loads(raw[2])
    doc["params"]["inference_steps"] = 12
    raw[2] = canonical_bytes(doc) + b"\n"
    write_lines(log, raw)
    assert first_problem(log) == (3, "edited")


def test_reformatted_record_is_an_edit(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 4)
    raw = lines_of(log)
    raw[1] = json.dumps(json.loads(raw[1]), indent=1).replace("\n", " ").encode() + b"\n"
    write_lines(log, raw)
    line, kind = first_problem(log)
    assert (line, kind) == (2, "edited")
    assert "canonical" in verify_log(log).problems[0].message


@pytest.mark.parametrize("index", [0, 2])
def test_deleted_record(tmp_path: Path, index: int) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 5)
    raw = lines_of(log)
    del raw[index]
    write_lines(log, raw)
    assert first_problem(log) == (index + 1, "deleted")
    assert f"seq {index + 1}" in verify_log(log).problems[0].message


@pytest.mark.parametrize("index", [0, 3])
def test_inserted_forged_record(tmp_path: Path, index: int) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 5)
    raw = lines_of(log)
    raw.insert(index, forged(raw[index - 1] if index else None, index + 1))
    write_lines(log, raw)
    assert first_problem(log) == (index + 1, "inserted")


def test_inserted_garbage_and_replayed_lines(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 5)
    raw = lines_of(log)
    write_lines(log, [*raw[:2], b"{not json}\n", *raw[2:]])
    assert first_problem(log) == (3, "inserted")
    write_lines(log, [*raw[:3], raw[2], *raw[3:]])
    assert first_problem(log) == (4, "inserted")
    assert "duplicate of line 3" in verify_log(log).problems[0].message


def test_reordered_records(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 6)
    raw = lines_of(log)
    swapped = [*raw[:2], raw[3], raw[2], *raw[4:]]
    write_lines(log, swapped)
    report = verify_log(log)
    assert [(p.line, p.kind) for p in report.problems] == [(3, "reordered")]
    moved = [raw[0], *raw[2:], raw[1]]
    write_lines(log, moved)
    assert first_problem(log) == (2, "reordered")


def test_truncated_mid_line(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 3)
    data = log.read_bytes()
    log.write_bytes(data[:-20])
    line, kind = first_problem(log)
    assert (line, kind) == (3, "truncated")


def test_removing_whole_records_from_the_end_needs_a_signed_head(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    key = generate_key()
    fill(log, 5, signing_key=key)
    assert verify_log(log, key.public).ok
    raw = lines_of(log)
    write_lines(log, raw[:3])
    assert first_problem(log, key.public) == (4, "truncated")
    # Without the key the head is still compared (an honest crash is caught) ...
    assert first_problem(log) == (4, "truncated")
    # ... and with no head at all a shorter chain is valid, which the report says.
    head_path(log).unlink()
    report = verify_log(log)
    assert report.ok and any("removing records from the end" in n for n in report.notes)


def test_edited_last_record_is_caught_by_the_head(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    key = generate_key("ecdsa-p256")
    fill(log, 3, signing_key=key)
    raw = lines_of(log)
    doc = json.loads(raw[-1])
    doc["device"] = "cuda:0"
    raw[-1] = canonical_bytes(doc) + b"\n"
    write_lines(log, raw)
    assert first_problem(log, key.public) == (3, "edited")


def test_head_signature_and_coverage(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    key, other = generate_key(), generate_key()
    fill(log, 2)
    with pytest.raises(UnreadableInputError, match="empty"):
        (tmp_path / "empty.jsonl").write_bytes(b"")
        sign_head(tmp_path / "empty.jsonl", key)
    assert first_problem(log, key.public)[1] == "head"  # a key was given, no head
    sign_head(log, key)
    report = verify_log(log, key.public)
    assert report.ok and report.head_seq == 2 and report.head_signed_by == key.keyid
    assert first_problem(log, other.public)[1] == "head"
    AuditLog(log).append({"device": "cpu"})  # appended without the key
    assert first_problem(log, key.public) == (3, "inserted")
    unsigned = verify_log(log)
    assert unsigned.ok and any("not covered" in n for n in unsigned.notes)


tamper_ops = st.sampled_from(["edit", "delete", "insert", "duplicate", "swap"])


@settings(max_examples=40, deadline=None)
@given(op=tamper_ops, n=st.integers(2, 8), data=st.data())
def test_any_single_tampering_is_found_at_its_line(
    tmp_path_factory: pytest.TempPathFactory, op: str, n: int, data: st.DataObject
) -> None:
    log = tmp_path_factory.mktemp("prop") / "g.jsonl"
    key = generate_key()
    fill(log, n, signing_key=key)
    raw = lines_of(log)
    if op == "edit":
        k = data.draw(st.integers(0, n - 1))
        doc = json.loads(raw[k])
        if data.draw(st.booleans()):
            doc["params"]["seed"] = -1
        else:
            doc["prev"] = "f" * 64 if k else "e" * 64
        raw[k] = canonical_bytes(doc) + b"\n"
        expected = {"edited"}
    elif op == "delete":
        k = data.draw(st.integers(0, n - 1))
        del raw[k]
        expected = {"deleted", "truncated"}
    elif op == "insert":
        k = data.draw(st.integers(0, n - 1))
        raw.insert(k, forged(raw[k - 1] if k else None, k + 1))
        expected = {"inserted"}
    elif op == "duplicate":
        k = data.draw(st.integers(1, n - 1))
        raw.insert(k, raw[k - 1])
        expected = {"inserted"}
    else:
        k = data.draw(st.integers(0, n - 2))
        raw[k], raw[k + 1] = raw[k + 1], raw[k]
        expected = {"reordered"}
    write_lines(log, raw)
    line, kind = first_problem(log, key.public)
    assert line == k + 1
    assert kind in expected


# -- torn lines and explicit recovery ----------------------------------------------------


def test_torn_line_blocks_writers_until_recovered(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    writer = fill(log, 3)
    torn = b'{"device":"cpu","params":{"se'
    with open(log, "ab") as fh:  # what a crash in the middle of a write leaves
        fh.write(torn)
    with pytest.raises(UnreadableInputError, match="torn"):
        writer.append({"device": "cpu"})
    assert first_problem(log) == (4, "truncated")
    result = recover(log)
    assert result.torn_bytes == len(torn)
    assert result.moved_to is not None and Path(result.moved_to).read_bytes() == torn
    assert verify_log(log).ok
    assert writer.append({"device": "cpu"}).seq == 4
    assert verify_log(log).ok
    assert recover(log).torn_bytes == 0


def _crash_mid_write(log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b'{"device":"gpu","par')
    os._exit(9)  # no cleanup, no newline: a killed writer


def test_killed_writer_process(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 2)
    proc = multiprocessing.get_context("spawn").Process(target=_crash_mid_write, args=(str(log),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    assert first_problem(log) == (3, "truncated")
    recover(log)
    assert verify_log(log).ok and verify_log(log).records == 2


# -- several processes at once --------------------------------------------------------


def _writer(log: str, name: str, count: int, key_path: str | None) -> None:
    from sonic_registry.signing import load_private_key

    key = load_private_key(key_path) if key_path else None
    writer = AuditLog(log, signing_key=key)
    for i in range(count):
        writer.append({"writer": name, "i": i, "pad": "x" * (i * 37 % 3000)})


@pytest.mark.slow  # several writer processes
def test_concurrent_writer_processes(tmp_path: Path, make_key) -> None:
    log = tmp_path / "g.jsonl"
    keys = make_key("audit")
    ctx = multiprocessing.get_context("spawn")
    # Two of the four writers also re-sign the head: it must end up covering
    # the real last record, whoever wrote it.
    procs = [
        ctx.Process(
            target=_writer, args=(str(log), f"w{n}", 40, str(keys.key_path) if n % 2 else None)
        )
        for n in range(4)
    ]
    for p in procs:
        p.start()
    # A verifier running meanwhile reads under the writers' lock: it never sees
    # a half-written line or a head ahead of the file.
    while any(p.is_alive() for p in procs):
        if log.exists():
            during = verify_log(log)
            assert during.ok, [str(p) for p in during.problems]
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    report = verify_log(log)
    assert report.ok, [str(p) for p in report.problems]
    assert report.records == 160
    seen = [(r.fields["writer"], r.fields["i"]) for _, r in read_records(log)]
    assert sorted(seen) == sorted((f"w{n}", i) for n in range(4) for i in range(40))
    assert log.read_bytes().endswith(b"\n")


# -- records of real generations ----------------------------------------------------------


def make_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * int(16000 * seconds))
    return path


@pytest.fixture
def logged(tmp_path: Path, make_bundle, official_key) -> dict[str, Any]:
    root = make_bundle()
    verified = verify_bundle(root, public_keys=[official_key.private.public])
    audio = make_wav(tmp_path / "speech.wav", 2.5)
    video = tmp_path / "out.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    fields = generation_record(
        verified,
        {"inference_steps": 25, "dynamic_scale": 1.1},
        audio=audio,
        duration=2.5,
        output=video,
        device="cpu",
        warnings=["dynamic_scale=1.25 is above the recommended 1.0..1.2"],
        runtime={"reference_runtime": "1.3.0"},
    )
    log = tmp_path / "generations.jsonl"
    record = AuditLog(log).append(fields)
    return {"log": log, "video": video, "verified": verified, "record": record, "audio": audio}


def test_generation_record_fields(logged: dict[str, Any]) -> None:
    f = logged["record"].fields
    verified = logged["verified"]
    assert f["release"]["id"] == "sonic@1.3.0#1"
    assert f["release"]["manifest_sha256"] == verified.manifest_digest
    assert f["components"]["unet"]["paths"] == {
        "unet.safetensors": verified.files["unet.safetensors"].sha256
    }
    video = logged["video"].read_bytes()
    assert f["output"]["sha256"] == hashlib.sha256(video).hexdigest()
    assert f["output"]["md5"] == hashlib.md5(video).hexdigest()
    assert f["audio"]["sha256"] == hashlib.sha256(logged["audio"].read_bytes()).hexdigest()
    assert f["audio"]["duration"] == pytest.approx(2.5)
    assert f["duration"] == 2.5
    assert f["runtime"]["reference_runtime"] == "1.3.0"
    assert "torch" in f["runtime"] and "python" in f["runtime"]
    assert f["warnings"] and f["device"] == "cpu" and f["time"].endswith("Z")


def test_generation_record_names_the_release_of_each_borrowed_role(
    make_bundle, official_key
) -> None:
    """A forced mix: the unet comes from 1.2.0, the rest from 1.3.0; the record says so."""
    keys = [official_key.private.public]
    main_release = verify_bundle(make_bundle("v13"), public_keys=keys)
    donor = verify_bundle(make_bundle("v12", version="1.2.0", step=50000), public_keys=keys)
    fields = generation_record(main_release, {}, sources={"unet": donor})
    unet, encoder = fields["components"]["unet"], fields["components"]["audio_encoder"]
    assert unet["release"] == "sonic@1.2.0#1"
    assert unet["manifest_sha256"] == donor.manifest_digest
    assert unet["training_step"] == 50000
    assert unet["paths"] == {"unet.safetensors": donor.files["unet.safetensors"].sha256}
    assert "release" not in encoder and encoder["training_step"] == 80000
    assert fields["release"]["id"] == "sonic@1.3.0#1"


def test_find_output_by_digest(logged: dict[str, Any], tmp_path: Path) -> None:
    (found,) = find_output(logged["log"], logged["video"])
    assert found[0] == 1 and found[1].fields["params"]["inference_steps"] == 25
    other = tmp_path / "other.mp4"
    other.write_bytes(b"different")
    assert find_output(logged["log"], other) == []


# -- the commands ------------------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_cli_verify(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 4)
    ok = run("audit", "verify", str(log))
    assert ok.exit_code == 0 and "ok, 4 record(s)" in ok.stdout
    raw = lines_of(log)
    del raw[1]
    write_lines(log, raw)
    bad = run("audit", "verify", str(log))
    assert bad.exit_code == 1
    assert bad.stdout.startswith(f"{log}: line 2: record seq 2 missing")
    doc = json.loads(run("audit", "verify", str(log), "--json").stdout)
    assert doc["problems"][0] == {
        "line": 2,
        "kind": "deleted",
        "message": "record seq 2 missing before this line (deleted)",
    }
    missing = run("audit", "verify", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2 and "no such log file" in missing.stderr


def test_cli_sign_verify_with_key_and_recover(tmp_path: Path, make_key) -> None:
    log = tmp_path / "g.jsonl"
    keys = make_key("audit")
    fill(log, 2)
    signed = run("audit", "sign", str(log), "--key", str(keys.key_path))
    assert signed.exit_code == 0, signed.output
    ok = run("audit", "verify", str(log), "--public-key", str(keys.pub_path))
    assert ok.exit_code == 0 and "head seq 2 signed by" in ok.stdout
    with open(log, "ab") as fh:
        fh.write(b'{"torn')
    assert run("audit", "verify", str(log)).exit_code == 1
    rec = run("audit", "recover", str(log))
    assert rec.exit_code == 0 and "moved 6 torn byte(s)" in rec.stdout
    assert run("audit", "verify", str(log), "--public-key", str(keys.pub_path)).exit_code == 0


def test_cli_show_and_find(logged: dict[str, Any]) -> None:
    shown = run("audit", "show", str(logged["log"]))
    assert shown.exit_code == 0
    assert "sonic@1.3.0#1" in shown.stdout and "inference_steps=25" in shown.stdout
    as_json = json.loads(run("audit", "show", str(logged["log"]), "--json").stdout)
    assert as_json["records"][0]["seq"] == 1
    found = run("audit", "find", str(logged["video"]), "--log", str(logged["log"]))
    assert found.exit_code == 0, found.output
    assert "release: sonic@1.3.0#1 (official)" in found.stdout
    assert "unet: unet.safetensors sha256" in found.stdout
    assert "params: dynamic_scale=1.1 inference_steps=25" in found.stdout
    logged["video"].write_bytes(b"re-encoded")
    nothing = run("audit", "find", str(logged["video"]), "--log", str(logged["log"]))
    assert nothing.exit_code == 1 and "no record" in nothing.stdout


junk_line = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    st.builds(
        lambda seq, prev, extra: canonical_bytes({"seq": seq, "prev": prev, "x": extra}),
        st.one_of(st.integers(-3, 10), st.booleans(), st.text(max_size=3)),
        st.one_of(st.just(GENESIS), st.text(alphabet="0123456789abcdef", max_size=64)),
        st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5)),
    ),
)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(junk_line, max_size=8), torn=st.booleans())
def test_verify_never_crashes_on_hostile_logs(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], torn: bool
) -> None:
    log = tmp_path_factory.mktemp("fuzz") / "g.jsonl"
    data = b"\n".join(lines) + (b"" if torn or not lines else b"\n")
    log.write_bytes(data)
    report = verify_log(log)
    assert report.records == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    for problem in report.problems:
        assert 0 <= problem.line <= report.records + 1 and "\n" not in problem.message


def test_cli_through_the_real_executable(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("sonic-registry")
    log = tmp_path / "g.jsonl"
    fill(log, 3)
    ok = subprocess.run([exe, "audit", "verify", str(log)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok, 3 record(s)" in ok.stdout
    raw = lines_of(log)
    write_lines(log, [raw[0], raw[2], raw[1]])
    bad = subprocess.run([exe, "audit", "verify", str(log)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[0].startswith(f"{log}: line 2: lines 2 and 3 are swapped")
    assert "Traceback" not in bad.stderr


def test_cli_show_and_find_with_odd_warnings(tmp_path: Path) -> None:
    video = tmp_path / "out.mp4"
    video.write_bytes(b"video")
    log = tmp_path / "g.jsonl"
    digest = hashlib.sha256(b"video").hexdigest()
    AuditLog(log).append({"output": {"sha256": digest}, "warnings": 5, "device": "cpu"})
    assert verify_log(log).ok
    shown = run("audit", "show", str(log))
    assert shown.exit_code == 0, shown.output
    found = run("audit", "find", str(video), "--log", str(log))
    assert found.exit_code == 0, found.output
    assert "warning:" not in found.stdout


def test_oversized_head_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    log = tmp_path / "g.jsonl"
    fill(log, 1)
    head_path(log).write_bytes(b" " * (2 * 1024 * 1024))
    out = run("audit", "verify", str(log))
    assert out.exit_code == 2 and "larger than 1048576 bytes" in out.stderr
    head_path(log).unlink()
    head_path(log).mkdir()
    out = run("audit", "verify", str(log))
    assert out.exit_code == 2 and "is a directory, expected a signed log head" in out.stderr


def test_find_reads_the_log_once(logged: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import sonic_registry.audit.verify as audit_verify
    from sonic_registry.audit import find_output_verified

    opened: list[Path] = []
    real = audit_verify.read_lines

    def counting(path: Path) -> Any:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(audit_verify, "read_lines", counting)
    found, report = find_output_verified(logged["log"], logged["video"])
    assert report.ok and [n for n, _ in found] == [1] and len(opened) == 1
    assert found == find_output(logged["log"], logged["video"])
    opened.clear()
    out = run("audit", "find", str(logged["video"]), "--log", str(logged["log"]))
    assert out.exit_code == 0, out.output
    assert len(opened) == 1
