// sonic-registry in the ComfyUI editor: badges on Sonic loaders, warning toasts,
// and the one-click check (menu Extensions > Sonic, or the "Sonic: check models" node).
// The server decides everything; this file only shows what it says.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const COLORS = {
  official: "#15803d", published: "#0f766e", community: "#b45309", unknown: "#b91c1c",
  tampered: "#7f1d1d", mixed: "#7f1d1d", other_model: "#7f1d1d", missing: "#7f1d1d",
  unchecked: "#4b5563",
};
const LABELS = {
  en: {
    official: "✔ official", published: "✔ published", community: "⚠ community",
    unknown: "⚠ non-official", tampered: "✖ tampered", mixed: "✖ mixed", other_model: "✖ other model",
    missing: "✖ missing", unchecked: "? unchecked", title: "Sonic release check",
    checking: "Checking the models folder…", file: "file", release: "release", role: "role",
    status: "status", action: "what to do", close: "Close", check: "Sonic: check models",
  },
  zh: {
    official: "✔ 官方", published: "✔ 已发布", community: "⚠ 社区", unknown: "⚠ 非官方",
    tampered: "✖ 已篡改", mixed: "✖ 混用", other_model: "✖ 其他模型", missing: "✖ 缺失",
    unchecked: "? 未检查", title: "Sonic 发布版本检查", checking: "正在检查模型文件夹…",
    file: "文件", release: "发布版本", role: "角色", status: "状态", action: "建议操作",
    close: "关闭", check: "Sonic：检查模型",
  },
};
const RANK = ["tampered", "mixed", "other_model", "missing", "unknown", "community",
  "published", "official", "unchecked"];
// Which files each loader node loads, relative to models/ (as the server names them).
const LOADERS = {
  SONICTLoader: (n) => ["sonic/" + widget(n, "sonic_unet")],
  SONIC_PreData: () => ["sonic/audio2token.pth", "sonic/audio2bucket.pth"],
  ImageOnlyCheckpointLoader: (n) => ["checkpoints/" + widget(n, "ckpt_name")],
};

let fileStatus = {};
const nodeStatus = {};

function locale() {
  let value = "en";
  try {
    value = app.extensionManager?.setting?.get?.("Comfy.Locale") || navigator.language || "en";
  } catch (e) { /* the settings store is not ready yet */ }
  return String(value).toLowerCase().startsWith("zh") ? "zh" : "en";
}
const t = (key) => LABELS[locale()][key] ?? LABELS.en[key] ?? key;
const widget = (node, name) => node.widgets?.find((w) => w.name === name)?.value ?? "";

function statusOf(node) {
  if (nodeStatus[node.id]) return nodeStatus[node.id];
  const files = LOADERS[node.comfyClass]?.(node) ?? [];
  const found = files.map((f) => fileStatus[f]?.status).filter(Boolean);
  if (!found.length) return null;
  return found.sort((a, b) => RANK.indexOf(a) - RANK.indexOf(b))[0];
}

// A badge in the shape LGraphNode.drawBadges() expects (height, getWidth, draw).
function badge(node) {
  const status = statusOf(node);
  const text = status ? t(status) : "";
  return {
    text, // also read by the end-to-end browser check
    height: 20,
    getWidth(ctx) {
      if (!text) return 0;
      ctx.save(); ctx.font = "12px sans-serif";
      const w = ctx.measureText(text).width + 12; ctx.restore(); return w;
    },
    draw(ctx, x, y) {
      if (!text) return;
      const w = this.getWidth(ctx);
      ctx.save();
      ctx.fillStyle = COLORS[status] ?? "#4b5563";
      ctx.beginPath(); ctx.roundRect(x, y, w, this.height, 5); ctx.fill();
      ctx.fillStyle = "#ffffff"; ctx.font = "12px sans-serif"; ctx.textBaseline = "middle";
      ctx.fillText(text, x + 6, y + this.height / 2);
      ctx.restore();
    },
  };
}

