// The operator page of `eew dashboard`: map (offline Natural Earth basemap), stations by state,
// events with their P/S fronts and alert versions, a countdown at a chosen site, pipeline health.
// Data: GET /api/snapshot once, then one server-sent message per tick from /api/stream.
import { geoCircle, geoMercator, geoPath } from "d3-geo";
import { feature, mesh } from "topojson-client";

const COLORS = { live: "#2ecc71", lagging: "#f1c40f", gap: "#e67e22", dead: "#7f8c8d", rejected: "#c03cf0" };
const EPICENTRE = "#ff2d2d";
const P_COLOR = "#4aa3ff";
const S_COLOR = "#ff5a36";
const FRONT_MAX_S = 240; // fronts drawn for this long after the origin
const FRONT_FRAME_MS = 100;
const KM_PER_DEG = 111.195;

const S = {
  config: { states: Object.keys(COLORS), vp_km_s: 6, vs_km_s: 3.5, sites: [], replay: false },
  layout: [], // index -> [id, lat, lon]
  rows: [], // index -> [index, stateCode, score, triggered, reason]
  byId: new Map(),
  events: [],
  health: null,
  counts: {},
  clockOffsetMs: 0,
  site: null, // {name, latitude, longitude, predictions: [...]} chosen on the map or from the settings
  stationsDirty: true,
  baseDirty: true,
  topDirty: true,
  projection: null,
  pts: [], // projected [x, y] per station index (null when no coordinates)
  world: null,
};

// What the browser tests and the benchmark read (the map is a canvas).
const api = {
  ready: false,
  colors: COLORS,
  epicentreColor: EPICENTRE,
  frameTimes: [],
  seen: {}, // "event_id:version" -> performance.now() when first drawn/listed
  messages: 0,
  lastMessageAt: 0,
  drawn: { stations: {}, events: {} },
  cost: {}, // JS time per step: {name: [count, total ms, max ms]} (the benchmark reads it)
  stationState(id) {
    const i = S.byId.get(id);
    if (i === undefined || !S.rows[i]) return null;
    return S.config.states[S.rows[i][1]];
  },
  stationPixel(id) {
    // the colour drawn at a station's centre on the stations layer, as "#rrggbb"
    const p = api.drawn.stations[id];
    if (!p) return null;
    const c = document.getElementById("layer-stations");
    const d = c.getContext("2d").getImageData(Math.round(p[0] * dpr), Math.round(p[1] * dpr), 1, 1).data;
    return "#" + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, "0")).join("");
  },
  topPixel(x, y) {
    const d = document.getElementById("layer-top").getContext("2d").getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data;
    return "#" + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, "0")).join("");
  },
  events: () => S.events.map((e) => ({ id: e.event_id, versions: e.versions.map((v) => v.version), stations: e.stations })),
  toScreen: (lon, lat) => S.projection([lon, lat]), // map pixel of a place (CSS pixels in #map)
  alertLag(id, version) {
    // seconds from the version's creation (alerting's wall clock) to it being listed on this page
    const e = S.events.find((x) => x.event_id === id);
    const v = e && e.versions.find((x) => x.version === version);
    const seen = api.seen[id + ":" + version + ":listed"];
    if (!v || seen === undefined) return null;
    return (performance.timeOrigin + seen - v.created_time_ns / 1e6) / 1000;
  },
};
window.eewDashboard = api;

function timed(name, fn) {
  const t0 = performance.now();
  const out = fn();
  const dt = performance.now() - t0;
  const c = api.cost[name] || (api.cost[name] = [0, 0, 0]);
  c[0] += 1;
  c[1] += dt;
  c[2] = Math.max(c[2], dt);
  return out;
}

let dpr = window.devicePixelRatio || 1;
const $ = (id) => document.getElementById(id);

function clockMs() {
  return Date.now() + S.clockOffsetMs;
}

