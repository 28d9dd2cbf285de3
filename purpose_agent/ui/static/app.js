// Live refresh, and nothing else: every element with data-refresh="URL" is re-fetched
// from the server (an escaped, server-rendered fragment) while the page is visible.
// data-reload-on="ATTR": reload the whole page when the fragment's ATTR changes (a run
// that paused or finished gets its new actions and tabs). data-keep-while-editing: not
// replaced while a person is typing in it.
"use strict";
(function () {
  var INTERVAL = 1000;

  function edited(el) {
    if (el.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    var fields = el.querySelectorAll("textarea, input");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) { return true; }
    }
    var open = el.querySelectorAll("details[open]");
    return open.length > 0;
  }

  function marker(el, attr) {
    var node = el.querySelector("[" + attr + "]");
    return node ? node.getAttribute(attr) : null;
  }

  function refresh(el) {
    if (document.visibilityState === "hidden") { return Promise.resolve(); }
    if (el.hasAttribute("data-keep-while-editing") && edited(el)) { return Promise.resolve(); }
    return fetch(el.getAttribute("data-refresh"), {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var attr = el.getAttribute("data-reload-on");
        var before = attr ? marker(el, attr) : null;
        var probe = document.createElement("div");
        probe.innerHTML = html;
        if (attr && marker(probe, attr) !== before) { window.location.reload(); return; }
        if (el.innerHTML !== html && !(el.hasAttribute("data-keep-while-editing") && edited(el))) {
          el.innerHTML = html;
        }
        document.documentElement.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the server is restarting: the next round tries again */ });
  }

  function loop() {
    var targets = document.querySelectorAll("[data-refresh]");
    var rounds = [];
    for (var i = 0; i < targets.length; i++) { rounds.push(refresh(targets[i])); }
    Promise.all(rounds).then(function () { window.setTimeout(loop, INTERVAL); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-refresh]")) { window.setTimeout(loop, INTERVAL); }
  });
})();
