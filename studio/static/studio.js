// Colorflow Studio: upload photos and clips, compare before and after, set the strength, download.
"use strict";

const CLIP_SUFFIXES = [".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif"];
const UPLOADS_AT_ONCE = 3; // below the server's per-client limit, so no upload of ours is refused as too many
const POLL_MS = 500;

const modelSelect = document.getElementById("model");
const modelMetrics = document.getElementById("model-metrics");
const strengthInput = document.getElementById("strength");
const strengthValue = document.getElementById("strength-value");
const downloadAll = document.getElementById("download-all");
const results = document.getElementById("results");
const drop = document.getElementById("drop");
const filesInput = document.getElementById("files");

const photos = []; // {id, card}
const waiting = [];
let uploading = 0;
let models = [];

function strength() {
  return Number(strengthInput.value).toFixed(2);
}

function describeMetrics(metrics) {
  const names = { eval_psnr: "PSNR", eval_ssim: "SSIM", eval_colorfulness_ratio: "colorfulness" };
  return Object.entries(metrics).map(([name, value]) => `${names[name] || name} ${value}`).join(" · ");
}

async function loadModels() {
  const answer = await fetch("/api/models");
  const listing = await answer.json();
  models = listing.models;
  modelSelect.replaceChildren(...models.map((choice) => new Option(choice.label, choice.uri)));
  if (listing.default) modelSelect.value = listing.default;
  if (!models.length) modelMetrics.textContent = "No registered model yet: train one first.";
  showMetrics();
}

function showMetrics() {
  const chosen = models.find((choice) => choice.uri === modelSelect.value);
  modelMetrics.textContent = chosen ? describeMetrics(chosen.metrics) : modelMetrics.textContent;
}

function card(templateId, name) {
  const article = document.getElementById(templateId).content.firstElementChild.cloneNode(true);
  article.querySelector(".name").textContent = name;
  results.append(article);
  return article;
}

function fail(article, message) {
  article.classList.add("failed");
  article.querySelector(".state").textContent = message;
}

async function detailOf(answer) {
  try {
    const body = await answer.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    return `${answer.status} ${answer.statusText}`;
  }
}

function isClip(file) {
  const name = file.name.toLowerCase();
  return file.type.startsWith("video/") || CLIP_SUFFIXES.some((suffix) => name.endsWith(suffix));
}

function enqueue(files) {
  for (const file of files) waiting.push(file);
  pump();
}

function pump() {
  while (uploading < UPLOADS_AT_ONCE && waiting.length) {
    const file = waiting.shift();
    uploading += 1;
    (isClip(file) ? sendClip(file) : sendPhoto(file)).finally(() => {
      uploading -= 1;
      pump();
    });
  }
}

function form(file, extra = {}) {
  const body = new FormData();
  body.append("file", file, file.name);
  body.append("model", modelSelect.value);
  for (const [key, value] of Object.entries(extra)) body.append(key, value);
  return body;
}

async function sendPhoto(file) {
  const article = card("photo-card", file.name);
  article.querySelector(".state").textContent = "colorizing…";
  const answer = await fetch("/api/photos", { method: "POST", body: form(file) });
  if (!answer.ok) {
    fail(article, await detailOf(answer));
    article.querySelector(".compare").remove();
    article.querySelector("footer").remove();
    return;
  }
  const photo = await answer.json();
  article.dataset.id = photo.id;
  article.querySelector(".state").textContent = `${photo.width}×${photo.height}`;
  article.querySelector(".before").src = `/api/photos/${photo.id}/original.png`;
  photos.push({ id: photo.id, card: article });
  showStrength(article, photo.id);
  followDivider(article.querySelector(".compare"));
  updateZip();
}

function showStrength(article, id) {
  const colorized = `/api/photos/${id}/colorized.png?strength=${strength()}`;
  article.querySelector(".after").src = colorized;
  article.querySelector(".download").href = `${colorized}&download=true`;
}

function updateZip() {
  downloadAll.href = `/api/photos.zip?ids=${photos.map((photo) => photo.id).join(",")}&strength=${strength()}`;
  downloadAll.classList.toggle("disabled", photos.length === 0);
}

function followDivider(compare) {
  const after = compare.querySelector(".after");
  const divider = compare.querySelector(".divider");
  const place = (fraction) => {
    const percent = Math.round(Math.min(100, Math.max(0, fraction * 100)) * 10) / 10;
    after.style.clipPath = `inset(0 0 0 ${percent}%)`;
    divider.style.left = `${percent}%`;
    divider.setAttribute("aria-valuenow", percent.toFixed(0));
    compare.dataset.divider = percent.toFixed(1);
  };
  const follow = (event) => {
    const box = compare.getBoundingClientRect();
    place((event.clientX - box.left) / box.width);
  };
  compare.addEventListener("pointerdown", (event) => {
    compare.setPointerCapture(event.pointerId);
    follow(event);
    compare.addEventListener("pointermove", follow);
  });
  compare.addEventListener("pointerup", () => compare.removeEventListener("pointermove", follow));
  divider.addEventListener("keydown", (event) => {
    const now = Number(compare.dataset.divider || 50);
    if (event.key === "ArrowLeft") place((now - 5) / 100);
    if (event.key === "ArrowRight") place((now + 5) / 100);
  });
  place(0.5);
}

async function sendClip(file) {
  const article = card("clip-card", file.name);
  const state = article.querySelector(".state");
  const progress = article.querySelector("progress");
  state.textContent = "uploading…";
  const answer = await fetch("/api/clips", { method: "POST", body: form(file, { strength: strength() }) });
  if (!answer.ok) {
    fail(article, await detailOf(answer));
    progress.remove();
    return;
  }
  const job = await answer.json();
  for (;;) {
    const status = await (await fetch(`/api/clips/${job.id}`)).json();
    if (status.frames_total) {
      progress.max = status.frames_total;
      progress.value = status.frames_done;
    } else {
      progress.removeAttribute("value");
    }
    state.textContent = status.state === "running" ? `${status.frames_done} of ${status.frames_total ?? "?"} frames` : status.state;
    if (status.state === "failed") {
      fail(article, status.error);
      return;
    }
    if (status.state === "done") {
      const url = `/api/clips/${job.id}/colorized.mp4`;
      progress.max = 1;
      progress.value = 1;
      const video = article.querySelector("video");
      video.src = url;
      video.hidden = false;
      const link = article.querySelector(".download");
      link.href = url;
      link.hidden = false;
      const report = status.report;
      article.querySelector(".report").textContent =
        `${report.frames} frames, ${report.width}×${report.height}, ${report.audio ? "sound kept" : "no sound"}, ` +
        `${report.scene_cuts} scene cuts, flicker ${report.flicker}`;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

strengthInput.addEventListener("input", () => {
  strengthValue.textContent = strength();
});
strengthInput.addEventListener("change", () => {
  for (const photo of photos) showStrength(photo.card, photo.id);
  updateZip();
});
modelSelect.addEventListener("change", showMetrics);
filesInput.addEventListener("change", () => {
  enqueue([...filesInput.files]);
  filesInput.value = "";
});
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  enqueue([...event.dataTransfer.files]);
});

loadModels();
