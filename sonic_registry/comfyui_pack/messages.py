"""What the guard says, in English and Chinese, and which of the two ComfyUI shows.

Every finding carries both texts: the browser picks one by its own locale
setting, and the server picks one for ``node_errors`` by the same setting read
from ComfyUI's user settings file (``Comfy.Locale``), unless the pack's config
fixes ``locale``. File names, digests and the resolver's details stay as they
are in both languages: they are what a user searches for.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

__all__ = ["Text", "comfy_locale", "pick", "text"]

#: (English, Chinese)
Text = tuple[str, str]

_UNOFFICIAL = (
    "⚠️ non-official checkpoint detected: {file} (sha256 {digest}) {what}: "
    "compatibility risk; use a verified release",
    "⚠️ 检测到非官方模型文件：{file}（sha256 {digest}）{what_zh}："
    "存在兼容性风险，请使用经过验证的发布版本",
)
_TEMPLATES: dict[str, Text] = {
    "unknown": (
        _UNOFFICIAL[0].replace("{what}", "is unknown to the registry and the catalog"),
        _UNOFFICIAL[1].replace("{what_zh}", "不在注册表和内置目录中"),
    ),
    "community": (
        _UNOFFICIAL[0].replace("{what}", "is {release} {role}, a community release"),
        _UNOFFICIAL[1].replace("{what_zh}", "来自社区发布 {release} {role}"),
    ),
    "published": (
        "{file} is {release} {role}: the file the authors published (unsigned)",
        "{file} 是 {release} {role}：作者公开发布的文件（无签名）",
    ),
    "tampered": (
        "{file} has the name and size of {release} {role} but other bytes (sha256 {digest}): "
        "tampered or corrupted; download it again",
        "{file} 与 {release} {role} 同名同大小，但内容不同（sha256 {digest}）："
        "文件被篡改或已损坏，请重新下载",
    ),
    "other_model": (
        "{file} is {role} of {release}, not a release of {models}: wrong model",
        "{file} 是 {release} 的 {role}，不属于 {models} 的发布版本：模型错误",
    ),
    "mixed": ("mixed releases: {detail}", "混用了不同发布版本的模型文件：{detail}"),
    "interface": ("{detail}", "节点接口不匹配：{detail}"),
    "missing": ("{detail}", "缺少模型文件：{detail}"),
    "unsafe": ("{detail}", "不安全的路径：{detail}"),
    "params": ("{detail}", "参数超出推荐范围：{detail}"),
    "params_outside_allowed": ("{detail}", "参数超出允许范围：{detail}"),
    "duration": ("{detail}", "时长与音频长度不符：{detail}"),
    "guard_error": (
        "sonic-registry could not check this prompt, so it was not run: {detail}",
        "sonic-registry 无法检查此任务，因此未运行：{detail}",
    ),
    "refused_title": (
        "Sonic release check refused this prompt",
        "Sonic 发布版本检查拒绝了此任务",
    ),
}


def text(kind: str, **fields: str) -> Text:
    """The English and Chinese line for a finding of ``kind``."""
    en, zh = _TEMPLATES[kind]
    return en.format(**fields), zh.format(**fields)


def pick(message: Text, locale: str) -> str:
    return message[1] if locale.startswith("zh") else message[0]


def comfy_locale(user_dir: str | Path | None, configured: str = "auto") -> str:
    """``en`` or ``zh``: the pack's config, else ComfyUI's ``Comfy.Locale`` setting."""
    if configured != "auto":
        return configured
    if user_dir is None:
        return "en"
    settings = Path(user_dir) / "default" / "comfy.settings.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(settings.read_text("utf-8"))
        value = data.get("Comfy.Locale") if isinstance(data, dict) else None
        if isinstance(value, str) and value.lower().startswith("zh"):
            return "zh"
    return "en"
