// Tether dashboard: live updates without reloading. Every few seconds the page is fetched
// again and each element marked data-live (tables, facts, charts; never forms) is replaced
// by its new version. Served from this origin only (Content-Security-Policy script-src 'self').
(function () {
  "use strict";
  var INTERVAL_MS = 2000;
  var busy = false;
  // A page rendered by a form post names its own address: refresh (and reload) that.
  var url = document.body.getAttribute("data-live-url") || window.location.href;
  if (document.body.hasAttribute("data-live-url")) {
    window.history.replaceState(null, "", url);
  }

  function refresh() {
    var live = document.querySelectorAll("[data-live][id]");
    if (live.length === 0 || busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(url, {
      credentials: "same-origin",
      headers: { "X-Tether-Live": "1" },
      redirect: "error",
    })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        live.forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) {
            el.innerHTML = fresh.innerHTML;
          }
        });
        document.body.removeAttribute("data-stale");
      })
      .catch(function () {
        document.body.setAttribute("data-stale", "true");
      })
      .finally(function () {
        busy = false;
      });
  }

  window.setInterval(refresh, INTERVAL_MS);

  // The catalog form: show only the fields of the chosen source (all are shown without
  // script; the server reads only the chosen kind's).
  var kind = document.getElementById("catalog-kind");
  if (kind) {
    var showKind = function () {
      document.querySelectorAll("fieldset[data-kind]").forEach(function (f) {
        f.hidden = f.getAttribute("data-kind").split(" ").indexOf(kind.value) < 0;
      });
    };
    kind.addEventListener("change", showKind);
    showKind();
  }
})();
