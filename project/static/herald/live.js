/* The live events page (project/admin/live.py): polls the feed once a second and puts
   new events and rejected batch items at the top of their tables. Text only (no
   innerHTML): what integrations send is shown, never interpreted. */
(function () {
  "use strict";
  var KEPT = 50;

  function cell(row, text, href) {
    var td = document.createElement("td");
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
    return td;
  }

  function time(iso) {
    return iso.replace("T", " ").slice(0, 19);
  }

  function prepend(tbody, rows) {
    for (var i = rows.length - 1; i >= 0; i--) {
      tbody.insertBefore(rows[i], tbody.firstChild);
    }
    while (tbody.children.length > KEPT) {
      tbody.removeChild(tbody.lastChild);
    }
  }

  function start() {
    var root = document.getElementById("herald-live-root");
    if (!root) { return; }
    var feed = root.getAttribute("data-feed");
    var pollMs = parseInt(root.getAttribute("data-poll-ms"), 10) || 1000;
    var client = document.getElementById("live-api-client");
    var type = document.getElementById("live-event-type");
    var status = document.getElementById("live-status");
    var events = document.querySelector("#live-events tbody");
    var rejections = document.querySelector("#live-rejections tbody");
    var cursor = { events_after: "", rejections_after: "" };
    var timer = null;

    function reset() {
      cursor = { events_after: "", rejections_after: "" };
      events.textContent = "";
      rejections.textContent = "";
      poll();
    }

    function poll() {
      if (timer) { clearTimeout(timer); timer = null; }
      var params = new URLSearchParams({
        api_client: client.value, event_type: type.value,
        events_after: cursor.events_after, rejections_after: cursor.rejections_after
      });
      fetch(feed + "?" + params.toString(), { credentials: "same-origin",
                                             headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          prepend(events, data.events.map(function (e) {
            var tr = document.createElement("tr");
            tr.setAttribute("data-id", e.id);
            cell(tr, time(e.created_at));
            cell(tr, e.api_client);
            cell(tr, e.event_type);
            cell(tr, e.customer);
            cell(tr, e.id, e.url);
            return tr;
          }));
          prepend(rejections, data.rejections.map(function (r) {
            var tr = document.createElement("tr");
            tr.setAttribute("data-id", String(r.id));
            cell(tr, time(r.created_at));
            cell(tr, r.api_client);
            var item = cell(tr, "#" + r.position + (r.event_type ? " " + r.event_type : ""));
            item.title = r.sent;
            cell(tr, r.error).className = "herald-error";
            return tr;
          }));
          cursor = { events_after: data.cursor.events_after,
                     rejections_after: String(data.cursor.rejections_after) };
          status.textContent = "Updated " + new Date().toLocaleTimeString();
        })
        .catch(function (error) {
          status.textContent = "Not updated: " + error.message;
        })
        .finally(function () {
          timer = setTimeout(poll, pollMs);
        });
    }

    client.addEventListener("change", reset);
    type.addEventListener("change", reset);
    poll();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
