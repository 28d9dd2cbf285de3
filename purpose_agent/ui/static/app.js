// Live updates, and nothing else: every element with data-refresh="URL" (a fragment of
// the page, escaped and rendered by the server) listens to that URL as server-sent
// events (URL&stream=1): the server pushes the fragment whenever it changes, and it is
// swapped in here. data-reload-on="ATTR": reload the whole page when the fragment's
// ATTR changes (a run that paused or finished gets its new actions and tabs).
// data-keep-while-editing: not replaced while a person is typing in it (the next push
// after they are done brings it up to date).
"use strict";
(function () {
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

  function swap(el, html) {
    if (el.hasAttribute("data-keep-while-editing") && edited(el)) { return; }
    var attr = el.getAttribute("data-reload-on");
    if (attr) {
      var probe = document.createElement("div");
      probe.innerHTML = html;  // inert: not in the document, and the CSP forbids inline code
      if (marker(probe, attr) !== marker(el, attr)) { window.location.reload(); return; }
    }
    if (el.innerHTML !== html) { el.innerHTML = html; }
    document.documentElement.setAttribute("data-refreshed", String(Date.now()));
  }

  function listen(el) {
    var url = el.getAttribute("data-refresh");
    var source = new EventSource(url + (url.indexOf("?") < 0 ? "?" : "&") + "stream=1");
    source.addEventListener("fragment", function (event) { swap(el, event.data); });
    // The fragment cannot be shown any more (the run was deleted): stop listening.
    source.addEventListener("gone", function () { source.close(); });
    document.documentElement.setAttribute("data-live", "sse");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var targets = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < targets.length; i++) { listen(targets[i]); }
  });
})();
