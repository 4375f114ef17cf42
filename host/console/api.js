// The console's plumbing: the token, calls to the public API, one poll timer, and small DOM
// helpers. Every other script adds its views to the `sluice` object made here.
"use strict";

const sluice = {};

(function () {
  // The token lives in this tab's session storage only: never in a URL, a cookie or local
  // storage, so it leaves with the tab and is never sent anywhere but in the Authorization header.
  const TOKEN = "sluice.token";
  const ROLE = "sluice.role";

  sluice.token = () => sessionStorage.getItem(TOKEN);
  sluice.role = () => sessionStorage.getItem(ROLE);
  sluice.signIn = (token, role) => {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(ROLE, role);
  };
  sluice.signOut = () => {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(ROLE);
  };

  // One API call: resolves to {status, body} for every answer, errors included, so that each
  // view decides what a 403 or a 404 means to it. A network failure resolves to status 0.
  sluice.call = async (method, path, body, token) => {
    const headers = { accept: "application/json" };
    const key = token || sluice.token();
    if (key) headers.authorization = "Bearer " + key;
    const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    try {
      const response = await fetch(path, init);
      const text = await response.text();
      let parsed = null;
      if (text) {
        try {
          parsed = JSON.parse(text);
        } catch (e) {
          parsed = text;
        }
      }
      return { status: response.status, body: parsed };
    } catch (e) {
      return { status: 0, body: { error: { code: "network", message: "the server did not answer; is the daemon running?" } } };
    }
  };

  // The API's error message, or a fallback.
  sluice.message = (answer) =>
    (answer.body && answer.body.error && answer.body.error.message) || "the server answered " + answer.status;
  sluice.code = (answer) => (answer.body && answer.body.error && answer.body.error.code) || "";

  // The page-wide alert: the API's refusals and failures, shown as the API words them.
  sluice.alert = (text) => {
    const alert = document.getElementById("alert");
    alert.textContent = text || "";
    alert.hidden = !text;
  };

  // Answers every view handles the same way: a key that stopped working signs out, and a
  // disabled tenant sees why. Returns true when the answer was one of those.
  sluice.refused = (answer) => {
    if (answer.status === 401) {
      sluice.signOut();
      sluice.alert("Signed out: " + sluice.message(answer));
      sluice.route();
      return true;
    }
    if (answer.status === 403 || answer.status === 0) {
      sluice.alert(sluice.message(answer));
      return true;
    }
    return false;
  };

  // The one poll timer: a view refreshes itself every `ms` while it is shown, never faster than
  // its requests allow (views ask for at most one request per second on average). A new view
  // replaces the previous timer; a hidden tab does not poll.
  let timer = null;
  let generation = 0;
  sluice.poll = (refresh, ms) => {
    clearTimeout(timer);
    const mine = ++generation;
    const tick = async () => {
      if (mine !== generation) return;
      try {
        if (!document.hidden) await refresh();
      } catch (e) {
        // An answer the view did not expect must not stop the polling for good.
        sluice.alert("The console could not show the latest data: " + e.message);
      }
      if (mine === generation) timer = setTimeout(tick, ms);
    };
    tick();
  };
  sluice.stopPolling = () => {
    generation++;
    clearTimeout(timer);
  };
  // Whether the view that started polling as `mine` is still the one shown.
  sluice.current = () => generation;

  // A tracker that says whether a value differs from the one it saw last: views re-render only
  // what changed, so that a button being pressed or focused is not replaced under the pointer.
  sluice.changes = () => {
    const seen = new Map();
    return (key, value) => {
      const json = JSON.stringify(value);
      if (seen.get(key) === json) return false;
      seen.set(key, json);
      return true;
    };
  };

  // Builds an element: `h("a", {href: "#/"}, "text", child)`. Text goes in as text nodes, never
  // as markup, so names and messages from the API cannot inject anything.
  sluice.h = (tag, attributes, ...children) => {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "class") element.className = value;
      else element.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  };

  // Replaces the view's content.
  sluice.show = (...children) => {
    const view = document.getElementById("view");
    view.replaceChildren(...children);
  };

  sluice.badge = (status) => sluice.h("span", { class: "badge badge-" + status }, status);

  sluice.bytes = (n) => {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  };

  sluice.ms = (ms) => {
    if (ms === null || ms === undefined || isNaN(ms)) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
    return Math.round(ms / 60000) + " min";
  };

  sluice.time = (rfc3339) => {
    if (!rfc3339) return "–";
    const t = new Date(rfc3339);
    return isNaN(t) ? rfc3339 : t.toLocaleString();
  };

  // A definition list from [label, value] pairs.
  sluice.facts = (pairs) =>
    sluice.h("dl", { class: "facts" }, pairs.map(([label, value]) => [sluice.h("dt", {}, label), sluice.h("dd", {}, value)]));

  // A bar showing `used` of `limit`, labelled for screen readers.
  sluice.meter = (label, used, limit, format) => {
    const fmt = format || String;
    const share = limit > 0 ? Math.min(1, used / limit) : 0;
    const meter = sluice.h("meter", { min: "0", max: "1", value: String(share), "aria-label": label });
    if (share >= 0.8) meter.className = "high";
    return sluice.h("div", { class: "quota" }, sluice.h("span", {}, label), meter, sluice.h("span", { class: "figure" }, fmt(used) + " of " + fmt(limit)));
  };

  // A button that copies `text` to the clipboard and says so.
  sluice.copyButton = (label, text) => {
    const button = sluice.h("button", { type: "button", class: "quiet" }, label);
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(text());
        button.textContent = "Copied";
      } catch (e) {
        button.textContent = "Select the text to copy it";
      }
      setTimeout(() => (button.textContent = label), 2000);
    });
    return button;
  };
})();