function isoMs(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ---- start, token, data ------------------------------------------------------------------------

async function start() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    history.replaceState(null, "", location.pathname + location.search);
    await openSession(decodeURIComponent(m[1]));
  }
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const ok = await openSession($("token").value);
    if (ok) {
      $("token").value = "";
      await load();
    } else {
      $("login-error").textContent = "token refused";
    }
  });
  $("logout").addEventListener("click", async () => {
    await fetch("/api/session", { method: "DELETE" });
    location.reload();
  });
  await load();
}

async function openSession(token) {
  const r = await fetch("/api/session", { method: "POST", headers: { Authorization: "Bearer " + token } });
  return r.status === 204;
}

async function load() {
  const r = await fetch("/api/snapshot");
  if (r.status === 401) {
    $("login").classList.remove("hidden");
    $("main").classList.add("hidden");
    $("conn").textContent = "token required";
    return;
  }
  const snap = await r.json();
  $("login").classList.add("hidden");
  $("main").classList.remove("hidden");
  $("logout").classList.remove("hidden");
  S.config = snap.config;
  $("mode").textContent = snap.config.replay ? "REPLAY" : "LIVE";
  fillSites();
  await loadWorld();
  resize();
  apply(snap);
  fit();
  connect();
  api.ready = true;
  requestAnimationFrame(frame);
}

async function loadWorld() {
  const topo = await (await fetch("/assets/countries-50m.json")).json();
  const land = feature(topo, topo.objects.land);
  // split into parts with their bounding boxes: a regional view draws only the parts it shows
  const polys = (land.type === "FeatureCollection" ? land.features : [land]).flatMap((f) =>
    f.geometry.type === "MultiPolygon" ? f.geometry.coordinates.map((c) => ({ type: "Polygon", coordinates: c })) : [f.geometry]);
  const lines = (m) => m.coordinates.map((c) => ({ type: "LineString", coordinates: c }));
  const withBox = (g) => ({ g, box: bbox(g.type === "Polygon" ? g.coordinates[0] : g.coordinates) });
  S.world = {
    whole: land,
    land: polys.map(withBox),
    coast: lines(mesh(topo, topo.objects.land)).map(withBox),
    borders: lines(mesh(topo, topo.objects.countries, (a, b) => a !== b)).map(withBox),
  };
}

function bbox(coords) {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [x, y] of coords) {
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return [x0, y0, x1, y1];
}

function visibleBox() {
  // the lon/lat box on screen (Mercator: corners suffice), with a margin
  const [w, h] = S.size;
  const a = S.projection.invert([0, h]);
  const b = S.projection.invert([w, 0]);
  if (!a || !b || b[0] - a[0] > 300) return null; // (nearly) the whole world: draw everything
  const mx = (b[0] - a[0]) * 0.1;
  const my = (b[1] - a[1]) * 0.1;
  return [a[0] - mx, a[1] - my, b[0] + mx, b[1] + my];
}

function connect() {
  const es = new EventSource("/api/stream");
  es.onopen = () => {
    $("conn").textContent = "live";
    $("conn").className = "badge on";
  };
  es.onerror = () => {
    $("conn").textContent = "reconnecting";
    $("conn").className = "badge off";
    if (es.readyState === EventSource.CLOSED) {
      // refused (e.g. the session expired): ask again for a token, or reconnect shortly
      setTimeout(async () => {
        const r = await fetch("/api/snapshot");
        if (r.status === 401) location.reload();
        else connect();
      }, 2000);
    }
  };
  es.onmessage = (ev) => timed("message", () => apply(JSON.parse(ev.data)));
}

function apply(msg) {
  api.messages += 1;
  api.lastMessageAt = performance.now();
  S.clockOffsetMs = msg.clock_ns / 1e6 - Date.now();
  if (msg.layout) {
    S.layout = msg.layout;
    S.byId = new Map(msg.layout.map((s, i) => [s[0], i]));
    S.rows = [];
    if (api.ready && !S.userMoved) fit();
    else project(false);
  }
  if (msg.rows) {
    for (const r of msg.rows) S.rows[r[0]] = r;
    S.stationsDirty = true;
  }
  if (msg.counts) {
    S.counts = msg.counts;
    renderLegend();
  }
  if (msg.events) {
    S.events = msg.events;
    renderEvents();
    refreshSite();
    S.topDirty = true;
  }
  if (msg.sites) {
    S.config.sites = msg.sites;
    fillSites();
  }
  if (msg.health) {
    S.health = msg.health;
    renderHealth();
  }
}

