/* Copy buttons for secrets shown on purpose (a static file: the CSP refuses inline scripts). */
(function () {
  "use strict";
  function copy(button) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    const done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { select(source); });
    } else {
      select(source);
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
    }
  }
  function select(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  document.addEventListener("click", function (event) {
    const button = event.target.closest(".herald-copy");
    if (button) { event.preventDefault(); copy(button); }
  });
})();
