"""Validated parameter ranges: ok, warning (names the risk) or error, and duration vs audio.

Each release signs the ranges its model was validated on (``Release.params``,
see ``docs/formats.md``). A value is

* **ok** inside ``recommended``;
* a **warning** inside ``allowed`` but outside ``recommended``, naming the risk
  (the range's ``below`` or ``above`` text): the run is possible, the result is
  worse in a known way;
* an **error** outside ``allowed``: the release does not vouch for it.

``duration`` is special: Sonic cuts or pads the video to it, so it must equal the
length of the audio, measured from the file (:mod:`sonic_registry.audio`),
within the release's ``duration_tolerance`` (default 0.04 s, one frame at 25 fps).

Malformed input is not a verdict but a usage error (exit 2): unknown names
(with the closest known one suggested), wrong types, NaN/inf, non-positive
durations, unreadable audio.

    >>> from sonic_registry.manifest import ParamRange
    >>> steps = ParamRange("inference_steps", "int", (20, 30), (15, 100),
    ...                    below="below 20 steps the video gets blurry")
    >>> classify(steps, 17).message
    'inference_steps=17 is below the recommended 20..30: below 20 steps the video gets blurry'
    >>> classify(steps, 12).status
    'error'
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from .catalog import load_catalog
from .errors import ParameterRangeError, UsageError, raise_all
from .manifest import ParamRange, Release

if TYPE_CHECKING:
    from .audio import AudioInfo
    from .workflows.graph import Graph

__all__ = [
    "DURATION",
    "SONIC_PARAMS",
    "ParamCheck",
    "ParameterRangeError",
    "Report",
    "Status",
    "check_graph_params",
    "check_params",
    "classify",
    "coerce_value",
    "fps_range",
    "parse_assignment",
]

Status = Literal["ok", "warning", "error"]
#: The parameter compared against the measured audio length instead of a range.
DURATION = "duration"

#: Sonic's validated ranges, in the shape of ``release.toml``'s ``[params]`` table.
#: ``sonic-registry init`` writes these into new manifests; bounds are inclusive.
#: Their one home is the built-in catalog of the published release
#: (:mod:`sonic_registry.catalog`), which ``check-params`` also uses with no signed release.
SONIC_PARAMS: dict[str, dict[str, Any]] = {
    name: dict(spec) for name, spec in load_catalog().releases[0].params.items()
}

#: Digits an integer parameter may have: int() of thousands of digits is refused
#: by Python itself (and costs quadratic time), and no Sonic parameter needs more.
MAX_INT_DIGITS = 30
_INT_TEXT = re.compile(rf"[+-]?[0-9]{{1,{MAX_INT_DIGITS}}}")
_LONG_INT_TEXT = re.compile(rf"[+-]?[0-9]{{{MAX_INT_DIGITS + 1},}}")
_UNVALIDATED = "outside the validated range"


@dataclass(frozen=True, slots=True)
class ParamCheck:
    """The verdict on one parameter."""

    name: str
    value: float | int
    status: Status
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "status": self.status,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """Every parameter's verdict, in the order they were given (duration last)."""

    release_id: str
    items: tuple[ParamCheck, ...]
    audio: AudioInfo | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is outside the allowed ranges (warnings are fine)."""
        return not self.errors

    @property
    def warnings(self) -> tuple[ParamCheck, ...]:
        return tuple(i for i in self.items if i.status == "warning")

    @property
    def errors(self) -> tuple[ParamCheck, ...]:
        return tuple(i for i in self.items if i.status == "error")

    def raise_for_errors(self) -> None:
        """Raise :class:`ParameterRangeError` naming every error, if there is one."""
        if self.errors:
            raise ParameterRangeError(self.release_id, "; ".join(e.message for e in self.errors))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "release": self.release_id,
            "items": [i.to_dict() for i in self.items],
            "warnings": len(self.warnings),
            "errors": len(self.errors),
            "audio": self.audio.to_dict() if self.audio else None,
        }


# -- one value ------------------------------------------------------------------


def _fmt(value: float) -> str:
    """Numbers as Python's shortest round-trip form: 20, 1.0, 1.25."""
    return str(value)


def _span(bounds: tuple[float, float], type_: str) -> str:
    # Canonical JSON writes 1.0 as 1, so a float range read back from a signed
    # manifest holds ints; show it the way the maintainer wrote it.
    lo, hi = (float(b) for b in bounds) if type_ == "float" else bounds
    return f"{_fmt(lo)}..{_fmt(hi)}"


