// The duplicates page: "m" marks the group that holds the focus (else the first one not yet marked).
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key !== "m" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" && target.type !== "radio" || target.tagName === "TEXTAREA" ||
                   target.tagName === "SELECT")) return;
    var group = target && target.closest ? target.closest("[data-testid=dup-group]") : null;
    if (!group) {
      var groups = document.querySelectorAll("[data-testid=dup-group]");
      for (var i = 0; i < groups.length && !group; i++) {
        if (!groups[i].querySelector("[data-marked]")) group = groups[i];
      }
    }
    if (!group) return;
    event.preventDefault();
    group.querySelector("[data-testid=dup-mark-form]").requestSubmit();
  });
})();