// ---- map -----------------------------------------------------------------------------------

function layers() {
  return ["layer-base", "layer-events", "layer-fronts", "layer-stations", "layer-top"].map((id) => $(id));
}

function resize() {
  const box = $("map");
  const w = box.clientWidth;
  const h = box.clientHeight;
  dpr = window.devicePixelRatio || 1;
  for (const c of layers()) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
    c.style.width = w + "px";
    c.style.height = h + "px";
    c.getContext("2d").setTransform(dpr, 0, 0, dpr, 0, 0);
  }
  S.size = [w, h];
  if (!S.projection) S.projection = geoMercator();
  S.baseDirty = S.stationsDirty = S.topDirty = true;
}

function fit() {
  const [w, h] = S.size;
  const coords = S.layout.filter((s) => s[1] !== null).map((s) => [s[2], s[1]]);
  for (const e of S.events) if (e.location) coords.push([e.location.longitude, e.location.latitude]);
  let target;
  if (coords.length) {
    const lons = coords.map((c) => c[0]);
    const lats = coords.map((c) => c[1]);
    const cx = (Math.min(...lons) + Math.max(...lons)) / 2;
    const cy = (Math.min(...lats) + Math.max(...lats)) / 2;
    // at least 2 degrees across, so a small network still shows its coasts and borders
    coords.push([cx - 1, cy - 1], [cx + 1, cy + 1]);
    target = { type: "MultiPoint", coordinates: coords };
  } else {
    target = S.world ? S.world.whole : { type: "Sphere" };
  }
  const before = S.projection ? [S.projection.scale(), ...S.projection.translate()].join() : "";
  S.projection = geoMercator().fitExtent([[30, 30], [w - 30, h - 30]], target);
  S.userMoved = false;
  project([S.projection.scale(), ...S.projection.translate()].join() !== before || S.baseDirty);
}

function project(moved = true) {
  // station positions on screen; ``moved``: the projection changed, so everything is redrawn
  if (!S.projection) return;
  S.pts = S.layout.map((s) => (s[1] === null ? null : S.projection([s[2], s[1]])));
  S.stationsDirty = true;
  if (moved) S.baseDirty = S.topDirty = true;
}

function drawBase() {
  const c = $("layer-base").getContext("2d");
  const [w, h] = S.size;
  c.clearRect(0, 0, w, h);
  if (!S.world) return;
  const path = geoPath(S.projection, c);
  const v = visibleBox();
  const shown = (parts) => (v ? parts.filter(({ box }) => box[2] >= v[0] && box[0] <= v[2] && box[3] >= v[1] && box[1] <= v[3]) : parts);
  c.fillStyle = "#1d2b22";
  c.beginPath();
  for (const { g } of shown(S.world.land)) path(g);
  c.fill();
  c.strokeStyle = "#7fa0b8";
  c.lineWidth = 1;
  c.beginPath();
  for (const { g } of shown(S.world.coast)) path(g);
  c.stroke();
  c.strokeStyle = "#c9b37a";
  c.setLineDash([4, 3]);
  c.beginPath();
  for (const { g } of shown(S.world.borders)) path(g);
  c.stroke();
  c.setLineDash([]);
}

function drawStations() {
  const c = $("layer-stations").getContext("2d");
  const [w, h] = S.size;
  c.clearRect(0, 0, w, h);
  const n = S.layout.length;
  const r = n > 500 ? 3 : 5;
  const byState = Object.keys(COLORS).map(() => []);
  const triggered = [];
  const drawn = {};
  for (let i = 0; i < n; i++) {
    const p = S.pts[i];
    if (!p) continue;
    const row = S.rows[i];
    const code = row ? row[1] : 3;
    byState[code].push(p);
    if (row && row[3]) triggered.push(p);
    drawn[S.layout[i][0]] = p;
  }
  c.lineWidth = 2;
  c.strokeStyle = "#ffffff";
  for (const p of triggered) {
    c.beginPath();
    c.arc(p[0], p[1], r + 3, 0, 2 * Math.PI);
    c.stroke();
  }
  S.config.states.forEach((name, code) => {
    c.fillStyle = COLORS[name];
    c.beginPath();
    for (const p of byState[code]) {
      c.moveTo(p[0] + r, p[1]);
      c.arc(p[0], p[1], r, 0, 2 * Math.PI);
    }
    c.fill();
  });
  api.drawn.stations = drawn;
}

