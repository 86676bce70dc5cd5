// The map page: /api/map's binned density (or points, when few) drawn on a canvas; pan with a drag,
// zoom with the wheel, select with a box or a lasso (POST /api/map/select), hover a point for its
// thumbnail, and search hits (?q= or ?similar=) ringed. While a view moves, the last answer is redrawn
// under the new transform (no request per frame); the next answer comes once the view rests.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const canvas = labeler.byTestId("map-canvas");
  const ctx = canvas.getContext("2d");
  const hover = labeler.byTestId("map-hover");
  const status = labeler.byTestId("map-selection");
  const reviewLink = labeler.byTestId("map-review-link");
  const acceptLink = labeler.byTestId("map-accept-link");
  const searchLink = labeler.byTestId("map-search-link");
  const GREY = "#6b6b6b";
  let view = data.bounds.slice();  // x0, y0, x1, y1 in map units
  let answer = null;  // the latest /api/map answer
  let tile = null;  // bins drawn once into an offscreen canvas
  let highlights = [];
  let mode = "pan";
  let drag = null;
  let fetchTimer = null;
  let requestNumber = 0;
  window.labelerMap = {frames: 0, painted: false, view: () => view.slice(), answer: () => answer};

  function sizeCanvas() {
    const width = Math.max(300, Math.min(canvas.parentElement.clientWidth || 900, 1400));
    canvas.width = width;
    canvas.height = Math.round(width * 0.66);
  }

  function toScreen(x, y) {
    return [(x - view[0]) / (view[2] - view[0]) * canvas.width, (view[3] - y) / (view[3] - view[1]) * canvas.height];
  }

  function toMap(px, py) {
    return [view[0] + px / canvas.width * (view[2] - view[0]), view[3] - py / canvas.height * (view[3] - view[1])];
  }

  function colours() {
    const byValue = {};
    for (const entry of answer.legend) byValue[entry.value] = entry.colour;
    return byValue;
  }

  function rgb(hex) {
    return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
  }

  function makeTile() {
    if (answer.mode !== "bins") { tile = null; return; }
    const size = answer.size;
    const byValue = colours();
    const off = document.createElement("canvas");
    off.width = size; off.height = size;
    const octx = off.getContext("2d");
    const image = octx.createImageData(size, size);
    let most = 1;
    for (const c of answer.counts) if (c > most) most = c;
    const scale = Math.log1p(most);
    for (let row = 0; row < size; row++) {
      for (let col = 0; col < size; col++) {
        const cell = row * size + col;
        const count = answer.counts[cell];
        if (!count) continue;
        const colour = rgb(byValue[answer.values[cell]] || GREY);
        const at = ((size - 1 - row) * size + col) * 4;  // row 0 is the box's bottom
        image.data[at] = colour[0]; image.data[at + 1] = colour[1]; image.data[at + 2] = colour[2];
        image.data[at + 3] = Math.round(255 * (0.35 + 0.65 * Math.log1p(count) / scale));
      }
    }
    octx.putImageData(image, 0, 0);
    tile = off;
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (answer) {
      if (answer.mode === "bins" && tile) {
        const [left, top] = toScreen(answer.bbox[0], answer.bbox[3]);
        const [right, bottom] = toScreen(answer.bbox[2], answer.bbox[1]);
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(tile, left, top, right - left, bottom - top);
      } else if (answer.mode === "points") {
        const byValue = colours();
        for (let i = 0; i < answer.ids.length; i++) {
          const [px, py] = toScreen(answer.x[i], answer.y[i]);
          ctx.fillStyle = byValue[answer.values[i]] || GREY;
          ctx.fillRect(px - 2, py - 2, 5, 5);
        }
      }
    }
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#d00";
    for (const point of highlights) {
      const [px, py] = toScreen(point.x, point.y);
      ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke();
    }
    if (drag && drag.kind === "box") {
      ctx.strokeStyle = "#000"; ctx.setLineDash([4, 3]);
      ctx.strokeRect(drag.x0, drag.y0, drag.x - drag.x0, drag.y - drag.y0);
      ctx.setLineDash([]);
    } else if (drag && drag.kind === "lasso" && drag.path.length > 1) {
      ctx.strokeStyle = "#000"; ctx.beginPath();
      ctx.moveTo(drag.path[0][0], drag.path[0][1]);
      for (const [px, py] of drag.path) ctx.lineTo(px, py);
      ctx.closePath(); ctx.stroke();
    }
    window.labelerMap.frames++;
  }

  async function load() {
    const mine = ++requestNumber;
    const params = new URLSearchParams({bbox: view.join(","), colour: data.colour});
    if (data.group) params.set("group", data.group);
    try {
      const fresh = await labeler.api("GET", `${data.api}?${params}`);
      if (mine !== requestNumber) return;
      answer = fresh;
      makeTile();
      draw();
      window.labelerMap.painted = true;
      canvas.dataset.painted = answer.mode;
    } catch (error) {
      labeler.showError(error.message);
    }
  }

  function later() {
    clearTimeout(fetchTimer);
    fetchTimer = setTimeout(load, 120);
  }

  function setMode(next) {
    mode = next;
    for (const name of ["pan", "box", "lasso"]) {
      labeler.byTestId(`map-mode-${name}`).setAttribute("aria-pressed", String(name === mode));
    }
    canvas.style.cursor = mode === "pan" ? "grab" : "crosshair";
  }

  function position(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
  }

  async function select(body) {
    try {
      const done = await labeler.api("POST", data.select, {...body, group: data.group});
      status.textContent = `${done.count} images selected.`;
      reviewLink.href = done.review_url;
      reviewLink.textContent = `Review these ${done.count}`;
      acceptLink.href = done.accept_url;
      acceptLink.textContent = `Accept many of these ${done.count}${data.group ? ` (${data.group})` : ""}, with a preview`;
      searchLink.href = done.search_url;
      for (const link of [reviewLink, acceptLink, searchLink]) link.hidden = false;
    } catch (error) {
      status.textContent = "";
      for (const link of [reviewLink, acceptLink, searchLink]) link.hidden = true;
      labeler.showError(error.message);
    }
  }

  canvas.addEventListener("mousedown", (event) => {
    const [px, py] = position(event);
    drag = {kind: mode, x0: px, y0: py, x: px, y: py, view: view.slice(), path: [[px, py]]};
  });

  window.addEventListener("mousemove", (event) => {
    const [px, py] = position(event);
    if (!drag) { showHover(px, py); return; }
    drag.x = px; drag.y = py;
    if (drag.kind === "pan") {
      const dx = (px - drag.x0) / canvas.width * (drag.view[2] - drag.view[0]);
      const dy = (py - drag.y0) / canvas.height * (drag.view[3] - drag.view[1]);
      view = [drag.view[0] - dx, drag.view[1] + dy, drag.view[2] - dx, drag.view[3] + dy];
    } else if (drag.kind === "lasso") {
      drag.path.push([px, py]);
    }
    requestAnimationFrame(draw);
  });

  window.addEventListener("mouseup", () => {
    if (!drag) return;
    const done = drag;
    drag = null;
    if (done.kind === "pan") {
      if (done.x !== done.x0 || done.y !== done.y0) later();
    } else if (done.kind === "box") {
      const [x0, y0] = toMap(done.x0, done.y0);
      const [x1, y1] = toMap(done.x, done.y);
      if (x0 !== x1 && y0 !== y1) select({bbox: [x0, y0, x1, y1]});
    } else if (done.path.length >= 3) {
      select({polygon: done.path.map(([px, py]) => toMap(px, py))});
    }
    draw();
  });

  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [px, py] = position(event);
    const [mx, my] = toMap(px, py);
    const factor = event.deltaY > 0 ? 1.25 : 0.8;
    view = [mx - (mx - view[0]) * factor, my - (my - view[1]) * factor,
            mx + (view[2] - mx) * factor, my + (view[3] - my) * factor];
    requestAnimationFrame(draw);
    later();
  }, {passive: false});

  function showHover(px, py) {
    if (!answer || answer.mode !== "points") { hover.hidden = true; return; }
    let best = -1, bestDistance = 64;  // within 8 pixels
    for (let i = 0; i < answer.ids.length; i++) {
      const [qx, qy] = toScreen(answer.x[i], answer.y[i]);
      const d = (qx - px) ** 2 + (qy - py) ** 2;
      if (d < bestDistance) { bestDistance = d; best = i; }
    }
    if (best < 0) { hover.hidden = true; return; }
    const id = answer.ids[best];
    hover.src = data.thumb.replace(/\/0(?=[^0-9]|$)/, `/${id}`);
    hover.alt = `image ${id}`;
    hover.dataset.imageId = id;
    hover.style.left = `${Math.min(px + 12, canvas.width - 140)}px`;
    hover.style.top = `${Math.min(py + 12, canvas.height - 140)}px`;
    hover.hidden = false;
  }

  labeler.byTestId("map-mode-pan").addEventListener("click", () => setMode("pan"));
  labeler.byTestId("map-mode-box").addEventListener("click", () => setMode("box"));
  labeler.byTestId("map-mode-lasso").addEventListener("click", () => setMode("lasso"));
  labeler.byTestId("map-reset").addEventListener("click", () => { view = data.bounds.slice(); draw(); load(); });
  window.addEventListener("resize", () => { sizeCanvas(); draw(); });

  async function loadHighlights() {
    if (!data.q && !data.similar) return;
    const params = new URLSearchParams(data.q ? {q: data.q} : {similar: data.similar});
    params.set("k", "100");
    try {
      highlights = (await labeler.api("GET", `${data.highlight}?${params}`)).points;
      status.textContent = `${highlights.length} search results ringed in red.`;
      draw();
    } catch (error) {
      labeler.showError(error.message);
    }
  }

  sizeCanvas();
  setMode("pan");
  load();
  loadHighlights();
})();
