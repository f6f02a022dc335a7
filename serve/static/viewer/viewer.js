// The viewer page: send a point file to POST /segment (Accept: application/x-ply), draw the labelled
// points with three.js, one Points object per class so that a class can be hidden.
//
// Machine-readable state for tests and scripts: #view[data-state] is idle | loading | rendered | error
// (with data-points, data-file, data-format, data-camera); each legend row has data-class, data-index,
// data-count, data-colour ("r,g,b") and data-visible; #status has data-status and data-code on an
// error answer. Colours are drawn exactly as the service sends them (no colour management, lighting,
// blending or antialiasing), so a class's palette colour can be found in the canvas's pixels.

import * as THREE from "three";
import { OrbitControls } from "three/controls/OrbitControls.js";
import { parseLabelledPly } from "./ply.js";

// palette colours are sRGB bytes meant to be shown as they are: no linear/sRGB conversions anywhere
THREE.ColorManagement.enabled = false;

const BACKGROUND = 0xeceef1; // the same as #view's CSS background; no class colour uses it

const $ = (id) => document.getElementById(id);
const view = $("view");
const statusLine = $("status");
const formatSelect = $("format");
const tokenInput = $("token");
const legendBody = document.querySelector("#legend tbody");
const pointSize = $("point-size");
const birdseyeButton = $("birdseye");
const againButton = $("again");

/** The format of a point file from its name, as `seg3d.points.PointFormat.for_path` guesses it
 * (tests/serve/test_viewer_browser.py checks that the two agree). */
export function formatForName(name) {
  const lower = name.toLowerCase();
  if (lower.endsWith(".pcd.bin")) return "nuscenes";
  if (lower.endsWith(".bin")) return "kitti";
  if (lower.endsWith(".pcd")) return "pcd";
  if (lower.endsWith(".ply")) return "ply";
  return null;
}

/** An error answer of the service: its status and `{"error": {"code", "message"}}`. */
class AnswerError extends Error {
  constructor(status, code, message) {
    super(`${status}${code ? ` ${code}` : ""}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

async function answerError(response) {
  let code = "";
  let message = response.statusText || "error";
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error !== null) {
      ({ code, message } = body.error);
    } else if (body && typeof body.error === "string") {
      // the /v2 paths' shape
      message = body.error;
      code = body.code || "";
    }
  } catch {
    // not JSON (a proxy's page): the status line says enough
  }
  return new AnswerError(response.status, code, message);
}

function authHeaders() {
  const token = tokenInput.value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function setState(state, message, error = null) {
  view.dataset.state = state;
  statusLine.textContent = message;
  statusLine.classList.toggle("error", state === "error");
  if (error instanceof AnswerError) {
    statusLine.dataset.status = String(error.status);
    statusLine.dataset.code = error.code;
  } else {
    delete statusLine.dataset.status;
    delete statusLine.dataset.code;
  }
}

// --- the service's configuration: model name, classes and colours, formats --------------------------

let config = null;

async function loadConfig() {
  const response = await fetch(new URL("viewer/config.json", document.baseURI), { headers: authHeaders() });
  if (!response.ok) throw await answerError(response);
  config = await response.json();
  $("model").textContent = `model: ${config.model} · ${config.class_table} · ${config.backend}`;
  const chosen = formatSelect.value;
  formatSelect.replaceChildren(new Option("from the file name", ""));
  for (const f of config.formats) {
    const option = new Option(f.value, f.value);
    option.title = f.description;
    formatSelect.append(option);
  }
  formatSelect.value = chosen;
  return config;
}

async function startUp() {
  try {
    await loadConfig();
    setState("idle", "Choose a point file.");
  } catch (err) {
    if (err instanceof AnswerError && err.status === 401) {
      setState("idle", "The service needs a bearer token: enter it under Token.", err);
    } else {
      setState("error", `Cannot read the viewer's configuration: ${err.message}`, err);
    }
  }
}

// --- the 3D view ------------------------------------------------------------------------------------

let renderer = null;
try {
  // preserveDrawingBuffer: the canvas keeps its pixels after a frame, for screenshots and pixel reads
  renderer = new THREE.WebGLRenderer({ antialias: false, alpha: false, preserveDrawingBuffer: true });
} catch (err) {
  setState("error", `WebGL is not available in this browser: ${err.message}`);
}

const scene = new THREE.Scene();
const perspective = new THREE.PerspectiveCamera(50, 1, 0.1, 5000);
perspective.up.set(0, 0, 1); // LiDAR frames are z-up
const birdseye = new THREE.OrthographicCamera(-1, 1, 1, -1, 0.1, 5000);
birdseye.up.set(0, 1, 0); // looking down -z: x to the right, y up the screen
let camera = perspective;
let perspectiveControls = null;
let birdseyeControls = null;
let radius = 40; // metres the default views frame around the sensor

