// slipway dashboard: live updates of a running job's page over Server-Sent Events. Everything
// else works without JavaScript. Log lines are inserted as text (never as HTML); the steps
// table arrives rendered (and escaped) by the server.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var log = document.getElementById("log");
  if (!log || !log.dataset.live) {
    return;
  }
  var status = document.getElementById("live");
  var source = new EventSource(log.dataset.live);
  source.addEventListener("open", function () {
    if (status) { status.textContent = "live"; }
  });
  source.addEventListener("log", function (event) {
    var line = JSON.parse(event.data);
    var row = document.createElement("div");
    row.className = "line";
    var where = document.createElement("span");
    where.className = "src";
    where.textContent = line.host + " " + line.step;
    row.appendChild(where);
    row.appendChild(document.createTextNode(" " + line.line));
    var follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(row);
    if (follow) { log.scrollTop = log.scrollHeight; }
  });
  source.addEventListener("steps", function (event) {
    var steps = document.getElementById("steps");
    if (steps) { steps.innerHTML = JSON.parse(event.data).html; }
  });
  source.addEventListener("end", function () {
    source.close();
    window.location.reload();
  });
});
