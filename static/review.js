// The review queue: keyboard-driven decisions through the JSON API.
// The keys come from the one shortcut table in templates/review/queue.html (it renders the page's
// help too); this script only knows the actions they name, in `actions` below.
"use strict";

(function () {
  const grid = document.querySelector('[data-testid="queue-grid"]');
  if (!grid) return;
  const page = JSON.parse(document.getElementById("queue-data").textContent);
  const byTestId = labeler.byTestId;
  const undoStack = [];  // cards this page decided, newest last
  let current = 0;  // the keyboard cursor: index of the focused card

  // --- Cards and the keyboard cursor ---

  function cards() {
    return Array.from(grid.querySelectorAll('[data-testid="card"]'));
  }

  function focusedCard() {
    return cards()[current] || null;
  }

  function markFocused(card) {
    cards().forEach((c) => c.classList.toggle("focused", c === card));
  }

  function focusCard(i) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    markFocused(all[current]);
    all[current].focus();
  }

  function focusNext(card) {
    focusCard(cards().indexOf(card) + 1);
  }

  function openDetail(card) {
    window.location.href = byTestId("detail-link", card).href;
  }

  // --- Showing a label on its card ---

  function render(card, label) {
    card.dataset.version = label.version;
    byTestId("value", card).textContent = label.value === null ? "(none of these)" : label.value;
    byTestId("status", card).textContent = label.status;
    card.className = card.className.replace(/status-\S+/, "status-" + label.status);
    if (label.confidence !== null) byTestId("confidence", card).textContent = label.confidence.toFixed(2);
  }

  async function refresh(card) {
    try {
      render(card, await labeler.api("GET", `/api/labels/${card.dataset.labelId}`));
      card.classList.add("changed-elsewhere");
    } catch (e) { /* the error banner already explains */ }
  }

  // --- Decisions ---

  // Resolves true when the server took the decision.
  async function decide(card, action, value) {
    if (!card || card.dataset.busy) return false;  // a second key press must not race the first answer
    if (action === "skip") { focusNext(card); return true; }
    card.dataset.busy = "1";
    try {
      const body = {action, version: Number(card.dataset.version)};
      if (value !== undefined) body.value = value;
      const result = await labeler.api("POST", `/api/labels/${card.dataset.labelId}/review`, body);
      render(card, result.label);
      labeler.showError("");
      if (action !== "undo") {
        undoStack.push(card);
        focusNext(card);
      }
      return true;
    } catch (e) {
      labeler.showError(e.message);
      if (e.status === 409) refresh(card);  // show what the other reviewer decided
      return false;
    } finally {
      delete card.dataset.busy;
    }
  }

  function undoLast() {
    const last = undoStack.pop();
    if (!last) { labeler.showError("Nothing to undo on this page."); return; }
    focusCard(cards().indexOf(last));
    decide(last, "undo").then((done) => { if (!done) undoStack.push(last); });  // keep it for a retry
  }

  // --- The correction form ---

  function openCorrect(card) {
    const form = byTestId("correct-form", card);
    form.hidden = false;
    byTestId("correct-select", form).focus();
  }

  function closeCorrect(form) {
    form.hidden = true;
    focusCard(current);
  }

  function submitCorrect(event) {
    event.preventDefault();
    const form = event.target;
    const card = form.closest('[data-testid="card"]');
    const typed = byTestId("correct-input", form).value.trim();
    const value = typed || byTestId("correct-select", form).value;
    form.hidden = true;
    decide(card, "correct", value);
  }

  // The value of option n (1-based) in the card's list, or null when it has fewer.
  function optionAt(card, n) {
    const choices = card.querySelectorAll('[data-testid="correct-select"] option');
    return choices[n - 1] ? choices[n - 1].value : null;
  }

  function correctToOption(card, n) {
    const value = optionAt(card, n);
    if (value !== null) decide(card, "correct", value);
  }

  // --- Selection and bulk accepts ---

  function selectedCards() {
    return cards().filter((c) => byTestId("select", c).checked);
  }

  function updateSelectedCount() {
    byTestId("selected-count").textContent = selectedCards().length;
  }

  function toggleSelect(card) {
    const box = byTestId("select", card);
    box.checked = !box.checked;
    updateSelectedCount();
  }

  async function acceptSelected() {
    const chosen = selectedCards();
    if (!chosen.length) { labeler.showError("Select images first (x, or the checkboxes)."); return; }
    const body = {labels: chosen.map((c) => ({id: Number(c.dataset.labelId), version: Number(c.dataset.version)}))};
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
      render(card, label);
      byTestId("select", card).checked = false;
      undoStack.push(card);
    }
    for (const conflict of result.conflicts || []) refresh(byId.get(conflict.id));
    updateSelectedCount();
    if (result.conflicts && result.conflicts.length) {
      labeler.showError(result.conflicts.map((c) => c.message).join(" "));
    } else {
      labeler.showInfo(`Accepted ${result.accepted.length}.`);
    }
  }

  function thresholdQuery() {
    const threshold = byTestId("threshold").value;
    const params = new URLSearchParams({group: page.group || "", threshold});
    if (page.value) params.set("value", page.value);
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
                                       {group: page.group, threshold, value: page.value});
      labeler.showInfo(`Accepted ${result.accepted}.`);
      window.location.reload();
    } catch (e) { labeler.showError(e.message); }
  }

  // --- Keyboard shortcuts ---

  function toggleHelp() {
    const help = byTestId("shortcuts");
    help.hidden = !help.hidden;
  }

  // What each action of the shortcut table does, given the focused card (or null) and the key.
  // An action returns false when it does not apply, so the key keeps its default.
  const onCard = (run) => (card, key) => (card ? run(card, key) : false);
  const actions = {
    next: () => { focusCard(current + 1); },
    previous: () => { focusCard(current - 1); },
    accept: (card) => { decide(card, "accept"); },
    reject: (card) => { decide(card, "reject"); },
    skip: (card) => { decide(card, "skip"); },
    correct: onCard((card) => { openCorrect(card); }),
    option: onCard((card, key) => { correctToOption(card, Number(key)); }),
    select: onCard((card) => { toggleSelect(card); }),
    acceptSelected: () => { acceptSelected(); },
    undo: () => { undoLast(); },
    open: onCard((card) => { openDetail(card); }),
    help: () => { toggleHelp(); },
  };

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

  // The table's name of a key press: "Shift+A" for a shifted letter, else the key itself.
  function keyName(event) {
    return event.shiftKey && /^[A-Z]$/.test(event.key) ? `Shift+${event.key}` : event.key;
  }

  // Typing in a text field is typing, not a shortcut; a checkbox keeps the shortcuts working.
  function isTyping(target) {
    return target.matches("select, textarea, input:not([type=checkbox]):not([type=radio])");
  }

  function onKeydown(event) {
    const target = event.target;
    if (event.key === "Escape" && target.closest('[data-testid="correct-form"]')) {
      closeCorrect(target.closest('[data-testid="correct-form"]'));
      return;
    }
    if (isTyping(target) || event.ctrlKey || event.metaKey || event.altKey) return;
    const action = keyBindings.get(keyName(event));
    if (action && actions[action](focusedCard(), event.key) !== false) event.preventDefault();
  }

  // --- Mouse and focus ---

  function onGridClick(event) {
    const card = event.target.closest('[data-testid="card"]');
    if (!card) return;
    current = cards().indexOf(card);
    const button = event.target.closest("button[data-action]");
    if (event.target.matches('[data-testid="select"]')) { updateSelectedCount(); return; }
    if (!button) return;
    if (button.dataset.action === "correct") openCorrect(card);
    else decide(card, button.dataset.action);
  }

  // Focus by mouse or Tab moves the keyboard cursor too.
  function onGridFocus(event) {
    const card = event.target.closest('[data-testid="card"]');
    if (!card) return;
    current = cards().indexOf(card);
    markFocused(card);
  }

  grid.addEventListener("click", onGridClick);
  grid.addEventListener("focusin", onGridFocus);
  grid.addEventListener("submit", submitCorrect);
  byTestId("accept-selected").addEventListener("click", acceptSelected);
  byTestId("threshold-preview").addEventListener("click", previewThreshold);
  byTestId("threshold-accept").addEventListener("click", acceptThreshold);
  byTestId("threshold").addEventListener("input", forgetThresholdPreview);
  document.addEventListener("keydown", onKeydown);
  focusCard(0);
})();
