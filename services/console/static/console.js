// Live parts of the console: an element with data-refresh="URL" is replaced by what
// URL answers every data-every milliseconds (a fragment rendered on the server).
// A failed or logged-out fetch leaves the element as it was.
(function () {
  "use strict";
  document.querySelectorAll("[data-refresh]").forEach(function (element) {
    var every = parseInt(element.getAttribute("data-every"), 10) || 5000;
    setInterval(function () {
      fetch(element.getAttribute("data-refresh"), { credentials: "same-origin", redirect: "error" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html !== null) {
            element.innerHTML = html;
            element.setAttribute("data-refreshed", new Date().toISOString());
          }
        })
        .catch(function () { /* keep what is shown; the next tick tries again */ });
    }, every);
  });
})();