async function refreshFiles() {
  try {
    const res = await api.fetchApi("/sonic_registry/files");
    if (res.ok) fileStatus = (await res.json()).files ?? {};
  } catch (e) { console.warn("sonic-registry: cannot read file statuses", e); }
  app.graph?.setDirtyCanvas(true, true);
}

function toast(severity, summary, detail, life = 20000) {
  const toasts = app.extensionManager?.toast;
  if (toasts?.add) toasts.add({ severity, summary, detail, life });
  else console.warn(`${summary}: ${detail}`);
}

function showDialog(html) {
  document.getElementById("sonic-registry-dialog")?.remove();
  const box = document.createElement("div");
  box.id = "sonic-registry-dialog";
  box.style.cssText = "position:fixed;top:8%;left:10%;right:10%;max-height:84%;z-index:10000;" +
    "overflow:auto;padding:16px;" +
    "background:#1f2937;color:#f9fafb;border:1px solid #4b5563;border-radius:8px;font:13px sans-serif";
  box.innerHTML = html;
  const close = document.createElement("button");
  close.textContent = t("close");
  close.style.cssText = "margin-top:12px;padding:4px 12px";
  close.onclick = () => box.remove();
  box.appendChild(close);
  document.body.appendChild(box);
  return box;
}

const esc = (s) => String(s ?? "-").replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

function renderReport(report) {
  const rows = (report.files ?? []).map((r) => `<tr>
      <td>${esc(r.path)}</td><td>${esc(r.release_id)}</td><td>${esc(r.role)}</td>
      <td style="color:${COLORS[r.status] ?? "#fff"}">${esc(t(r.status))}</td>
      <td>${esc(r.action)}</td></tr>`).join("");
  return `<h3>${esc(t("title"))}: ${esc(report.models_dir)}</h3>
    <table style="border-collapse:collapse;width:100%" border="1" cellpadding="4">
    <tr><th>${t("file")}</th><th>${t("release")}</th><th>${t("role")}</th>
    <th>${t("status")}</th><th>${t("action")}</th></tr>${rows}</table>
    <p>${esc(Object.entries(report.summary ?? {}).map(([s, n]) => `${t(s)}: ${n}`).join(" · "))}</p>`;
}

async function runCheck() {
  const box = showDialog(`<h3>${esc(t("title"))}</h3><p id="sonic-registry-progress">${esc(t("checking"))}</p>`);
  try {
    const res = await api.fetchApi("/sonic_registry/check");
    const report = await res.json();
    if (!res.ok) throw new Error(report.error ?? res.statusText);
    box.remove();
    showDialog(renderReport(report));
    await refreshFiles();
  } catch (e) {
    box.remove();
    toast("error", t("title"), String(e.message ?? e));
  }
}

app.registerExtension({
  name: "sonic_registry.guard",
  commands: [{ id: "SonicRegistry.Check", label: "Sonic: check models", icon: "pi pi-shield", function: runCheck }],
  menuCommands: [{ path: ["Extensions", "Sonic"], commands: ["SonicRegistry.Check"] }],

  async setup() {
    api.addEventListener("sonic_registry.verdict", ({ detail }) => {
      for (const [id, status] of Object.entries(detail.statuses ?? {})) nodeStatus[id] = status;
      const lang = locale();
      for (const w of detail.warnings ?? []) toast("warn", t("title"), w[lang] ?? w.en);
      refreshFiles();
    });
    api.addEventListener("sonic_registry.progress", ({ detail }) => {
      const p = document.getElementById("sonic-registry-progress");
      if (p && detail.total) {
        const pct = Math.floor((100 * detail.done) / detail.total);
        p.textContent = `${t("checking")} ${pct}% (${(detail.done / 2 ** 30).toFixed(2)} / ${(detail.total / 2 ** 30).toFixed(2)} GiB)`;
      }
    });
    await refreshFiles();
  },

  async nodeCreated(node) {
    if (LOADERS[node.comfyClass]) node.badges?.push(() => badge(node));
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "SonicRegistryCheck") return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const raw = message?.text?.[0];
      if (raw) showDialog(`<pre style="white-space:pre-wrap">${esc(raw)}</pre>`);
    };
  },
});