function kmCircle(lon, lat, km) {
  return geoCircle().center([lon, lat]).radius(km / KM_PER_DEG).precision(2)();
}

function frontsOf(nowMs) {
  // the newest located event while its fronts are on the map, else null
  const e = S.events.find((x) => x.location && x.type !== "CANCEL");
  if (!e) return null;
  const dt = (nowMs - e.origin_time_ns / 1e6) / 1000;
  return dt > 0 && dt < FRONT_MAX_S ? [e, dt] : null;
}

function drawFronts(nowMs) {
  // P and S fronts of the newest located event (redrawn every frame while they spread)
  const c = $("layer-fronts").getContext("2d");
  const [w, h] = S.size;
  c.clearRect(0, 0, w, h);
  const f = frontsOf(nowMs);
  if (!f) return false;
  const [e, dt] = f;
  const { latitude: lat, longitude: lon, depth_km: depth } = e.location;
  const path = geoPath(S.projection, c);
  for (const [v, color] of [[S.config.vp_km_s, P_COLOR], [S.config.vs_km_s, S_COLOR]]) {
    const reach = v * dt;
    const rad = Math.sqrt(Math.max(0, reach * reach - (depth || 0) * (depth || 0)));
    if (rad <= 0) continue;
    c.strokeStyle = color;
    c.lineWidth = 2;
    c.beginPath();
    path(kmCircle(lon, lat, rad));
    c.stroke();
  }
  return true;
}

function drawEvents() {
  // uncertainty circles (events layer), epicentres and the chosen site (top layer): on change only
  const c = $("layer-events").getContext("2d");
  const t = $("layer-top").getContext("2d");
  const [w, h] = S.size;
  c.clearRect(0, 0, w, h);
  t.clearRect(0, 0, w, h);
  const pathE = geoPath(S.projection, c);
  const drawnEvents = {};
  S.events.forEach((e, k) => {
    if (!e.location || e.type === "CANCEL") return;
    const { latitude: lat, longitude: lon, uncertainty_km: unc } = e.location;
    if (unc) {
      c.fillStyle = "rgba(255,80,80,0.12)";
      c.strokeStyle = "rgba(255,80,80,0.6)";
      c.lineWidth = 1;
      c.beginPath();
      pathE(kmCircle(lon, lat, unc));
      c.fill();
      c.stroke();
    }
    const p = S.projection([lon, lat]);
    if (!p) return;
    star(t, p[0], p[1], k === 0 ? 11 : 7);
    drawnEvents[e.event_id] = p;
    for (const v of e.versions) {
      const key = e.event_id + ":" + v.version;
      if (!(key in api.seen)) api.seen[key] = performance.now();
    }
  });
  if (S.site) {
    const p = S.projection([S.site.longitude, S.site.latitude]);
    if (p) {
      t.fillStyle = "#ffffff";
      t.strokeStyle = "#000000";
      t.fillRect(p[0] - 4, p[1] - 4, 8, 8);
      t.strokeRect(p[0] - 4, p[1] - 4, 8, 8);
    }
  }
  api.drawn.events = drawnEvents;
}

function star(ctx, x, y, r) {
  ctx.fillStyle = EPICENTRE;
  ctx.strokeStyle = "#000000";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 0; i < 10; i++) {
    const a = (Math.PI / 5) * i - Math.PI / 2;
    const rr = i % 2 ? r * 0.45 : r;
    ctx.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a));
  }
  ctx.closePath();
  ctx.fill();
  ctx.stroke();
}

