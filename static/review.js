// The review pages (the queue and an image's detail page): keyboard-driven decisions through the JSON API.
// The page hands its cards, options and the shortcut table's key bindings in #review-data (web/cards.py
// builds them; the same table renders the help); this script renders the cards and knows the actions
// the keys name, in `actions` below. Data from the server only ever enters the page as textContent.
"use strict";

(function () {
  const dataElement = document.getElementById("review-data");
  if (!dataElement) return;
  const page = JSON.parse(dataElement.textContent);
  const byTestId = labeler.byTestId;
  // The queue's grid, the detail page's rows, or the search results (each hit holds its label's card).
  const grid = byTestId("queue-grid") || byTestId("search-grid");
  const onQueue = Boolean(byTestId("queue-total"));
  const picker = buildPicker();
  let focusView = null;  // built when first opened: an image without a source would count as broken
  const byLabel = new Map();  // label id -> its card's data, as the server last sent it
  let current = 0;  // the keyboard cursor: index of the current card
  const COARSE = window.matchMedia("(pointer: coarse)");
  const NARROW = window.matchMedia("(max-width: 720px)");

  // --- URLs and names ---

  // The page's URLs name image 0; put the image id there.
  function imageUrl(template, imageId) {
    return template.replace(/\/0(\/|$)/, `/${imageId}$1`);
  }

  function shownValue(value) {
    return value === null ? "(none of these)" : value;
  }

  function score(x) {
    return x === null || x === undefined ? "–" : x.toFixed(2);
  }

  function keysOf(group) {
    return page.keys[group] || {};
  }

  function optionsOf(group) {
    return page.options[group] || [];
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- The shared correction picker and focus mode, built once (not sent with every page) ---

  function buildPicker() {
    const form = element("form", {"class": "correct-form", "data-testid": "correct-form", "hidden": "",
                                  "aria-label": "Correct a label"});
    const label = element("label", {"for": "correct-input"}, "Correct ");
    label.append(element("span", {"data-testid": "correct-name"}), " to");
    const buttons = element("span");
    buttons.append(element("button", {"type": "submit", "data-testid": "correct-submit"}, "Save"), " ",
                   element("button", {"type": "button", "data-testid": "correct-cancel"}, "Cancel"));
    form.append(label, element("input", {"id": "correct-input", "data-testid": "correct-input", "maxlength": "256",
                                         "autocomplete": "off", "placeholder": "type to filter, or a new value"}),
                element("select", {"data-testid": "correct-select", "size": "6", "aria-label": "options"}), buttons);
    document.querySelector("main").append(form);
    return form;
  }

  function buildFocus() {
    const section = element("section", {"class": "focus-mode", "data-testid": "focus", "role": "dialog",
                                        "aria-modal": "true", "aria-labelledby": "focus-name", "tabindex": "-1",
                                        "hidden": ""});
    const frame = element("div", {"class": "focus-view", "data-testid": "focus-view"});
    frame.append(element("img", {"data-testid": "focus-image", "alt": ""}));
    const side = element("div", {"class": "focus-side"});
    const proposal = element("p");
    proposal.append(element("b", {"data-testid": "focus-value"}), " ", element("span", {"data-testid": "focus-confidence"}),
                    " ", element("span", {"class": "badge", "data-testid": "focus-status"}));
    const zoomBar = element("p", {"class": "zoom"});
    zoomBar.append(element("button", {"type": "button", "data-testid": "zoom-out", "aria-label": "zoom out"}, "−"), " ",
                   element("button", {"type": "button", "data-testid": "zoom-reset", "aria-label": "fit the image"}, "fit"),
                   " ", element("button", {"type": "button", "data-testid": "zoom-in", "aria-label": "zoom in"}, "+"));
    side.append(element("h2", {"id": "focus-name", "data-testid": "focus-name"}), proposal,
                element("ol", {"class": "alts", "data-testid": "focus-alternatives", "aria-label": "next best options"}),
                element("div", {"class": "actions", "data-testid": "focus-actions"}),
                element("ul", {"class": "keys", "data-testid": "focus-options", "aria-label": "options and their keys"}),
                zoomBar, element("button", {"type": "button", "data-testid": "focus-close"}, "Close (Esc)"));
    section.append(frame, side);
    document.querySelector("main").append(section);
    section.addEventListener("click", onFocusClick);
    frame.addEventListener("wheel", onWheel, {passive: false});
    frame.addEventListener("pointerdown", onPointerDown);
    frame.addEventListener("pointermove", onPointerMove);
    frame.addEventListener("pointerup", onPointerUp);
    frame.addEventListener("pointercancel", () => { drag = null; });
    return section;
  }

  // --- Cards ---

  function cards() {
    return Array.from(grid.querySelectorAll('[data-testid="card"]'));
  }

  function currentCard() {
    return cards()[current] || null;
  }

  function dataOf(card) {
    return byLabel.get(Number(card.dataset.labelId));
  }

  // Each action's key as the page's table binds it (the user's own keys included), for the hints.
  const keyOf = {};
  for (const row of page.shortcuts) for (const [key, action] of Object.entries(row)) if (!(action in keyOf)) keyOf[action] = key;
  let arrived = 0;  // cards built so far: each card's place in the queue's order
  const BUTTONS = [["accept", "Accept"], ["correct", "Correct"], ["reject", "None"], ["skip", "Skip"]]
    .map(([action, text]) => [action, text, keyOf[action] || ""]);

  function buttonName(action, data) {
    const value = shownValue(data.value);
    return {accept: `accept ${value} for ${data.name}`, correct: `correct ${value} for ${data.name}`,
            reject: `none of these for ${data.name}`, skip: `skip ${data.name}`}[action];
  }

  function buildCard(sent) {
    const data = complete(sent);
    const card = element("article", {"class": "card", "tabindex": "0", "data-testid": "card", "data-order": String(arrived++)});
    const select = element("label", {"class": "select"});
    select.append(element("input", {"type": "checkbox", "data-testid": "select"}));
    const link = element("a", {"data-testid": "detail-link", "href": imageUrl(page.detail, data.image_id)});
    // The detail page shows its image once, large: its cards are rows without a thumbnail.
    if (onQueue) {
      link.append(element("img", {"src": imageUrl(page.thumb, data.image_id), "loading": "lazy", "width": "170",
                                  "height": "170"}));
    }
    const meta = element("div", {"class": "meta"});
    meta.append(element("span", {"data-testid": "confidence"}), element("span", {"class": "badge", "data-testid": "status"}),
                element("span", {"class": "predicted", "data-testid": "predicted"}),
                element("span", {"class": "flags", "data-testid": "card-flags"}));
    const actions = element("div", {"class": "actions"});
    for (const [action, text, key] of BUTTONS) {
      actions.append(element("button", {"type": "button", "data-action": action, "data-testid": action,
                                        "aria-keyshortcuts": key, "title": key}, text));
    }
    if (!onQueue) {
      link.textContent = data.group;
      const title = element("h3", {"class": "group"});
      title.append(link);
      card.append(title, select);
    } else {
      card.append(select, link);
    }
    card.append(element("div", {"class": "value", "data-testid": "value"}), element("div", {"class": "confidence-bar"}), meta,
                element("ol", {"class": "alts", "data-testid": "alternatives", "aria-label": "next best options"}), actions,
                element("p", {"class": "card-error", "data-testid": "card-error", "role": "alert", "hidden": ""}));
    render(card, data);
    return card;
  }

  // The model's next best options, each with its key: "2 saw 0.21". Each is a button: one click
  // (or tap) corrects to it, with no picker and no on-screen keyboard.
  function fillAlternatives(list, data) {
    const keys = keysOf(data.group);
    list.replaceChildren(...(data.others || []).map(([option, confidence]) => {
      const button = element("button", {"type": "button", "class": "alt", "data-option": option,
                                        "aria-label": `correct to ${option} for ${data.name}`}, `${option} ${score(confidence)}`);
      if (keys[option]) {
        button.prepend(element("kbd", {}, keys[option]), " ");
        button.setAttribute("aria-keyshortcuts", keys[option]);
      }
      const item = element("li");
      item.append(button);
      return item;
    }));
  }

  function correctTo(card, option) {
    aimed = true;
    try { decide(card, "correct", option); } finally { aimed = false; }
  }

  // A card's data as the server sends it leaves out the page's group, and the proposal when it is the value.
  function complete(data) {
    return Object.assign({group: page.group, predicted: data.value}, data);
  }

  function render(card, sent) {
    const data = complete(sent);
    byLabel.set(data.id, data);
    Object.assign(card.dataset, {labelId: data.id, version: data.version, imageId: data.image_id, group: data.group});
    card.className = card.className.replace(/\bstatus-\S+/g, "").trim() + ` status-${data.status}`;
    card.setAttribute("aria-label", `${data.name}: ${shownValue(data.value)}, ${data.status}`);
    byTestId("value", card).textContent = shownValue(data.value);
    byTestId("status", card).textContent = data.status;
    byTestId("confidence", card).textContent = score(data.confidence);
    const predicted = byTestId("predicted", card);
    predicted.textContent = data.predicted && data.predicted !== data.value ? `model: ${data.predicted}` : "";
    predicted.hidden = !predicted.textContent;
    const flagged = byTestId("card-flags", card);
    flagged.textContent = (data.flags || []).map((name) => `⚑ ${name}`).join(" ");
    flagged.hidden = !flagged.textContent;
    const thumb = card.querySelector("img");
    if (thumb) thumb.alt = `${data.name}, proposed ${shownValue(data.predicted)}`;
    if (onQueue) byTestId("detail-link", card).dataset.name = data.name;
    const bar = card.querySelector(".confidence-bar");
    if (bar) bar.style.setProperty("--confidence", String(data.confidence || 0));
    byTestId("select", card).setAttribute("aria-label", `select ${data.name}`);
    for (const [action] of BUTTONS) byTestId(action, card).setAttribute("aria-label", buttonName(action, data));
    fillAlternatives(byTestId("alternatives", card), data);
    if (focusOpen() && card === currentCard()) renderFocus();
  }

  function markCurrent(card) {
    cards().forEach((c) => c.classList.toggle("focused", c === card));
  }

  function focusCard(i) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    markCurrent(all[current]);
    if (focusOpen()) renderFocus();
    else all[current].focus();
    nearTheEnd();
  }

  function focusNext(card) {
    const all = cards();
    const i = all.indexOf(card);
    if (onQueue && i === all.length - 1) {
      if (page.next || loading) {  // past the last card until the next batch is in
        current = all.length;
        markCurrent(null);
        if (!loading) loadNextBatch();
        return;
      }
      labeler.showInfo("That was the last card of this queue.");
    }
    focusCard(i + 1);
  }

  function openDetail(card) {
    window.location.href = byTestId("detail-link", card).href;
  }

  async function refresh(card) {
    try {
      const label = await labeler.api("GET", `/api/labels/${card.dataset.labelId}`);
      changedElsewhere(card, Object.assign({}, dataOf(card), label));
    } catch (e) { /* the error banner already explains */ }
  }

  // --- A decision applies only to what the reviewer saw ---
  // A key captures the card's version and value when it is pressed, never when its request goes out.
  // A card that changed under the reviewer's eyes (a relabel, another reviewer) less than GRACE_MS
  // before the key was read before the change: the key is sent with the old state, the server
  // refuses it (409), and the card says what changed and waits for a fresh key. The cursor stays.

  const GRACE_MS = 1000;
  const before = new Map();  // label id -> {version, value, at}: the state a card showed before its latest change
  const moved = new Map();  // "id:version" -> {version, value}: where our own decision took the label

  // A click (or the correction form) aims at what the card shows now; a key often comes from a
  // reading made ahead, so within GRACE_MS of a change it counts as made on the state before.
  let aimed = false;

  function seenState(card) {
    const data = dataOf(card);
    const previous = before.get(data.id);
    if (!aimed && previous && Date.now() - previous.at < GRACE_MS) return {version: previous.version, value: previous.value};
    return {version: Number(card.dataset.version), value: data.value};
  }

  // What the key's state became through our own earlier decisions on the card (queued before it).
  function throughOwn(labelId, seen) {
    let state = seen;
    for (let next; (next = moved.get(`${labelId}:${state.version}`));) state = next;
    return state;
  }

  function changeNote(card, old, data) {
    const note = old.value !== data.value ? `proposal changed: ${shownValue(old.value)} → ${shownValue(data.value)}`
      : `changed: now ${data.status} ${shownValue(data.value)}`;
    const message = byTestId("card-error", card);
    message.textContent = note;
    message.hidden = false;
  }

  // Show the label's new state on its card, in place, and remember what the card showed before.
  function changedElsewhere(card, data) {
    const old = dataOf(card);
    if (old && Number(data.version) <= Number(card.dataset.version) && data.value === old.value) return;
    const previous = before.get(old.id);
    if (!previous || Date.now() - previous.at >= GRACE_MS) {
      before.set(old.id, {version: Number(card.dataset.version), value: old.value, at: Date.now()});
    } else {
      previous.at = Date.now();
    }
    render(card, data);
    card.classList.add("changed-elsewhere");
    changeNote(card, old, dataOf(card));
  }

  // --- Decisions: the UI moves on at once; the requests go out one after another, in order ---

  let queue = Promise.resolve();

  function enqueue(card, send) {
    card.classList.add("pending");
    queue = queue.then(send).finally(() => { card.classList.remove("pending"); });
  }

  function failed(card, e, seen) {
    labeler.showError(e.message);
    if (e.status === 409 && e.data && e.data.card) {
      // The answer carries the label's new state: show it on the card, which waits for a fresh key.
      const old = Object.assign({}, dataOf(card), {value: seen.value});
      if (Number(e.data.card.version) >= Number(card.dataset.version)) {
        before.set(Number(card.dataset.labelId), {version: seen.version, value: seen.value, at: Date.now()});
        render(card, Object.assign({}, dataOf(card), e.data.card));
      }
      changeNote(card, old, dataOf(card));
    } else {
      const message = byTestId("card-error", card);
      message.textContent = e.message;
      message.hidden = false;
      if (e.status === 409) refresh(card);
    }
    card.classList.add("failed");
  }

  function succeeded(card, result, sent) {
    if (sent && result.card.version !== sent.version) {
      moved.set(`${result.card.id}:${sent.version}`, {version: result.card.version, value: result.card.value});
    }
    render(card, result.card);
    card.classList.remove("failed", "changed-elsewhere");
    byTestId("card-error", card).hidden = true;
    if (result.progress) showProgress(result.progress);
    labeler.showError("");
  }

  function decide(card, action, value) {
    if (!card) return;
    const pressed = seenState(card);
    const labelId = Number(card.dataset.labelId);
    enqueue(card, async () => {
      const seen = throughOwn(labelId, pressed);
      const body = {action, version: seen.version, seen_value: seen.value, queue_value: page.value || null};
      if (value !== undefined) body.value = value;
      try {
        succeeded(card, await labeler.api("POST", `/api/labels/${labelId}/review`, body), seen);
      } catch (e) { failed(card, e, seen); }
    });
    focusNext(card);
  }

  // --- Cards changed elsewhere: the page asks every few seconds and refreshes them in place ---

  const POLL_MS = 2000;
  let polling = false;

  async function poll() {
    if (polling || document.hidden) return;
    const shown = cards();
    if (!shown.length) return;
    polling = true;
    try {
      const ids = shown.map((c) => c.dataset.labelId).slice(0, 500);
      const answer = await labeler.api("GET", `/api/review/cards?ids=${ids.join(",")}`);
      const byId = new Map(answer.cards.map((c) => [c.id, c]));
      for (const card of cards()) {
        const now = byId.get(Number(card.dataset.labelId));
        if (now && Number(now.version) > Number(card.dataset.version)) {
          changedElsewhere(card, Object.assign({}, dataOf(card), now));
        }
      }
    } catch (e) { /* the next poll tries again */ } finally { polling = false; }
  }

  // Undo the reviewer's newest decision, wherever it was made; its card comes back under the cursor.
  function undoLast() {
    const anchor = currentCard() || grid;
    queue = queue.then(async () => {
      try {
        const result = await labeler.api("POST", "/api/review/undo", {queue_value: page.value || null});
        if (result.bulk) { undoneBulk(result); return; }
        let card = grid.querySelector(`[data-testid="card"][data-label-id="${result.card.id}"]`);
        if (!card) {
          card = buildCard(result.card);
          if (anchor === grid) grid.append(card); else grid.insertBefore(card, anchor);
        }
        succeeded(card, result);
        focusCard(cards().indexOf(card));
      } catch (e) {
        labeler.showError(e.message);
      }
    });
  }

  // --- A bulk accept is one event: its note (from the server's record, so a reload keeps it) and its undo ---

  function showBulk(bulk) {
    const note = byTestId("bulk-note");
    if (!note || !bulk) return;
    byTestId("bulk-message", note).textContent = bulk.message;
    const undo = byTestId("bulk-undo", note);
    undo.dataset.bulkId = bulk.id;
    undo.hidden = Boolean(bulk.undone_at);
    note.hidden = false;
  }

  // The undo's answer: the restored labels' cards (those this page shows), the changed ones refreshed.
  function undoneBulk(result) {
    const restored = new Map(result.cards.map((c) => [c.id, c]));
    const kept = new Set(result.kept.map((k) => k.id));
    for (const card of cards()) {
      const id = Number(card.dataset.labelId);
      if (restored.has(id)) succeeded(card, {card: Object.assign({}, dataOf(card), restored.get(id))});
      else if (kept.has(id)) refresh(card);
    }
    showBulk(result.bulk);
    labeler.showInfo(result.bulk.message);
    if (result.progress) showProgress(result.progress);
  }

  function undoBulk(bulkId) {
    queue = queue.then(async () => {
      try {
        undoneBulk(await labeler.api("POST", "/api/review/undo", {bulk_id: Number(bulkId), queue_value: page.value || null}));
      } catch (e) { labeler.showError(e.message); }
      focusCard(current);
    });
  }

  // --- History: your last decisions (a bulk accept as one), each undoable while no one changed it since ---

  let historyView = null;

  function historyOpen() {
    return historyView && !historyView.hidden;
  }

  function buildHistory() {
    const aside = element("aside", {"class": "history-panel", "data-testid": "history", "id": "history",
                                    "aria-labelledby": "history-title", "hidden": ""});
    const head = element("div", {"class": "history-head"});
    head.append(element("h2", {"id": "history-title"}, "Your last decisions"),
                element("button", {"type": "button", "data-testid": "history-close"}, "Close (Esc)"));
    aside.append(head, element("ol", {"class": "history-list", "data-testid": "history-list"}));
    document.querySelector("main").append(aside);
    aside.addEventListener("click", onHistoryClick);
    aside.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); closeHistory(); }
    });
    return aside;
  }

  const DID = {accept: "accepted", correct: "corrected to", reject: "rejected"};

  function historyRow(entry) {
    const item = element("li", {"data-testid": "history-row", "data-kind": entry.kind});
    const when = element("time", {"datetime": entry.at}, new Date(`${entry.at}Z`).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}));
    let what;
    if (entry.kind === "bulk") {
      what = entry.bulk.message;
      item.dataset.bulkId = entry.bulk.id;
    } else {
      what = `${entry.name} (${entry.group}): ${DID[entry.action]} ${shownValue(entry.after)}`;
      Object.assign(item.dataset, {eventId: entry.event_id, version: entry.version, labelId: entry.label_id});
    }
    item.append(when, " ", element("span", {"data-testid": "history-what"}, what), " ");
    if (entry.undoable) {
      item.append(element("button", {"type": "button", "data-testid": "history-undo", "aria-label": `undo: ${what}`}, "Undo"));
    } else {
      item.append(element("span", {"class": "why", "data-testid": "history-why"}, `Can't undo: ${entry.why}`));
    }
    return item;
  }

  async function loadHistory() {
    try {
      const answer = await labeler.api("GET", "/api/review/history");
      const list = byTestId("history-list", historyView);
      list.replaceChildren(...answer.decisions.map(historyRow));
      if (!answer.decisions.length) list.append(element("li", {}, "No decisions yet."));
    } catch (e) { labeler.showError(e.message); }
  }

  async function openHistory() {
    historyView = historyView || buildHistory();
    historyView.hidden = false;
    byTestId("history-toggle").setAttribute("aria-expanded", "true");
    await loadHistory();
    const first = byTestId("history-undo", historyView) || byTestId("history-close", historyView);
    first.focus();
  }

  function closeHistory() {
    if (!historyOpen()) return;
    historyView.hidden = true;
    byTestId("history-toggle").setAttribute("aria-expanded", "false");
    focusCard(current);
  }

  function toggleHistory() {
    if (historyOpen()) closeHistory(); else openHistory();
  }

  // One undo from the list: the server checks that the label is still as the decision left it.
  function onHistoryClick(event) {
    if (event.target.closest('[data-testid="history-close"]')) { closeHistory(); return; }
    const button = event.target.closest('[data-testid="history-undo"]');
    if (!button) return;
    const row = button.closest('[data-testid="history-row"]');
    const body = row.dataset.bulkId ? {bulk_id: Number(row.dataset.bulkId)}
      : {event_id: Number(row.dataset.eventId), version: Number(row.dataset.version)};
    body.queue_value = page.value || null;
    queue = queue.then(async () => {
      try {
        const result = await labeler.api("POST", "/api/review/undo", body);
        if (result.bulk) undoneBulk(result);
        else {
          const card = grid.querySelector(`[data-testid="card"][data-label-id="${result.card.id}"]`);
          if (card) succeeded(card, result); else if (result.progress) showProgress(result.progress);
          labeler.showInfo(`Undone: ${result.card.name} is ${result.card.status} ${shownValue(result.card.value)} again.`);
        }
      } catch (e) { labeler.showError(e.message); }
      await loadHistory();
      (byTestId("history-undo", historyView) || byTestId("history-close", historyView)).focus();
    });
  }

  // --- Grouping by proposed value: the page's cards sorted into one run per value, each under a
  // heading with its count; a value only one card has (on a page of several values) is the odd one
  // out, and its heading and card stand out. The cursor stays on its card. ---

  function grouped() {
    const box = byTestId("group-by-value");
    return Boolean(box && box.checked);
  }

  function regroup() {
    const keep = currentCard();
    grid.querySelectorAll('[data-testid="value-group"]').forEach((h) => h.remove());
    const all = cards();
    all.forEach((c) => c.classList.remove("odd-one-out"));
    if (grouped()) {
      const runs = new Map();
      for (const card of all) {
        const value = shownValue(dataOf(card).predicted === undefined ? dataOf(card).value : dataOf(card).predicted);
        if (!runs.has(value)) runs.set(value, []);
        runs.get(value).push(card);
      }
      const odd = runs.size > 1 && all.length > 2;
      const order = [...runs.entries()].sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0]));
      for (const [value, members] of order) {
        const alone = odd && members.length === 1;
        const heading = element("h2", {"class": `value-group${alone ? " odd-one-out" : ""}`, "data-testid": "value-group",
                                       "data-value": value}, `${value} · ${members.length}${alone ? " (the odd one out)" : ""}`);
        grid.append(heading, ...members);
        if (alone) members[0].classList.add("odd-one-out");
      }
    } else {
      all.sort((a, b) => Number(a.dataset.order) - Number(b.dataset.order)).forEach((c) => grid.append(c));
    }
    current = Math.max(0, cards().indexOf(keep));
    markCurrent(keep);
  }

  function toggleGrouping() {
    const box = byTestId("group-by-value");
    if (!box) return false;
    box.checked = !box.checked;
    onGroupingChange();
    return true;
  }

  function onGroupingChange() {
    sessionStorage.setItem("review-group-by-value", grouped() ? "on" : "off");
    regroup();
    focusCard(current);
  }

  // --- Progress ---

  function showProgress(progress) {
    const line = byTestId("progress");
    if (!line || !progress) return;
    // an undo reaches back to any group: its counts are not this queue's, so ask for this queue's
    if (page.group && progress.group && progress.group !== page.group) { loadProgress(); return; }
    byTestId("progress-reviewed", line).textContent = progress.reviewed;
    byTestId("progress-remaining", line).textContent = progress.remaining;
    byTestId("progress-rate", line).textContent = progress.per_minute;
    // The session summary's estimate: what is left at this session's pace.
    const eta = byTestId("progress-eta", line);
    if (eta) {
      const minutes = progress.per_minute > 0 ? progress.remaining / progress.per_minute : null;
      eta.textContent = minutes === null ? "" : ` · about ${minutes < 1 ? "<1 min" : minutes < 90 ?
        `${Math.round(minutes)} min` : `${(minutes / 60).toFixed(1)} h`} left at this pace`;
    }
    line.hidden = false;
  }

  // --- Paging: the next batch loads in place as the cursor nears the last card, so no key waits ---

  const PREFETCH = 8;  // cards before the end; at 10 keys/s that leaves 0.8 s for the request
  let loading = null;

  function nearTheEnd() {
    if (onQueue && page.next && !loading && current >= cards().length - PREFETCH) loadNextBatch();
  }

  function loadNextBatch() {
    const query = page.next.slice(page.next.indexOf("?"));
    loading = labeler.api("GET", `/api/review/queue${query}`).then((batch) => {
      (batch.claimed || []).forEach((id) => claimed.add(id));
      if (batch.claimed_at) claimedAt = batch.claimed_at;
      const waiting = current >= cards().length;
      grid.append(...batch.cards.map(buildCard));
      if (grouped()) regroup();
      page.next = batch.next;
      const link = byTestId("next-page");
      if (link && batch.next) link.href = batch.next; else if (link) link.remove();
      loading = null;
      if (waiting) focusCard(current);
    }).catch((e) => { loading = null; labeler.showError(e.message); });
  }

  function nextPage() {
    const link = byTestId("next-page");
    if (link) window.location.href = link.href;
  }

  function previousPage() {
    const link = byTestId("prev-page");
    if (link) window.location.href = link.href;
  }

  // --- Leases: the cards this tab's queue claimed go back to the team when the tab goes ---

  const claimed = new Set(page.claimed || []);
  let claimedAt = page.claimed_at || null;  // this page's newest claim: a release stops there

  // A beacon outlives the page (a fetch would be cancelled with it); it cannot set headers, so
  // the CSRF token travels as a form field. It names this page's claim time: the page that replaces
  // this one (the next page, a reload) claimed its cards before this one unloads, and keeps them.
  function releaseClaim(event) {
    if (!onQueue || !claimed.size || !navigator.sendBeacon) return;
    const form = new FormData();
    form.append("csrf_token", labeler.csrf());
    form.append("ids", [...claimed].join(","));
    if (claimedAt) form.append("claimed_at", claimedAt);
    if (navigator.sendBeacon("/api/review/release", form)) claimed.clear();
    if (event.persisted) reclaimOnReturn = true;
  }

  let reclaimOnReturn = false;
  function onPageShow(event) {
    // back from the browser's page cache with the claim given up: load the queue again to claim it anew
    if (event.persisted && reclaimOnReturn) window.location.reload();
  }

  // --- The correction picker: one form, moved to the card (or focus mode) it corrects ---

  let correcting = null;

  function fillPicker(group, filter) {
    const select = byTestId("correct-select", picker);
    const keys = keysOf(group);
    const wanted = filter.trim().toLowerCase();
    select.replaceChildren(...optionsOf(group).filter((o) => o.toLowerCase().includes(wanted))
      .map((o) => element("option", {"value": o}, keys[o] ? `${keys[o]} ${o}` : o)));
    select.selectedIndex = wanted && select.options.length ? 0 : -1;
  }

  function openCorrect(card) {
    correcting = card;
    const data = dataOf(card);
    if (focusOpen()) byTestId("focus-actions", focusView).after(picker); else card.append(picker);
    byTestId("correct-name", picker).textContent = `${shownValue(data.value)} for ${data.name}`;
    byTestId("correct-input", picker).value = "";
    fillPicker(data.group, "");
    picker.hidden = false;
    // On a touch screen the option list takes the focus, so no on-screen keyboard opens until
    // the reviewer taps the field to type a new value.
    byTestId(COARSE.matches ? "correct-select" : "correct-input", picker).focus();
  }

  function closeCorrect() {
    picker.hidden = true;
    if (focusOpen()) focusView.focus(); else focusCard(current);
    correcting = null;
  }

  // The typed text when it is an option or nothing matches it; else the highlighted match.
  function pickedValue() {
    const typed = byTestId("correct-input", picker).value.trim();
    const select = byTestId("correct-select", picker);
    const exact = optionsOf(correcting.dataset.group).find((o) => o === typed);
    if (exact) return exact;
    if (select.selectedIndex >= 0) return select.value;
    return typed;
  }

  function submitCorrect(event) {
    event.preventDefault();
    if (!correcting) return;
    const card = correcting;
    const value = pickedValue();
    if (!value) { labeler.showError("Pick an option or type a value."); return; }
    picker.hidden = true;
    correcting = null;
    aimed = true;
    try { decide(card, "correct", value); } finally { aimed = false; }
  }

  function onPickerKeydown(event) {
    const select = byTestId("correct-select", picker);
    if (event.key === "Escape") { event.preventDefault(); closeCorrect(); return; }
    if (event.target === select && event.key === "Enter") { submitCorrect(event); return; }
    if (event.target.matches('[data-testid="correct-input"]') && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      select.selectedIndex = Math.max(0, Math.min(select.options.length - 1, select.selectedIndex + step));
    }
  }

  function correctToOption(card, key) {
    const keys = keysOf(card.dataset.group);
    const option = Object.keys(keys).find((o) => keys[o] === key);
    if (option !== undefined) decide(card, "correct", option);
    else labeler.showError(`No option of ${card.dataset.group} has the key ${key}.`);
  }

  // --- Focus mode: one image, large and uncropped, with zoom and pan ---

  const view = {scale: 1, x: 0, y: 0};

  function focusOpen() {
    return focusView && !focusView.hidden;
  }

  function applyZoom() {
    byTestId("focus-image", focusView).style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
  }

  function zoom(factor) {
    view.scale = Math.max(1, Math.min(12, view.scale * factor));
    if (view.scale === 1) { view.x = 0; view.y = 0; }
    applyZoom();
  }

  function pan(dx, dy) {
    view.x += dx;
    view.y += dy;
    applyZoom();
  }

  function resetZoom() {
    Object.assign(view, {scale: 1, x: 0, y: 0});
    applyZoom();
  }

  function renderFocus() {
    const card = currentCard();
    if (!card) return;
    const data = dataOf(card);
    const image = byTestId("focus-image", focusView);
    if (image.dataset.imageId !== String(data.image_id)) {
      resetZoom();
      image.dataset.imageId = data.image_id;
      image.src = imageUrl(page.full, data.image_id);
    }
    image.alt = `${data.name}, proposed ${shownValue(data.predicted)}`;
    byTestId("focus-name", focusView).textContent = onQueue ? data.name : `${data.group} of ${data.name}`;
    byTestId("focus-value", focusView).textContent = shownValue(data.value);
    byTestId("focus-confidence", focusView).textContent = score(data.confidence);
    byTestId("focus-status", focusView).textContent = data.status;
    fillAlternatives(byTestId("focus-alternatives", focusView), data);
    const actions = byTestId("focus-actions", focusView);
    actions.replaceChildren(...BUTTONS.map(([action, text, key]) => element(
      "button", {"type": "button", "data-action": action, "aria-label": buttonName(action, data),
                 "aria-keyshortcuts": key}, `${text} (${key})`)));
    const keys = keysOf(data.group);
    byTestId("focus-options", focusView).replaceChildren(...optionsOf(data.group).map((o) => {
      const button = element("button", {"type": "button", "class": "alt", "data-option": o,
                                        "aria-label": `correct to ${o}`}, ` ${o}`);
      button.prepend(element("kbd", {}, keys[o] || keyOf.correct || ""));
      const item = element("li");
      item.append(button);
      return item;
    }));
    markCurrent(card);
  }

  // Focus mode is a modal dialog: Tab cycles inside it, and closing it gives the focus back to the
  // card it came from (or, after moving on inside it, to the card it last showed).
  let focusOrigin = null;

  function focusables(dialog) {
    return Array.from(dialog.querySelectorAll("button, a[href], input, select, textarea"))
      .filter((node) => !node.disabled && node.getClientRects().length);
  }

  function trapTab(event, dialog = focusView) {
    const inside = focusables(dialog);
    event.preventDefault();
    if (!inside.length) { dialog.focus(); return; }
    const at = inside.indexOf(document.activeElement);
    const step = event.shiftKey ? -1 : 1;
    const next = at === -1 ? (event.shiftKey ? inside.length - 1 : 0) : (at + step + inside.length) % inside.length;
    inside[next].focus();
  }

  // Focus mode stays on across pages (the next batch) until it is closed.
  function openFocus() {
    if (!currentCard()) return;
    focusOrigin = currentCard();
    focusView = focusView || buildFocus();
    sessionStorage.setItem("review-focus-mode", "on");
    focusView.hidden = false;
    document.body.classList.add("focus-open");
    renderFocus();
    focusView.focus();
  }

  function closeFocus() {
    if (!focusOpen()) return;
    sessionStorage.removeItem("review-focus-mode");
    focusView.hidden = true;
    document.body.classList.remove("focus-open");
    const origin = focusOrigin;
    focusOrigin = null;
    const all = cards();
    const shown = all[current];
    if (origin && origin.isConnected && (!shown || shown === origin)) focusCard(all.indexOf(origin));
    else focusCard(current);
  }

  function onFocusClick(event) {
    const button = event.target.closest("button");
    if (!button) return;
    const testId = button.dataset.testid;
    if (testId === "focus-close") closeFocus();
    else if (testId === "zoom-in") zoom(1.25);
    else if (testId === "zoom-out") zoom(0.8);
    else if (testId === "zoom-reset") resetZoom();
    else if (button.dataset.action) clicked(button.dataset.action, currentCard());
    else if (button.dataset.option !== undefined && currentCard()) correctTo(currentCard(), button.dataset.option);
    if (testId && testId.startsWith("zoom-")) focusView.focus();  // the keys keep working after a click
  }

  function onWheel(event) {
    event.preventDefault();
    zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15);
  }

  let drag = null;

  function onPointerDown(event) {
    drag = {x: event.clientX - view.x, y: event.clientY - view.y, startX: event.clientX, startY: event.clientY,
            at: event.timeStamp, scale: view.scale};
    event.currentTarget.setPointerCapture(event.pointerId);
  }

  // A swipe across the unzoomed image: to the left skips the card, to the right goes back one.
  // A zoomed image pans instead, and a slow or mostly vertical drag is no swipe.
  const SWIPE_PX = 60;
  const SWIPE_MS = 700;

  function onPointerUp(event) {
    const start = drag;
    drag = null;
    if (!start || start.scale !== 1) return;
    resetZoom();  // unzoomed, a drag only moved the image with the finger: put it back
    const dx = event.clientX - start.startX;
    const dy = event.clientY - start.startY;
    if (Math.abs(dx) < SWIPE_PX || Math.abs(dx) < 2 * Math.abs(dy) || event.timeStamp - start.at > SWIPE_MS) return;
    if (dx < 0) actions.skip(currentCard());
    else actions.previous();
  }

  function onPointerMove(event) {
    if (!drag) return;
    view.x = event.clientX - drag.x;
    view.y = event.clientY - drag.y;
    applyZoom();
  }

  // --- Selection and bulk accepts (queue only) ---

  function selectedCards() {
    return cards().filter((c) => byTestId("select", c).checked);
  }

  function updateSelectedCount() {
    const count = byTestId("selected-count");
    if (count) count.textContent = selectedCards().length;
  }

  function toggleSelect(card) {
    const box = byTestId("select", card);
    box.checked = !box.checked;
    anchor = card;
    updateSelectedCount();
  }

  // Range select: Shift+J / Shift+K select the current card and move on, extending the range;
  // Shift+click selects every card between the last one clicked or toggled and this one.
  let anchor = null;

  function selectAndMove(card, step) {
    byTestId("select", card).checked = true;
    anchor = card;
    updateSelectedCount();
    focusCard(current + step);
    const next = currentCard();
    if (next) byTestId("select", next).checked = true;
    updateSelectedCount();
  }

  function selectRange(from, to) {
    const all = cards();
    const [a, b] = [all.indexOf(from), all.indexOf(to)].sort((x, y) => x - y);
    if (a < 0) return;
    for (const card of all.slice(a, b + 1)) byTestId("select", card).checked = true;
    updateSelectedCount();
  }

  function selectAll() {
    const all = cards();
    const every = all.every((c) => byTestId("select", c).checked);
    for (const card of all) byTestId("select", card).checked = !every;
    updateSelectedCount();
  }

  function invertSelection() {
    for (const card of cards()) {
      const box = byTestId("select", card);
      box.checked = !box.checked;
    }
    updateSelectedCount();
  }

  async function acceptSelected() {
    const chosen = selectedCards();
    if (!chosen.length) { labeler.showError("Select images first (x, or the checkboxes)."); return; }
    const body = {labels: chosen.map((c) => {
      const seen = seenState(c);
      return {id: Number(c.dataset.labelId), version: seen.version, seen_value: seen.value};
    })};
    let result;
    try {
      result = await labeler.api("POST", "/api/labels/accept-selected", body);
    } catch (e) {
      if (!e.data || !e.data.conflicts) { labeler.showError(e.message); return; }
      result = e.data;
    }
    const byId = new Map(chosen.map((c) => [Number(c.dataset.labelId), c]));
    for (const label of result.accepted || []) {
      const card = byId.get(label.id);
      render(card, Object.assign({}, dataOf(card), label));
      byTestId("select", card).checked = false;
    }
    for (const conflict of result.conflicts || []) refresh(byId.get(conflict.id));
    updateSelectedCount();
    showBulk(result.bulk);
    if (result.conflicts && result.conflicts.length) {
      labeler.showError(result.conflicts.map((c) => c.message).join(" "));
    } else {
      labeler.showInfo(`Accepted ${result.accepted.length}.`);
    }
    loadProgress();
  }

  function thresholdQuery() {
    const threshold = byTestId("threshold").value;
    const params = new URLSearchParams({group: page.group || "", threshold});
    if (page.value) params.set("value", page.value);
    if (page.selection) params.set("selection", page.selection);
    return {params, threshold: Number(threshold)};
  }

  async function previewThreshold() {
    const {params} = thresholdQuery();
    try {
      const result = await labeler.api("GET", `/api/labels/accept-above?${params}`);
      byTestId("threshold-count").textContent =
        `${result.count} proposed label${result.count === 1 ? "" : "s"} would be accepted.`;
      byTestId("threshold-accept").disabled = result.count === 0;
    } catch (e) { labeler.showError(e.message); }
  }

  // A changed threshold needs a new preview before anything is accepted.
  function forgetThresholdPreview() {
    byTestId("threshold-accept").disabled = true;
    byTestId("threshold-count").textContent = "";
  }

  async function acceptThreshold() {
    const {threshold} = thresholdQuery();
    try {
      const result = await labeler.api("POST", "/api/labels/accept-above",
                                       {group: page.group, threshold, value: page.value, selection: page.selection});
      labeler.showInfo(`Accepted ${result.accepted}.`);
      window.location.reload();
    } catch (e) { labeler.showError(e.message); }
  }

  // --- Accept all above a threshold, by keyboard (Shift+T): a dialog previews exactly the labels
  // it will accept (ids and versions from the server), and its primary button, focused, accepts
  // those and no others (a label changed since the preview is reported, not accepted). ---

  let aboveView = null;
  let aboveReturn = null;
  let previewed = [];

  function buildAbove() {
    const section = element("section", {"class": "above-dialog", "data-testid": "above-dialog", "role": "dialog",
                                        "aria-modal": "true", "aria-labelledby": "above-title", "hidden": ""});
    const head = element("div", {"class": "above-head"});
    const label = element("label", {}, "Confidence ≥ ");
    label.append(element("input", {"type": "number", "min": "0", "max": "1", "step": "0.01",
                                   "data-testid": "above-threshold"}));
    head.append(element("h2", {"id": "above-title", "data-testid": "above-title"}), label,
                element("button", {"type": "button", "data-testid": "above-sample"}, "Another 20 at random"),
                element("button", {"type": "button", "data-testid": "above-all"}, "The first by id"),
                element("button", {"type": "button", "class": "primary", "data-testid": "above-confirm"}, "Accept"),
                element("button", {"type": "button", "data-testid": "above-cancel"}, "Cancel (Esc)"));
    section.append(head, element("p", {"class": "hint", "data-testid": "above-note", "aria-live": "polite"}),
                   element("div", {"class": "above-grid", "data-testid": "above-grid"}));
    document.querySelector("main").append(section);
    byTestId("above-threshold", section).addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); loadAbove(); }
    });
    byTestId("above-sample", section).addEventListener("click", showSample);
    byTestId("above-all", section).addEventListener("click", () => showAbove(previewed.cards, false));
    byTestId("above-confirm", section).addEventListener("click", confirmAbove);
    byTestId("above-cancel", section).addEventListener("click", closeAbove);
    return section;
  }

  function sample(items, n) {
    const copy = items.slice();
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [copy[i], copy[j]] = [copy[j], copy[i]];
    }
    return copy.slice(0, n);
  }

  function aboveOpen() {
    return aboveView && !aboveView.hidden;
  }

  function openAbove() {
    if (!onQueue || !page.group) return false;
    aboveView = aboveView || buildAbove();
    aboveReturn = currentCard();
    byTestId("above-threshold", aboveView).value = byTestId("threshold").value;
    aboveView.hidden = false;
    loadAbove();
    return true;
  }

  function closeAbove() {
    if (!aboveOpen()) return;
    aboveView.hidden = true;
    if (aboveReturn && aboveReturn.isConnected) focusCard(cards().indexOf(aboveReturn)); else focusCard(current);
  }

  async function loadAbove() {
    const threshold = byTestId("above-threshold", aboveView).value;
    byTestId("threshold").value = threshold;
    const params = new URLSearchParams({group: page.group, threshold, list: "1"});
    if (page.value) params.set("value", page.value);
    if (page.selection) params.set("selection", page.selection);
    const confirm = byTestId("above-confirm", aboveView);
    confirm.disabled = true;
    try {
      previewed = await labeler.api("GET", `/api/labels/accept-above?${params}`);
    } catch (e) { labeler.showError(e.message); return; }
    await showSample();
    confirm.disabled = previewed.labels.length === 0;
    confirm.focus();
    if (confirm.disabled) byTestId("above-threshold", aboveView).focus();
  }

  // 20 of every label the accept would take, drawn at random: what the preview shows first.
  async function showSample() {
    const ids = sample(previewed.labels, 20).map((l) => l.id);
    let drawn = [];
    if (ids.length) {
      try {
        drawn = (await labeler.api("GET", `/api/review/cards?ids=${ids.join(",")}`)).cards;
      } catch (e) { labeler.showError(e.message); }
    }
    showAbove(drawn, true);
  }

  function showAbove(shown, random) {
    const n = previewed.labels.length;
    byTestId("above-title", aboveView).textContent =
      `Accept ${n} proposed ${page.group}${page.value ? ` = ${page.value}` : ""} label${n === 1 ? "" : "s"}` +
      (page.selection ? " in the map selection" : "");
    byTestId("above-confirm", aboveView).textContent = `Accept these ${n} (Enter)`;
    const more = previewed.count > n ? ` Only the first ${n} of ${previewed.count}; the rest take another round.` : "";
    byTestId("above-note", aboveView).textContent = (random ? `${shown.length} of them at random.` :
      `The first ${shown.length} of them, by id.`) + more;
    byTestId("above-grid", aboveView).replaceChildren(...shown.map((c) => {
      const item = element("figure", {"data-testid": "above-card", "data-label-id": c.id});
      item.append(element("img", {"src": imageUrl(page.thumb, c.image_id), "alt": `${c.name}: ${shownValue(c.value)}`,
                                  "width": "96", "height": "96"}),
                  element("figcaption", {}, `${shownValue(c.value)} ${score(c.confidence)}`));
      return item;
    }));
  }

  async function confirmAbove() {
    const chosen = previewed.labels;
    if (!chosen.length) return;
    let result;
    try {
      result = await labeler.api("POST", "/api/labels/accept-selected", {labels: chosen, threshold: previewed.threshold});
    } catch (e) {
      if (!e.data || !e.data.conflicts) { labeler.showError(e.message); return; }
      result = e.data;
    }
    showBulk(result.bulk);
    const accepted = new Map((result.accepted || []).map((label) => [label.id, label]));
    for (const card of cards()) {
      const label = accepted.get(Number(card.dataset.labelId));
      if (label) render(card, Object.assign({}, dataOf(card), label));
    }
    const conflicts = (result.conflicts || []).length;
    labeler.showInfo(`Accepted ${accepted.size} above ${byTestId("threshold").value}` +
                     (conflicts ? `; ${conflicts} changed since the preview and were left as they are.` : "."));
    closeAbove();
    loadProgress();
  }

  async function loadProgress() {
    if (!page.group) return;
    const params = new URLSearchParams({group: page.group});
    if (page.value) params.set("value", page.value);
    try { showProgress(await labeler.api("GET", `/api/review/progress?${params}`)); } catch (e) { /* shown next time */ }
  }

  // --- Flags: a key flags the card's label (ambiguous) or its image (bad image) ---

  async function flag(card, name, onImage) {
    const data = dataOf(card);
    const body = onImage ? {image_id: data.image_id, name} : {label_id: data.id, name};
    try {
      await labeler.api("POST", "/api/flags", body);
      // every card of that image shows an image flag
      for (const other of cards()) {
        const otherData = dataOf(other);
        if (other === card || (onImage && otherData.image_id === data.image_id)) {
          render(other, Object.assign({}, otherData, {flags: Array.from(new Set([...(otherData.flags || []), name])).sort()}));
        }
      }
      labeler.showInfo(`Flagged ${data.name}: ${name}.`);
    } catch (e) { labeler.showError(e.message); }
  }

  // --- Keyboard shortcuts ---

  function toggleHelp() {
    const help = byTestId("shortcuts");
    help.hidden = !help.hidden;
    byTestId("help-toggle").setAttribute("aria-expanded", String(!help.hidden));
  }

  // What each action of the shortcut table does, given the current card (or null) and the key.
  // An action returns false when it does not apply, so the key keeps its default.
  const onCard = (run) => (card, key) => (card ? run(card, key) : false);
  const inFocus = (run) => () => (focusOpen() ? run() : false);
  const actions = {
    next: () => { focusCard(current + 1); },
    previous: () => { focusCard(current - 1); },
    accept: onCard((card) => { decide(card, "accept"); }),
    reject: onCard((card) => { decide(card, "reject"); }),
    skip: onCard((card) => { decide(card, "skip"); }),
    correct: onCard((card) => { openCorrect(card); }),
    option: onCard((card, key) => { correctToOption(card, key); }),
    select: onCard((card) => { toggleSelect(card); }),
    selectNext: onCard((card) => { selectAndMove(card, 1); }),
    selectPrevious: onCard((card) => { selectAndMove(card, -1); }),
    selectAll: () => { selectAll(); },
    invertSelection: () => { invertSelection(); },
    flagAmbiguous: onCard((card) => { flag(card, "ambiguous", false); }),
    flagBadImage: onCard((card) => { flag(card, "bad image", true); }),
    acceptSelected: () => (onQueue ? acceptSelected() : false),
    acceptAbove: () => openAbove(),
    undo: () => { undoLast(); },
    focus: onCard(() => { if (focusOpen()) closeFocus(); else openFocus(); }),
    zoomIn: inFocus(() => zoom(1.25)),
    zoomOut: inFocus(() => zoom(0.8)),
    zoomReset: inFocus(() => resetZoom()),
    panLeft: inFocus(() => pan(60, 0)),
    panRight: inFocus(() => pan(-60, 0)),
    panUp: inFocus(() => pan(0, 60)),
    panDown: inFocus(() => pan(0, -60)),
    nextPage: () => { nextPage(); },
    previousPage: () => { previousPage(); },
    open: onCard((card) => { openDetail(card); }),
    help: () => { toggleHelp(); },
    history: () => (onQueue ? toggleHistory() : false),
    groupByValue: () => (onQueue ? toggleGrouping() : false),
  };

  function act(action, card, key) {
    return actions[action](card, key);
  }

  function clicked(action, card) {
    aimed = true;
    try { return act(action, card); } finally { aimed = false; }
  }

  // key name -> action name, from the table's rows.
  function bindKeys(rows) {
    const bound = new Map();
    for (const row of rows) {
      for (const [key, action] of Object.entries(row)) {
        if (action in actions) bound.set(key, action);
        else console.error(`the shortcut table binds ${key} to an unknown action ${action}`);
      }
    }
    return bound;
  }
  const keyBindings = bindKeys(page.shortcuts);

  // The table's name of a key press: "Shift+A" for a shifted letter or arrow, else the key itself.
  function keyName(event) {
    const shifted = event.shiftKey && (/^[A-Z]$/.test(event.key) || event.key.startsWith("Arrow"));
    return shifted ? `Shift+${event.key}` : event.key;
  }

  // Card keys act only where the focus is on a card, focus mode or the page itself: on a link, a
  // button or a field, Enter, Space and letters do what that control does.
  function onCardOrPage(target) {
    return target === document.body || target === document.documentElement || target === focusView ||
      target.matches('[data-testid="card"]');
  }

  function onKeydown(event) {
    const target = event.target;
    if (aboveOpen()) {
      if (event.key === "Escape") { event.preventDefault(); closeAbove(); } else if (event.key === "Tab") trapTab(event, aboveView);
      return;  // the dialog's own controls take every other key
    }
    if (event.key === "Tab" && focusOpen()) { trapTab(event); return; }
    if (target.closest('[data-testid="correct-form"]')) { onPickerKeydown(event); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape" && focusOpen()) { event.preventDefault(); closeFocus(); return; }
    const action = keyBindings.get(keyName(event));
    if (!action) return;
    const anywhere = action === "help" || action === "history";
    if (!anywhere && !onCardOrPage(target)) return;
    if (anywhere && target.matches("input:not([type=checkbox]), select, textarea")) return;
    if (act(action, currentCard(), event.key) !== false) event.preventDefault();
  }

  // --- Mouse and focus ---

  function onGridClick(event) {
    const card = event.target.closest('[data-testid="card"]');
    if (!card || event.target.closest('[data-testid="correct-form"]')) return;
    current = cards().indexOf(card);
    if (event.target.matches('[data-testid="select"]')) {
      if (event.shiftKey && anchor && anchor !== card) selectRange(anchor, card);
      anchor = card;
      updateSelectedCount();
      return;
    }
    const button = event.target.closest("button[data-action]");
    if (button) clicked(button.dataset.action, card);
    const alternative = event.target.closest("button[data-option]");
    if (alternative) correctTo(card, alternative.dataset.option);
  }

  // Focus by mouse or Tab moves the keyboard cursor too.
  function onGridFocus(event) {
    const card = event.target.closest('[data-testid="card"]');
    if (!card) return;
    current = cards().indexOf(card);
    markCurrent(card);
  }

  for (const card of page.cards.map(buildCard)) {
    const slot = grid.querySelector(`[data-card-slot="${card.dataset.labelId}"]`);
    if (slot) slot.replaceWith(card); else grid.append(card);
  }
  grid.addEventListener("click", onGridClick);
  grid.addEventListener("focusin", onGridFocus);
  picker.addEventListener("submit", submitCorrect);
  picker.addEventListener("input", (event) => {
    if (correcting && event.target.matches('[data-testid="correct-input"]')) fillPicker(correcting.dataset.group, event.target.value);
  });
  byTestId("correct-cancel", picker).addEventListener("click", closeCorrect);
  byTestId("focus-open").addEventListener("click", openFocus);
  byTestId("help-toggle").addEventListener("click", toggleHelp);
  if (onQueue) {
    byTestId("accept-selected").addEventListener("click", acceptSelected);
    byTestId("threshold-preview").addEventListener("click", previewThreshold);
    byTestId("threshold-accept").addEventListener("click", acceptThreshold);
    byTestId("bulk-undo").addEventListener("click", (event) => undoBulk(event.target.dataset.bulkId));
    byTestId("history-toggle").addEventListener("click", toggleHistory);
    byTestId("group-by-value").addEventListener("change", onGroupingChange);
    if (sessionStorage.getItem("review-group-by-value") === "on") {
      byTestId("group-by-value").checked = true;
      regroup();
    }
    byTestId("threshold").addEventListener("input", forgetThresholdPreview);
  }
  document.addEventListener("keydown", onKeydown);
  // The map's "Accept many" link (#accept): the threshold preview opens at once.
  if (onQueue && window.location.hash === "#accept") openAbove();
  window.addEventListener("pagehide", releaseClaim);
  window.addEventListener("pageshow", onPageShow);
  // On a phone the filters and bulk tools fold away, so the first card shows without scrolling.
  const tools = byTestId("queue-tools");
  if (tools && NARROW.matches) tools.open = false;
  // Density S/M/L: the user's preference.
  const density = byTestId("density");
  if (density) {
    const apply = () => {
      grid.classList.remove("density-s", "density-m", "density-l");
      grid.classList.add(`density-${density.value}`);
    };
    density.value = page.density || "m";
    apply();
    // Stored with the user's preferences, in the catalog: every browser they log in from keeps it.
    density.addEventListener("change", async () => {
      apply();
      try { await labeler.api("PUT", "/api/preferences", {density: density.value}); } catch (e) { labeler.showError(e.message); }
    });
  }
  // A click or a script elsewhere cannot take the focus out of the open dialog.
  document.addEventListener("focusin", (event) => {
    if (focusOpen() && !focusView.contains(event.target)) focusView.focus();
  });
  if (page.progress) showProgress(page.progress); else if (byTestId("progress")) byTestId("progress").hidden = true;
  if (onQueue) focusCard(0); else if (cards().length) markCurrent(cards()[0]);
  setInterval(poll, POLL_MS);
  if (onQueue && sessionStorage.getItem("review-focus-mode") === "on") openFocus();
})();
