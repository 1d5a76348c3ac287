/*
 * The schedule form: while a cron expression (or its zone) is typed, its human
 * description and next five runs, from the admin's preview endpoint
 * (services.schedule_preview: the same parser and checks as saving).
 */
(function () {
  "use strict";

  function start() {
    const input = document.querySelector("input.herald-cron[data-preview]");
    if (!input) return;
    const zone = document.querySelector("input.herald-cron-zone");
    const box = document.createElement("div");
    box.className = "herald-cron-preview";
    box.id = "cron-preview";
    box.setAttribute("aria-live", "polite");
    // Below the field's help text, not beside the input (the admin lays a row out in flex).
    const row = input.closest(".form-row") || input.parentElement;
    row.append(box);
    let timer = null;
    let asked = 0;

    function show(answer) {
      box.replaceChildren();
      if (answer.error) {
        const problem = document.createElement("p");
        problem.className = "hb-echo hb-echo-bad";
        problem.textContent = answer.error;
        box.append(problem);
        return;
      }
      const words = document.createElement("p");
      words.className = "herald-cron-description";
      words.textContent = answer.interval_description;
      const title = document.createElement("p");
      title.className = "hb-hint";
      title.textContent = "Next runs (UTC):";
      const list = document.createElement("ol");
      list.className = "herald-cron-runs";
      for (const run of answer.next_runs) {
        const item = document.createElement("li");
        item.textContent = run.replace("T", " ").replace("Z", "");
        list.append(item);
      }
      box.append(words, title, list);
    }

    function ask() {
      const interval = input.value.trim();
      if (!interval) { box.replaceChildren(); return; }
      const query = new URLSearchParams({ interval: interval, timezone: zone ? zone.value.trim() : "" });
      const mine = ++asked;
      fetch(input.dataset.preview + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (answer) { if (mine === asked) show(answer); })
        .catch(function () { if (mine === asked) show({ error: "The preview is unavailable; saving still checks the expression." }); });
    }

    function later() {
      clearTimeout(timer);
      timer = setTimeout(ask, 250);
    }

    input.addEventListener("input", later);
    if (zone) zone.addEventListener("input", later);
    ask();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
