/* A segment's admin page (templates/admin/automation/segment/change_form.html):
   - draws the members-over-time chart from the table of numbers under it (the table is
     the source, so the figures are readable without the canvas);
   - previews the condition being edited: POSTs the form's "condition" value to the
     admin's preview endpoint and shows the member count and a sample.
   A file of its own, no inline script: the Content-Security-Policy allows 'self' only. */
(function () {
  "use strict";

  function drawTrend() {
    var table = document.getElementById("segment-trend");
    var canvas = document.getElementById("segment-trend-chart");
    if (!table || !canvas || typeof window.Chart === "undefined") {
      return;
    }
    var rows = table.querySelectorAll("tbody tr");
    var days = [], members = [], entered = [], exited = [];
    rows.forEach(function (row) {
      days.push(row.dataset.day);
      members.push(Number(row.dataset.members));
      entered.push(Number(row.dataset.entered));
      exited.push(Number(row.dataset.exited));
    });
    canvas.dataset.points = String(days.length);
    new window.Chart(canvas, {
      data: {
        labels: days,
        datasets: [
          { type: "line", label: "Members", data: members, yAxisID: "members", tension: 0.2 },
          { type: "bar", label: "Entered", data: entered, yAxisID: "moves" },
          { type: "bar", label: "Exited", data: exited, yAxisID: "moves" }
        ]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          members: { type: "linear", position: "left", beginAtZero: true,
                     title: { display: true, text: "members" } },
          moves: { type: "linear", position: "right", beginAtZero: true,
                   grid: { drawOnChartArea: false },
                   title: { display: true, text: "entered / exited per day" } }
        }
      }
    });
  }

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function showProblem(box, problem) {
    box.appendChild(element("p", problem.message, "errornote"));
    var details = problem.details;
    if (details && typeof details === "object") {
      var list = element("ul", null, "errorlist");
      Object.keys(details).forEach(function (path) {
        [].concat(details[path]).forEach(function (message) {
          list.appendChild(element("li", path + ": " + message));
        });
      });
      box.appendChild(list);
    }
  }

  function showResult(box, data) {
    var count = element("p", null, "herald-segment-preview-count");
    var figure = element("strong", data.member_count);
    figure.id = "segment-preview-count";
    count.appendChild(figure);
    count.appendChild(document.createTextNode(
      data.member_count === 1 ? " customer matches now." : " customers match now."));
    box.appendChild(count);
    if (!data.sample || !data.sample.length) {
      return;
    }
    box.appendChild(element("p", "A sample:", "help"));
    var list = element("ul", null, "herald-segment-preview-sample");
    data.sample.forEach(function (customer) {
      var text = customer.external_id + (customer.email ? " <" + customer.email + ">" : "");
      list.appendChild(element("li", text));
    });
    box.appendChild(list);
  }

  function preview(button) {
    var form = button.form;
    var box = document.getElementById("segment-preview-result");
    var field = form ? form.elements.namedItem("condition") : null;
    box.textContent = "";
    var condition;
    try {
      condition = JSON.parse(field && field.value.trim() ? field.value : "{}");
    } catch (error) {
      showProblem(box, { message: "The condition is not valid JSON: " + error.message });
      return;
    }
    var token = form.elements.namedItem("csrfmiddlewaretoken");
    button.disabled = true;
    box.appendChild(element("p", "Counting…", "help"));
    fetch(button.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token ? token.value : "" },
      body: JSON.stringify({ condition: condition })
    })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        box.textContent = "";
        if (answer.ok) {
          showResult(box, answer.body.data);
        } else {
          showProblem(box, answer.body.error || { message: "The preview failed." });
        }
      })
      .catch(function (error) {
        box.textContent = "";
        showProblem(box, { message: "The preview failed: " + error.message });
      })
      .finally(function () {
        button.disabled = false;
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawTrend();
    var button = document.getElementById("segment-preview-button");
    if (button) {
      button.addEventListener("click", function () { preview(button); });
    }
  });
})();