let lastFrame = 0;
let animating = true;
let lastFronts = 0;
let lastCountdown = 0;

function frame(ts) {
  if (lastFrame) {
    api.frameTimes.push(ts - lastFrame);
    if (api.frameTimes.length > 5000) api.frameTimes.splice(0, 1000);
  }
  lastFrame = ts;
  const now = clockMs();
  if (S.baseDirty) {
    timed("basemap", drawBase);
    S.baseDirty = false;
  }
  if (S.stationsDirty) {
    timed("stations", drawStations);
    S.stationsDirty = false;
  }
  if (S.topDirty) {
    timed("events", drawEvents);
    S.topDirty = false;
    animating = true; // redraw the fronts once at least
  }
  if (animating && ts - lastFronts >= FRONT_FRAME_MS) {
    // 10 per second: the S front moves 0.35 km per step, and the canvas is composited less often
    lastFronts = ts;
    animating = timed("fronts", () => drawFronts(now));
  }
  if (ts - lastCountdown > 100) {
    lastCountdown = ts;
    $("clock").textContent = isoMs(now);
    renderCountdown(now);
  }
  requestAnimationFrame(frame);
}

// ---- interaction ---------------------------------------------------------------------------

function setupInteraction() {
  const box = $("map");
  let drag = null;
  box.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const f = ev.deltaY < 0 ? 1.25 : 0.8;
    const p = S.projection;
    const [tx, ty] = p.translate();
    const x = ev.offsetX;
    const y = ev.offsetY;
    p.scale(p.scale() * f).translate([x - (x - tx) * f, y - (y - ty) * f]);
    S.userMoved = true;
    project();
  }, { passive: false });
  box.addEventListener("mousedown", (ev) => {
    drag = { x: ev.offsetX, y: ev.offsetY, moved: false };
  });
  box.addEventListener("mousemove", (ev) => {
    if (drag) {
      const dx = ev.offsetX - drag.x;
      const dy = ev.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) {
        const [tx, ty] = S.projection.translate();
        S.projection.translate([tx + dx, ty + dy]);
        drag.x = ev.offsetX;
        drag.y = ev.offsetY;
        drag.moved = true;
        S.userMoved = true;
        project();
      }
    }
    tooltip(ev.offsetX, ev.offsetY);
  });
  box.addEventListener("mouseup", (ev) => {
    if (drag && !drag.moved) {
      const ll = S.projection.invert([ev.offsetX, ev.offsetY]);
      if (ll) chooseSite({ name: "chosen site", latitude: ll[1], longitude: ll[0] });
    }
    drag = null;
  });
  box.addEventListener("mouseleave", () => {
    drag = null;
    $("tip").classList.add("hidden");
  });
  box.addEventListener("dblclick", () => fit());
  window.addEventListener("resize", () => {
    resize();
    if (!S.userMoved) fit();
    else project();
  });
  $("site-select").addEventListener("change", (ev) => {
    const s = S.config.sites[Number(ev.target.value)];
    if (s) chooseSite({ ...s });
  });
}

function tooltip(x, y) {
  let best = -1;
  let bestD = 64;
  S.pts.forEach((p, i) => {
    if (!p) return;
    const d = (p[0] - x) ** 2 + (p[1] - y) ** 2;
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  });
  const tip = $("tip");
  if (best < 0) {
    tip.classList.add("hidden");
    return;
  }
  const row = S.rows[best];
  const state = row ? S.config.states[row[1]] : "dead";
  tip.textContent = `${S.layout[best][0]} · ${state}${row && row[4] ? " (" + row[4] + ")" : ""} · score ${row ? row[2].toFixed(2) : "—"}${row && row[3] ? " · TRIGGERED" : ""}`;
  tip.style.left = x + 12 + "px";
  tip.style.top = y + 12 + "px";
  tip.classList.remove("hidden");
}