def classify(spec: ParamRange, value: float) -> ParamCheck:
    """Classify an already type-checked value against its range (bounds inclusive)."""
    shown = f"{spec.name}={_fmt(value)}"
    # Step 1: outside allowed is an error: the release does not vouch for the value.
    # Step 2: allowed but outside recommended is a warning that names the risk.
    checks: tuple[tuple[Status, str, tuple[float, float] | None], ...] = (
        ("error", "allowed", spec.allowed),
        ("warning", "recommended", spec.recommended),
    )
    for status, kind, bounds in checks:
        if bounds is None:
            continue
        if value < bounds[0]:
            risk = spec.below or _UNVALIDATED
            side = "below"
        elif value > bounds[1]:
            risk = spec.above or _UNVALIDATED
            side = "above"
        else:
            continue
        message = f"{shown} is {side} the {kind} {_span(bounds, spec.type)}: {risk}"
        return ParamCheck(spec.name, value, status, message)
    rec = spec.recommended
    where = f"inside the recommended {_span(rec, spec.type)}" if rec else "accepted"
    return ParamCheck(spec.name, value, "ok", f"{shown} is {where}")


def coerce_value(name: str, type_: str, raw: object) -> float | int:
    """Turn ``raw`` (a number, or text from ``--set``) into a value of ``type_``.

    Wrong types, NaN and infinities are usage errors: they are not a value the
    range can judge.

    >>> coerce_value("inference_steps", "int", "25")
    25
    >>> coerce_value("inference_steps", "int", "2.5")
    Traceback (most recent call last):
    ...
    sonic_registry.errors.UsageError: inference_steps: expected an integer, found '2.5'
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise UsageError(name, f"expected a number, found {type(raw).__name__} {raw!r}")
    if type_ == "int":
        if isinstance(raw, str):
            if _LONG_INT_TEXT.fullmatch(raw.strip()):
                raise UsageError(
                    name,
                    f"expected an integer of at most {MAX_INT_DIGITS} digits, "
                    f"found one of {len(raw.strip().lstrip('+-'))} digits",
                )
            if not _INT_TEXT.fullmatch(raw.strip()):
                raise UsageError(name, f"expected an integer, found {raw!r}")
            return int(raw)
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise UsageError(name, f"expected a finite integer, found {raw!r}")
            if not raw.is_integer():
                raise UsageError(name, f"expected an integer, found {raw!r}")
            return int(raw)
        return raw
    if isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(name, f"expected a number, found {raw!r}") from None
    else:
        value = float(raw)
    if not math.isfinite(value):
        raise UsageError(name, f"expected a finite number, found {raw!r}")
    return value


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``name=value`` from ``--set``.

    >>> parse_assignment("dynamic_scale=1.1")
    ('dynamic_scale', '1.1')
    """
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise UsageError("--set", f"expected name=value, found {text!r}")
    return name, value


def _unknown(name: str, known: list[str]) -> UsageError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(sorted(known)) or "none"
    return UsageError(name, f"unknown parameter (known: {listed}){hint}")


# -- duration -------------------------------------------------------------------


def _check_duration(release: Release, requested: float, info: AudioInfo) -> ParamCheck:
    tolerance = release.duration_tolerance
    measured = info.duration
    use = f"{measured:.3f}"
    if abs(requested - measured) <= tolerance + 1e-9:
        return ParamCheck(
            DURATION,
            requested,
            "ok",
            f"duration={_fmt(requested)} matches the audio length {use} s of {info.path} "
            f"(tolerance {_fmt(tolerance)} s)",
        )
    return ParamCheck(
        DURATION,
        requested,
        "error",
        f"duration={_fmt(requested)} does not match the audio length {use} s measured from "
        f"{info.path} (tolerance {_fmt(tolerance)} s); use duration={use}",
    )


# -- the whole set ------------------------------------------------------------


def check_params(
    release: Release,
    params: Mapping[str, object],
    *,
    audio: str | Path | AudioInfo | None = None,
    duration: float | str | None = None,
    audio_hint: str = "audio=",
) -> Report:
    """Check ``params`` against ``release``'s signed ranges (and duration vs audio).

    ``params`` values may be numbers or the text of ``--set``; ``duration`` may
    be given either as a keyword or as ``params["duration"]``. With ``audio``
    but no duration, the measured length is reported (status ok) so the caller
    learns the value to use. A duration without audio cannot be checked and is
    a usage error whose hint names ``audio_hint``, how the caller passes the
    audio (the CLI says ``--audio FILE``, not this function's keyword). Raises
    :class:`UsageError` for malformed input; range verdicts are in the returned
    :class:`Report`.
    """
    from .audio import AudioInfo, measure_audio

    known = [*release.params, DURATION]
    items: list[ParamCheck] = []
    problems: list[UsageError] = []
    requested: float | None = None
    # Step 1: every name is known and every value has the declared type.
    for name, raw in params.items():
        try:
            if name == DURATION and DURATION not in release.params:
                requested = _duration_value(raw, requested)
                continue
            spec = release.params.get(name)
            if spec is None:
                raise _unknown(name, known)
            items.append(classify(spec, coerce_value(name, spec.type, raw)))
        except UsageError as exc:
            problems.append(exc)
    if duration is not None:
        try:
            requested = _duration_value(duration, requested)
        except UsageError as exc:
            problems.append(exc)
    # Step 2: the audio is measured before any verdict, so an unreadable file is
    # reported together with the other input problems.
    info: AudioInfo | None = None
    if isinstance(audio, AudioInfo):
        info = audio
    elif audio is not None:
        try:
            info = measure_audio(audio)
        except UsageError as exc:
            problems.append(exc)
    elif requested is not None:
        problems.append(
            UsageError(
                DURATION, f"cannot check a duration without the audio file (give {audio_hint})"
            )
        )
    raise_all(problems)
    # Step 3: the duration must match the measured audio length.
    if info is not None and requested is not None:
        items.append(_check_duration(release, requested, info))
    elif info is not None:
        items.append(
            ParamCheck(
                DURATION,
                info.duration,
                "ok",
                f"audio {info.path} is {info.duration:.3f} s long; "
                f"use duration={info.duration:.3f}",
            )
        )
    return Report(release.release_id, tuple(items), info)


