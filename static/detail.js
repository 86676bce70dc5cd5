// The detail page's image: zoom in and out with its buttons, scrolled inside its frame so the
// rest of the page stays where it is.
"use strict";

(() => {
  const frame = labeler.byTestId("zoom-frame");
  const buttons = labeler.byTestId("detail-zoom");
  if (!frame || !buttons) return;
  const image = frame.querySelector("img");
  let scale = 1;

  function apply(next) {
    scale = Math.max(1, Math.min(8, next));
    image.style.width = `${100 * scale}%`;
    image.style.maxWidth = scale === 1 ? "" : "none";
    frame.classList.toggle("zoomed", scale > 1);
  }

  buttons.addEventListener("click", (event) => {
    const zoom = event.target.closest("button[data-zoom]");
    if (!zoom) return;
    apply({in: scale * 1.5, out: scale / 1.5, fit: 1}[zoom.dataset.zoom]);
  });
})();
