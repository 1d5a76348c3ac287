// Key / value rows (project/admin/keyvalue.py): "Add a row" copies the last row,
// empty, with the next index in its input names.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".herald-kv").forEach(function (editor) {
    const button = editor.querySelector(".herald-kv-add");
    const body = editor.querySelector("tbody");
    button.hidden = false;
    button.addEventListener("click", function () {
      const rows = body.querySelectorAll("tr.herald-kv-row");
      const last = rows[rows.length - 1];
      const row = last.cloneNode(true);
      const index = rows.length;
      row.querySelectorAll("input, select, textarea").forEach(function (input) {
        input.name = input.name.replace(/-\d+$/, "-" + index);
        if (input.tagName === "SELECT") {
          input.value = "text";
        } else {
          input.value = "";
        }
      });
      body.appendChild(row);
      row.querySelector("input").focus();
    });
  });
});