const classGroups = new Map(); // class index -> THREE.Points

if (renderer) {
  renderer.outputColorSpace = THREE.LinearSRGBColorSpace; // no sRGB encoding on output: bytes as sent
  renderer.toneMapping = THREE.NoToneMapping;
  renderer.setPixelRatio(window.devicePixelRatio);
  renderer.setClearColor(BACKGROUND, 1);
  view.prepend(renderer.domElement); // under the legend box
  perspectiveControls = new OrbitControls(perspective, renderer.domElement);
  birdseyeControls = new OrbitControls(birdseye, renderer.domElement);
  birdseyeControls.enableRotate = false; // a map: pan and zoom only
  birdseyeControls.enabled = false;
  perspectiveControls.addEventListener("change", render);
  birdseyeControls.addEventListener("change", render);
  new ResizeObserver(resize).observe(view);
  resize();
}

function render() {
  if (renderer) renderer.render(scene, camera);
}

function resize() {
  const width = Math.max(view.clientWidth, 1);
  const height = Math.max(view.clientHeight, 1);
  renderer.setSize(width, height, false);
  perspective.aspect = width / height;
  perspective.updateProjectionMatrix();
  const aspect = width / height;
  birdseye.left = -radius * aspect;
  birdseye.right = radius * aspect;
  birdseye.top = radius;
  birdseye.bottom = -radius;
  birdseye.updateProjectionMatrix();
  render();
}

/** The distance from the sensor within which most points lie (95th percentile, sampled). */
function extent(positions, count) {
  const step = Math.max(1, Math.floor(count / 5000));
  const distances = [];
  for (let i = 0; i < count; i += step) {
    distances.push(Math.hypot(positions[3 * i], positions[3 * i + 1]));
  }
  if (distances.length === 0) return 40;
  distances.sort((a, b) => a - b);
  return Math.max(5, distances[Math.floor(0.95 * (distances.length - 1))]);
}

function resetView() {
  perspective.position.set(-0.75 * radius, -0.75 * radius, 0.55 * radius);
  perspectiveControls.target.set(0, 0, 0);
  perspectiveControls.update();
  birdseye.position.set(0, 0, 1000);
  birdseye.zoom = 1;
  birdseyeControls.target.set(0, 0, 0);
  birdseyeControls.update();
  resize();
}

function setBirdseye(on) {
  camera = on ? birdseye : perspective;
  perspectiveControls.enabled = !on;
  birdseyeControls.enabled = on;
  birdseyeButton.setAttribute("aria-pressed", String(on));
  view.dataset.camera = on ? "birdseye" : "perspective";
  render();
}

function clearCloud() {
  for (const points of classGroups.values()) {
    scene.remove(points);
    points.geometry.dispose();
    points.material.dispose();
  }
  classGroups.clear();
}

/** One Points object per class present, coloured per point with the colours of the answer. */
function drawCloud(cloud, classCount) {
  clearCloud();
  const counts = new Array(classCount).fill(0);
  for (let i = 0; i < cloud.count; i++) counts[cloud.labels[i]]++;
  const groups = counts.map((n) => ({ positions: new Float32Array(3 * n), colours: new Uint8Array(3 * n), n: 0 }));
  for (let i = 0; i < cloud.count; i++) {
    const g = groups[cloud.labels[i]];
    g.positions.set(cloud.positions.subarray(3 * i, 3 * i + 3), 3 * g.n);
    g.colours.set(cloud.colours.subarray(3 * i, 3 * i + 3), 3 * g.n);
    g.n++;
  }
  const size = Number(pointSize.value);
  groups.forEach((g, index) => {
    if (g.n === 0) return;
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(g.positions, 3));
    geometry.setAttribute("color", new THREE.BufferAttribute(g.colours, 3, true)); // bytes -> 0..1
    const material = new THREE.PointsMaterial({ size, sizeAttenuation: false, vertexColors: true });
    const points = new THREE.Points(geometry, material);
    classGroups.set(index, points);
    scene.add(points);
  });
  radius = extent(cloud.positions, cloud.count);
  resetView();
  return counts;
}