function fillSites() {
  const sel = $("site-select");
  sel.innerHTML = "";
  const opt0 = document.createElement("option");
  opt0.value = "";
  opt0.textContent = S.config.sites.length ? "— choose —" : "(click the map)";
  sel.appendChild(opt0);
  S.config.sites.forEach((s, i) => {
    const o = document.createElement("option");
    o.value = String(i);
    o.textContent = s.name;
    sel.appendChild(o);
  });
  const keep = S.site ? S.config.sites.findIndex((s) => s.name === S.site.name) : -1;
  if (keep >= 0) sel.value = String(keep);
  else if (!S.site && S.config.sites.length) {
    sel.value = "0";
    chooseSite({ ...S.config.sites[0] });
  }
}

function chooseSite(site) {
  S.site = { ...site, predictions: [] };
  S.topDirty = true;
  refreshSite();
}

async function refreshSite() {
  const site = S.site;
  if (!site) return;
  const r = await fetch(`/api/site?lat=${site.latitude}&lon=${site.longitude}`);
  if (r.ok && S.site === site) site.predictions = (await r.json()).predictions;
}

// ---- panels --------------------------------------------------------------------------------

function renderLegend() {
  $("legend").innerHTML = Object.entries(COLORS)
    .map(([name, color]) => `<span data-state="${name}"><i class="dot" data-color="${color}"></i>${name} <b>${S.counts[name] ?? 0}</b></span>`)
    .join("") + `<span><i class="dot ring"></i>ring: triggered</span>`;
  for (const dot of $("legend").querySelectorAll("i[data-color]")) dot.style.background = dot.dataset.color;
  const ring = $("legend").querySelector("i.ring");
  ring.style.border = "2px solid #fff";
}

function renderCountdown(nowMs) {
  const box = $("countdown");
  const site = S.site;
  if (!site) {
    box.textContent = "click the map to choose a site";
    return;
  }
  const preds = (site.predictions || []).filter((p) => S.events.some((e) => e.event_id === p.event_id && e.type !== "CANCEL"));
  if (!preds.length) {
    box.textContent = `${site.name} (${site.latitude.toFixed(3)}, ${site.longitude.toFixed(3)}): no located event`;
    return;
  }
  box.innerHTML = preds.map((p) => {
    const warn = (p.s_arrival_ns / 1e6 - nowMs) / 1000;
    const mmi = p.mmi === null ? "intensity unknown (no magnitude yet)" : `MMI ${p.mmi.toFixed(1)}`;
    const head = warn > 0
      ? `<span class="big">${warn.toFixed(1)} s</span> until S`
      : `<span class="big now">shaking</span> (S arrived ${(-warn).toFixed(0)} s ago)`;
    return `<div data-site-event="${esc(p.event_id)}">${head}<br>${esc(site.name)}: ${p.epicentral_km.toFixed(0)} km from ${esc(p.event_id)} · ${mmi}</div>`;
  }).join("");
}

function fmtMag(m) {
  if (!m) return "M —";
  return `${esc(m.type)} ${m.lower_bound ? "≥ " : ""}${m.value.toFixed(1)} <small>± ${m.uncertainty.toFixed(1)}${m.lower_bound ? " (lower bound)" : ""}</small>`;
}

