// The QA page: answer other reviewers' decisions, blind, with the queue's keys. Each card carries its
// group's option keys (data-keys, key -> option as the queue binds them); an answer moves to the next card.
"use strict";

(function () {
  const grid = labeler.byTestId("qa-grid");
  if (!grid) return;
  const cards = () => [...grid.querySelectorAll('[data-testid="qa-card"]')];
  let current = 0;

  function focusCard(i) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((card, n) => card.classList.toggle("current", n === current));
    all[current].focus();
  }

  function nextOpen(from) {
    const all = cards();
    for (let i = from + 1; i < all.length; i++) if (!all[i].dataset.answered) return i;
    return Math.min(from + 1, all.length - 1);
  }

  async function answer(card, value) {
    if (card.dataset.answered) return;
    const status = labeler.byTestId("qa-status", card);
    card.dataset.answered = "sending";
    try {
      const task = await labeler.api("POST", `/api/qa/${card.dataset.taskId}`, {value});
      card.dataset.answered = task.status;
      status.textContent = task.status === "agreed" ? "agreed" : "disagreed: goes to an admin";
      labeler.showError("");
    } catch (e) {
      delete card.dataset.answered;
      status.textContent = e.message;  // the message on its own card, never a silent loss
      labeler.showError(e.message);
    }
  }

  function answerAndMove(card, value) {
    const i = cards().indexOf(card);
    answer(card, value);
    focusCard(nextOpen(i));
  }

  function onKeydown(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.matches("input, select, textarea")) return;
    const card = cards()[current];
    if (!card) return;
    const key = event.key;
    if (key === "j" || key === "ArrowRight") { focusCard(current + 1); event.preventDefault(); return; }
    if (key === "k" || key === "ArrowLeft") { focusCard(current - 1); event.preventDefault(); return; }
    if (key === "r") { answerAndMove(card, null); event.preventDefault(); return; }
    const keys = JSON.parse(card.dataset.keys || "{}");
    const option = Object.keys(keys).find((name) => keys[name] === key);
    if (option !== undefined) { answerAndMove(card, option); event.preventDefault(); }
  }

  function onClick(event) {
    const card = event.target.closest('[data-testid="qa-card"]');
    if (!card) return;
    current = cards().indexOf(card);
    const option = event.target.closest('[data-testid="qa-option"]');
    if (option) answerAndMove(card, option.dataset.value);
    else if (event.target.closest('[data-testid="qa-none"]')) answerAndMove(card, null);
    else focusCard(current);
  }

  document.addEventListener("keydown", onKeydown);
  grid.addEventListener("click", onClick);
  focusCard(0);
})();