function fillLegend(counts) {
  legendBody.replaceChildren();
  for (const c of config.classes) {
    const count = counts[c.index] || 0;
    const row = document.createElement("tr");
    row.dataset.class = c.name;
    row.dataset.index = String(c.index);
    row.dataset.count = String(count);
    row.dataset.colour = c.colour.join(",");
    row.dataset.visible = String(count > 0);
    row.classList.toggle("empty", count === 0);
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = count > 0;
    box.disabled = count === 0;
    box.addEventListener("change", () => {
      const points = classGroups.get(c.index);
      if (points) points.visible = box.checked;
      row.dataset.visible = String(box.checked);
      render();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${c.colour.join(",")})`;
    const label = document.createElement("label");
    label.append(box, swatch, c.name);
    const name = document.createElement("td");
    name.append(label);
    const number = document.createElement("td");
    number.className = "num";
    number.textContent = count.toLocaleString("en-US");
    row.append(name, number);
    legendBody.append(row);
  }
  $("legend").hidden = false;
}

function showTiming(name, count, roundTripMs, response) {
  $("t-file").textContent = name;
  $("t-file").title = name;
  $("t-points").textContent = count.toLocaleString("en-US");
  $("t-round-trip").textContent = `${roundTripMs.toFixed(0)} ms`;
  const inference = response.headers.get("x-inference-ms");
  $("t-inference").textContent = inference === null ? "–" : `${inference} ms`;
  $("t-backend").textContent = response.headers.get("x-backend") || "–";
  $("timing").hidden = false;
}

// --- segmenting a file ------------------------------------------------------------------------------

let lastFile = null;
let requestNumber = 0; // a newer request makes the answers of older ones stale

async function segment(file) {
  lastFile = file;
  againButton.disabled = false;
  const number = ++requestNumber;
  view.dataset.file = file.name;
  const format = formatSelect.value || formatForName(file.name);
  if (!format) {
    setState("error", `Cannot tell the format of ${file.name} from its name: choose one under Format.`);
    return;
  }
  view.dataset.format = format;
  if (!renderer) {
    setState("error", "WebGL is not available in this browser: nothing can be drawn.");
    return;
  }
  setState("loading", `Segmenting ${file.name} (${format})…`);
  try {
    if (!config) await loadConfig();
    const url = new URL("segment", document.baseURI);
    url.searchParams.set("format", format);
    const intensityMax = $("intensity-max").value.trim();
    if (intensityMax) url.searchParams.set("intensity_max", intensityMax);
    const started = performance.now();
    const response = await fetch(url, {
      method: "POST",
      body: file,
      headers: { "Content-Type": "application/octet-stream", Accept: "application/x-ply", ...authHeaders() },
    });
    if (!response.ok) throw await answerError(response);
    const type = response.headers.get("content-type") || "(none)";
    if (!type.startsWith("application/x-ply")) {
      throw new Error(`the service answered ${type}, not a labelled PLY (Accept: application/x-ply)`);
    }
    const buffer = await response.arrayBuffer();
    const roundTripMs = performance.now() - started;
    if (number !== requestNumber) return;
    if (response.headers.get("x-model-name") !== config.model) await loadConfig(); // the model changed
    const cloud = parseLabelledPly(buffer);
    const declared = Number(response.headers.get("x-num-points"));
    if (declared !== cloud.count) {
      throw new Error(`the answer holds ${cloud.count} points but X-Num-Points says ${declared}`);
    }
    for (let i = 0; i < cloud.count; i++) {
      if (cloud.labels[i] >= config.classes.length) {
        throw new Error(`label ${cloud.labels[i]} of point ${i} is not a class of ${config.class_table}`);
      }
    }
    const counts = drawCloud(cloud, config.classes.length);
    fillLegend(counts);
    showTiming(file.name, cloud.count, roundTripMs, response);
    view.dataset.points = String(cloud.count);
    setState("rendered", `Segmented ${cloud.count.toLocaleString("en-US")} points.`);
  } catch (err) {
    if (number !== requestNumber) return;
    setState("error", err.message, err);
  }
}

// --- the controls -------------------------------------------------------------------------------------

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) segment(file);
});
const drop = $("drop");
// a file dropped anywhere on the page is taken, not opened by the browser in place of the page
window.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
window.addEventListener("dragleave", () => drop.classList.remove("over"));
window.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer?.files[0];
  if (file) segment(file);
});
formatSelect.addEventListener("change", () => {
  if (lastFile) segment(lastFile);
});
againButton.addEventListener("click", () => {
  if (lastFile) segment(lastFile);
});
tokenInput.addEventListener("change", () => {
  if (!lastFile) startUp();
});
// Enter in a field: segment the file again with the new settings (or just retry the configuration)
$("options").addEventListener("submit", (event) => {
  event.preventDefault();
  if (lastFile) segment(lastFile);
  else startUp();
});
pointSize.addEventListener("input", () => {
  $("point-size-value").textContent = pointSize.value;
  for (const points of classGroups.values()) points.material.size = Number(pointSize.value);
  render();
});
birdseyeButton.addEventListener("click", () => {
  if (renderer) setBirdseye(camera !== birdseye);
});
$("reset").addEventListener("click", () => {
  if (renderer) resetView();
});

// for tests and the console
window.segViewer = { formatForName };
view.dataset.camera = "perspective";
if (renderer) startUp();