function renderEvents() {
  const box = $("events");
  if (!S.events.length) {
    box.innerHTML = `<p class="muted">no event</p>`;
    return;
  }
  box.innerHTML = S.events.map((e) => {
    const loc = e.location
      ? `${e.location.latitude.toFixed(3)}, ${e.location.longitude.toFixed(3)}, ${e.location.depth_km.toFixed(0)} km ± ${(e.location.uncertainty_km ?? 0).toFixed(1)} km`
      : "not located yet";
    const t0 = e.first_p_time_ns;
    const tEnd = Math.max(...e.versions.map((v) => v.decision_time_ns || t0), t0 + 1e9);
    const chips = e.versions.map((v) => {
      const x = ((v.decision_time_ns || t0) - t0) / (tEnd - t0);
      return `<span class="chip ${esc(v.type)}" data-version="${v.version}" data-x="${(6 + 88 * x).toFixed(1)}">v${v.version}</span>`;
    }).join("");
    const list = e.versions.map((v) => `<li data-version="${v.version}">v${v.version} ${esc(v.type)} +${(((v.decision_time_ns || t0) - t0) / 1e9).toFixed(1)} s after first P · ${v.stations} stations · p ${v.probability.toFixed(2)}${v.magnitude ? " · " + esc(v.magnitude.type) + " " + v.magnitude.value.toFixed(1) : ""}${v.location ? " · ±" + (v.location.uncertainty_km ?? 0).toFixed(0) + " km" : ""}${v.reason ? " · " + esc(v.reason) : ""}</li>`).join("");
    return `<div class="event ${e.type === "CANCEL" ? "cancel" : ""}" data-event-id="${esc(e.event_id)}">
      <div class="title">${esc(e.event_id)} · ${esc(e.type)} v${e.version}</div>
      <div class="mag">${fmtMag(e.magnitude)}</div>
      <div>${loc}</div>
      <div>origin ${isoMs(e.origin_time_ns / 1e6)} · p ${e.probability.toFixed(2)} · ${e.stations.length} stations: ${e.stations.map(esc).join(", ")}</div>
      <div class="timeline">${chips}</div>
      <ul class="versions">${list}</ul>
    </div>`;
  }).join("");
  for (const chip of box.querySelectorAll(".chip")) chip.style.left = chip.dataset.x + "%";
  for (const e of S.events) {
    for (const v of e.versions) {
      const key = e.event_id + ":" + v.version + ":listed";
      if (!(key in api.seen)) api.seen[key] = performance.now();
    }
  }
}

function renderHealth() {
  const h = S.health;
  if (!h) return;
  const broker = h.broker
    ? `<span class="${h.broker.reachable ? "ok" : "bad"}">${h.broker.reachable ? "reachable" : "UNREACHABLE"}</span> (${esc(h.broker.bootstrap)})`
    : "—";
  const lat = Object.entries(h.latency_s || {})
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v === null ? "—" : v.toFixed(3) + " s"}</td></tr>`).join("");
  const svc = (h.services || []).map((s) => {
    if (!s.up) return `<tr><td>${esc(s.service)}</td><td class="bad" colspan="2">down: ${esc(s.error || "")}</td></tr>`;
    const rej = Object.entries(s.rejected || {}).map(([k, v]) => `${esc(k)} ${v}`).join(", ") || "none";
    // in replay mode a data latency measures the archive's age, not the pipeline: not shown
    const lats = Object.entries(s.latency_s || {})
      .filter(([k, v]) => v !== null && !(S.config.replay && k.includes("data latency")))
      .map(([k, v]) => `${esc(k)} ${v.toFixed(2)} s`).join(", ");
    return `<tr><td>${esc(s.service)}</td><td>in ${s.packets_in}</td><td>rejected: ${rej}</td></tr>${lats ? `<tr><td></td><td colspan="2" class="muted">${lats}</td></tr>` : ""}`;
  }).join("");
  const backlog = (h.backlog || []).map((b) => `<tr><td>${esc(b.group)}</td><td>${esc(b.topic)}</td><td class="${b.records === null ? "bad" : ""}">${b.records === null ? "—" : b.records}${b.error ? ` <span class="muted">${esc(b.error)}</span>` : ""}</td></tr>`).join("");
  $("health").innerHTML = `
    <div>broker: ${broker}</div>
    <div>model provider: <b>${esc(h.provider || "unknown")}</b></div>
    <table><tr><th>stage (median, from messages)</th><th>lag</th></tr>${lat}</table>
    ${backlog ? `<table><tr><th>consumer group</th><th>topic</th><th>backlog (records)</th></tr>${backlog}</table>` : ""}
    ${svc ? `<table><tr><th>service</th><th>packets</th><th>rejected by reason</th></tr>${svc}</table>` : `<p class="muted">no service metrics configured (--metrics-urls)</p>`}`;
}

window.addEventListener("DOMContentLoaded", () => {
  setupInteraction();
  start().catch((err) => {
    $("conn").textContent = "error";
    console.warn("dashboard start failed", err);
  });
});