def check_graph_params(release: Release, graph: Graph, *, audio: AudioInfo | None = None) -> Report:
    """The one judgement of a workflow's parameters: ``resolve``, the workflows hook,
    ``check-params --workflow`` and the ComfyUI pack's guard all call this, so they
    cannot disagree.

    Only parameters the release signs ranges for are judged; the others (seed, ...)
    are data the resolver reports. ``fps`` follows the graph's frame interpolation
    (:func:`fps_range`). With the measured ``audio`` (the guard has it), the graph's
    duration is checked against it too. Raises :class:`UsageError` (or an
    ``ExceptionGroup`` of them) for a value of the wrong type.
    """
    ranges = dict(release.params)
    value = graph.params.get("fps")
    fps = fps_range(release, graph.interframe, value if isinstance(value, int | float) else None)
    if fps is not None:
        ranges[fps.name] = fps
    judged = replace(release, params=MappingProxyType(ranges))
    ranged = {k: v for k, v in graph.params.items() if k in ranges}
    duration = graph.params.get(DURATION) if audio is not None else None
    return check_params(judged, ranged, audio=audio, duration=duration)


def fps_range(
    release: Release, interframe: bool | None, value: float | None = None
) -> ParamRange | None:
    """The ``fps`` range that applies, given ComfyUI_Sonic's ``use_interframe``.

    Sonic generates 12.5 frames per second; RIFE interpolation doubles that to 25
    (``fps=config.fps*2 if use_interframe``). The release's data says both rates
    (``fps_with_interpolation``, ``fps_without_interpolation``; the built-in
    catalog's when the release has none), and the signed range, centred on the
    first, is scaled to the second when interpolation is off. ``value``, the fps
    to judge, keeps an int range an int range for whole numbers (``fps=25``) and
    makes it a float range for others (12.5 is a verdict, not a type error: the
    widget is a FLOAT). None: no fps range.
    """
    spec = release.params.get("fps")
    if spec is None:
        return None
    rates = _fps_rates(release)
    if rates is None:
        return spec
    with_rate, without_rate = rates
    expected = with_rate if interframe is not False else without_rate
    shown = _fmt(int(expected) if expected.is_integer() else expected)
    scale = expected / with_rate
    mode = "on" if interframe is not False else "off"
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    whole = whole or value is None

    def scaled(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is None or scale == 1:
            return bounds
        return (bounds[0] * scale, bounds[1] * scale)

    risk = (
        f"with frame interpolation {mode} (use_interframe) Sonic's video runs at "
        f"{shown} fps and any other rate drifts lip sync; use fps={shown}"
    )
    return ParamRange(
        "fps",
        spec.type if scale == 1 and whole else "float",
        scaled(spec.recommended),
        scaled(spec.allowed),
        below=risk,
        above=risk,
    )


def _fps_rates(release: Release) -> tuple[float, float] | None:
    """(with, without) interpolation, from the release's data or the catalog's."""
    for data in (
        release.data,
        *(r.data for r in load_catalog().releases if r.model == release.model),
    ):
        with_rate = data.get("fps_with_interpolation")
        without_rate = data.get("fps_without_interpolation")
        if not (isinstance(with_rate, int | float) and isinstance(without_rate, int | float)):
            continue
        if with_rate > 0 and without_rate > 0:
            return float(with_rate), float(without_rate)
    return None


def _duration_value(raw: object, already: float | None) -> float:
    value = coerce_value(DURATION, "float", raw)
    if value <= 0:
        raise UsageError(DURATION, f"expected a positive number of seconds, found {raw!r}")
    if already is not None and already != value:
        raise UsageError(DURATION, f"given twice with different values: {already} and {value}")
    return float(value)
