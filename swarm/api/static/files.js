"use strict";
// A run's files: a table with download links, and previews of its images. Loaded before app.js,
// whose api() and el() it uses. Files are fetched with the API key (an <img src> or a plain link
// could not send it) and shown through blob: URLs; a preview is fetched once per content (sha256).

const filesState = { listed: "", previews: new Map() };
const PREVIEW = /\.(png|jpe?g|gif|webp)$/i;

function fmtBytes(n) {
  for (const [unit, size] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) {
    if (n >= size) return `${(n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

function fileUrl(runId, path) {
  return `/v1/runs/${runId}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

async function fileBlob(runId, f) {
  if (!filesState.previews.has(f.sha256)) {
    filesState.previews.set(f.sha256, api(fileUrl(runId, f.path)).then((r) => r.blob()).then(URL.createObjectURL));
  }
  return filesState.previews.get(f.sha256);
}

async function saveFile(runId, f) {
  try {
    const a = el("a", { href: await fileBlob(runId, f), download: f.path.split("/").pop() });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) { notice(e.message); }
}

async function drawFiles(runId) {
  const body = await (await api(`/v1/runs/${runId}/files`)).json();
  const listed = JSON.stringify(body.files);
  if (listed === filesState.listed) return;  // unchanged: keep the table (and its previews) as it is
  filesState.listed = listed;
  const box = $("files");
  $("files-count").textContent = body.files.length ? `${body.files.length} file(s)` : "";
  if (!body.files.length) { box.replaceChildren(el("p", { class: "muted", text: "no files" })); return; }
  const rows = body.files.map((f) => {
    const link = el("a", { href: "#", class: "file-link", text: f.path });
    link.onclick = (ev) => { ev.preventDefault(); saveFile(runId, f); };
    const cells = [el("td", {}, link), el("td", { class: "num", text: fmtBytes(f.size) }),
                   el("td", { class: "muted", text: f.step_id ? f.step_id.slice(0, 12) : "attachment" })];
    return el("tr", { class: "file-row", "data-path": f.path }, ...cells);
  });
  const table = el("table", { class: "runs" },
    el("thead", {}, el("tr", {}, el("th", { text: "path" }), el("th", { text: "size" }), el("th", { text: "written by step" }))),
    el("tbody", {}, ...rows));
  const gallery = el("div", { class: "previews" });
  for (const f of body.files.filter((f) => PREVIEW.test(f.path))) {
    const img = el("img", { class: "preview", alt: f.path, title: f.path });
    img.onload = () => img.setAttribute("data-loaded", "1");
    gallery.append(el("figure", {}, img, el("figcaption", { text: f.path })));
    fileBlob(runId, f).then((url) => { img.src = url; }).catch((e) => notice(e.message));
  }
  box.replaceChildren(table, gallery);
}
