// The review queue: keyboard-driven decisions through the JSON API.
"use strict";

(function () {
  const grid = document.querySelector('[data-testid="queue-grid"]');
  if (!grid) return;
  const page = JSON.parse(document.getElementById("queue-data").textContent);
  const cards = () => Array.from(grid.querySelectorAll('[data-testid="card"]'));
  const undoStack = [];  // cards this page decided, newest last
  let current = 0;

  function focusCard(i) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((c, k) => c.classList.toggle("focused", k === current));
    all[current].focus();
  }

  function focusedCard() {
    const all = cards();
    return all[current] || null;
  }

  function render(card, label) {
    card.dataset.version = label.version;
    card.querySelector('[data-testid="value"]').textContent =
      label.value === null ? "(none of these)" : label.value;
    card.querySelector('[data-testid="status"]').textContent = label.status;
    card.className = card.className.replace(/status-\S+/, "status-" + label.status);
    if (label.confidence !== null) {
      card.querySelector('[data-testid="confidence"]').textContent = label.confidence.toFixed(2);
    }
  }

  async function refresh(card) {
    try {
      render(card, await labeler.api("GET", `/api/labels/${card.dataset.labelId}`));
      card.classList.add("changed-elsewhere");
    } catch (e) { /* the error banner already explains */ }
  }

  // Resolves true when the server took the decision.
  async function decide(card, action, value) {
    if (!card || card.dataset.busy) return false;  // a second key press must not race the first answer
    if (action === "skip") { focusCard(cards().indexOf(card) + 1); return true; }
    card.dataset.busy = "1";
    try {
      const body = {action, version: Number(card.dataset.version)};
      if (value !== undefined) body.value = value;
      const result = await labeler.api("POST", `/api/labels/${card.dataset.labelId}/review`, body);
      render(card, result.label);
      labeler.showError("");
      if (action !== "undo") {
        undoStack.push(card);
        focusCard(cards().indexOf(card) + 1);
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

  function openCorrect(card) {
    const form = card.querySelector('[data-testid="correct-form"]');
    form.hidden = false;
    form.querySelector('[data-testid="correct-select"]').focus();
  }

  function optionAt(card, n) {
    const choices = card.querySelectorAll('[data-testid="correct-select"] option');
    return choices[n - 1] ? choices[n - 1].value : null;
  }

  function toggleSelect(card) {
    const box = card.querySelector('[data-testid="select"]');
    box.checked = !box.checked;
    updateSelectedCount();
  }

  function selectedCards() {
    return cards().filter((c) => c.querySelector('[data-testid="select"]').checked);
  }

  function updateSelectedCount() {
    document.querySelector('[data-testid="selected-count"]').textContent = selectedCards().length;
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
      card.querySelector('[data-testid="select"]').checked = false;
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
    const threshold = document.querySelector('[data-testid="threshold"]').value;
    const params = new URLSearchParams({group: page.group || "", threshold});
    if (page.value) params.set("value", page.value);
    return {params, threshold: Number(threshold)};
  }

  async function previewThreshold() {
    const {params} = thresholdQuery();
    try {
      const result = await labeler.api("GET", `/api/labels/accept-above?${params}`);
      document.querySelector('[data-testid="threshold-count"]').textContent =
        `${result.count} proposed label${result.count === 1 ? "" : "s"} would be accepted.`;
      document.querySelector('[data-testid="threshold-accept"]').disabled = result.count === 0;
    } catch (e) { labeler.showError(e.message); }
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

  grid.addEventListener("click", (event) => {
    const card = event.target.closest('[data-testid="card"]');
    if (!card) return;
    current = cards().indexOf(card);
    const button = event.target.closest("button[data-action]");
    if (event.target.matches('[data-testid="select"]')) { updateSelectedCount(); return; }
    if (!button) return;
    if (button.dataset.action === "correct") openCorrect(card);
    else decide(card, button.dataset.action);
  });

  grid.addEventListener("focusin", (event) => {
    // Focus by mouse or Tab moves the keyboard cursor too.
    const card = event.target.closest('[data-testid="card"]');
    if (!card) return;
    current = cards().indexOf(card);
    cards().forEach((c) => c.classList.toggle("focused", c === card));
  });

  grid.addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const card = form.closest('[data-testid="card"]');
    const typed = form.querySelector('[data-testid="correct-input"]').value.trim();
    const value = typed || form.querySelector('[data-testid="correct-select"]').value;
    form.hidden = true;
    decide(card, "correct", value);
  });

  document.querySelector('[data-testid="accept-selected"]').addEventListener("click", acceptSelected);
  document.querySelector('[data-testid="threshold-preview"]').addEventListener("click", previewThreshold);
  document.querySelector('[data-testid="threshold-accept"]').addEventListener("click", acceptThreshold);
  document.querySelector('[data-testid="threshold"]').addEventListener("input", () => {
    document.querySelector('[data-testid="threshold-accept"]').disabled = true;
    document.querySelector('[data-testid="threshold-count"]').textContent = "";
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.key === "Escape" && target.closest('[data-testid="correct-form"]')) {
      target.closest('[data-testid="correct-form"]').hidden = true;
      focusCard(current);
      return;
    }
    // Typing in a text field is typing, not a shortcut; a checkbox keeps the shortcuts working.
    const typing = target.matches("select, textarea, input:not([type=checkbox]):not([type=radio])");
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const card = focusedCard();
    const key = event.key;
    let handled = true;
    if (key === "j" || key === "ArrowRight") focusCard(current + 1);
    else if (key === "k" || key === "ArrowLeft") focusCard(current - 1);
    else if (key === "A" && event.shiftKey) acceptSelected();
    else if (key === "a") decide(card, "accept");
    else if (key === "r") decide(card, "reject");
    else if (key === "s") decide(card, "skip");
    else if (key === "c" && card) openCorrect(card);
    else if (key === "x" && card) toggleSelect(card);
    else if (key === "u") {
      const last = undoStack.pop();
      if (!last) labeler.showError("Nothing to undo on this page.");
      else {
        focusCard(cards().indexOf(last));
        decide(last, "undo").then((done) => { if (!done) undoStack.push(last); });  // keep it for a retry
      }
    }
    else if (/^[1-9]$/.test(key) && card) {
      const value = optionAt(card, Number(key));
      if (value !== null) decide(card, "correct", value);
    }
    else if (key === "Enter" && card) window.location.href = card.querySelector('[data-testid="detail-link"]').href;
    else if (key === "?") {
      const help = document.querySelector('[data-testid="shortcuts"]');
      help.hidden = !help.hidden;
    }
    else handled = false;
    if (handled) event.preventDefault();
  });

  focusCard(0);
})();
