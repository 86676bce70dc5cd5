// Shared helpers: finding elements by test id, JSON API calls with the CSRF header, and one error banner.
// Data from the server is only ever put into the page with textContent, never innerHTML.
"use strict";

const labeler = {
  // Scripts find their elements by the same data-testid hooks the browser tests use.
  byTestId(id, root = document) {
    return root.querySelector(`[data-testid="${id}"]`);
  },

  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  async api(method, url, body) {
    const options = {method, headers: {"Accept": "application/json", "X-CSRF-Token": labeler.csrf()},
                     credentials: "same-origin"};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const error = new Error((data && data.error) || `request failed (${response.status})`);
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  },

  showError(message) {
    const banner = labeler.byTestId("error-banner");
    if (!banner) return;
    banner.textContent = message;
    banner.hidden = !message;
  },

  showInfo(message) {
    labeler.showError("");
    const flash = document.createElement("p");
    flash.className = "flash";
    flash.dataset.testid = "flash";
    flash.setAttribute("role", "status");  // read out by screen readers, like the server's flashes
    flash.textContent = message;
    const main = document.querySelector("main");
    main.insertBefore(flash, main.firstChild);
    setTimeout(() => flash.remove(), 4000);
  },
};
