// A page's background job panel (the dashboard's "learn from reviews and relabel", the prompt lab's
// labeling): start the dashboard's job through the API, follow any job by polling /api/jobs/<id>,
// and when it is done refresh the group cards (fit summary, counts) where the page has them.
// Buttons marked data-job-start stay disabled while a job runs. Nothing here blocks the page.
"use strict";

(() => {
  const POLL_MS = 700;
  const panel = labeler.byTestId("job");
  const form = labeler.byTestId("learn-form");
  if (!panel) return;
  const button = form ? labeler.byTestId("learn-start", form) : null;

  function show(job) {
    panel.hidden = false;
    panel.dataset.active = job.active ? "true" : "false";
    labeler.byTestId("job-id", panel).textContent = job.id;
    const kind = labeler.byTestId("job-kind", panel);
    if (kind) kind.textContent = job.kind;
    labeler.byTestId("job-status", panel).textContent = job.status;
    const finished = labeler.byTestId("job-finished", panel);
    if (finished) finished.remove();  // stale once a new job shows
    const bar = labeler.byTestId("job-progress", panel);
    bar.max = job.total || 1;
    bar.value = job.status === "done" ? bar.max : job.done;
    labeler.byTestId("job-count", panel).textContent = job.total ? `${job.done} of ${job.total} steps` : "";
    labeler.byTestId("job-message", panel).textContent = job.message || "";
    // A starter blocked for a reason (no reviews yet) stays disabled whatever the job does.
    const blocked = (node) => node.dataset.blocked === "true";
    if (button) button.disabled = job.active || blocked(button);
    for (const starter of document.querySelectorAll("[data-job-start]")) starter.disabled = job.active || blocked(starter);
  }

  // The parts of the page a finished job changes, as the server renders them now: the dashboard's
  // group cards (new fits, relabeled counts), and every element marked data-job-refresh (the
  // prompt lab's suggestions), matched by data-testid.
  async function refreshGroups() {
    const response = await fetch(window.location.pathname + window.location.search, {credentials: "same-origin"});
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = labeler.byTestId("groups", page);
    const current = labeler.byTestId("groups");
    if (fresh && current) current.replaceWith(document.importNode(fresh, true));
    for (const stale of document.querySelectorAll("[data-job-refresh]")) {
      const replacement = labeler.byTestId(stale.dataset.testid, page);
      if (replacement) stale.replaceWith(document.importNode(replacement, true));
    }
  }

  async function follow(url) {
    let job;
    try {
      job = await labeler.api("GET", url);
    } catch (error) {
      labeler.showError(`Could not read the job's progress: ${error.message}`);
      setTimeout(() => follow(url), POLL_MS * 4);
      return;
    }
    show(job);
    if (job.active) {
      setTimeout(() => follow(url), POLL_MS);
    } else {
      await refreshGroups();  // a failed job's line shows there too
    }
  }

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        const job = await labeler.api("POST", form.dataset.apiUrl, {kind: form.dataset.kind});
        labeler.showError("");
        show(job);
        follow(job.url);
      } catch (error) {
        labeler.showError(error.message);
        button.disabled = false;
      }
    });
  }

  if (panel.dataset.jobUrl && panel.dataset.active === "true") follow(panel.dataset.jobUrl);
})();
