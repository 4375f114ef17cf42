// The console's entry: sign-in, and the route from the URL's hash to a view. The hash holds only
// where the person is (`#/projects/<id>`), never a token.
"use strict";

(function () {
  sluice.whoAmI = (text) => {
    document.getElementById("who").textContent = text;
  };

  // Which view the hash names, for who is signed in.
  sluice.route = () => {
    const signedIn = !!sluice.token();
    document.getElementById("login").hidden = signedIn;
    document.getElementById("sign-out").hidden = !signedIn;
    if (!signedIn) {
      sluice.stopPolling();
      sluice.whoAmI("");
      sluice.show();
      document.getElementById("token").focus();
      return;
    }
    // A view starts its own polling; the previous view's stops first.
    sluice.stopPolling();
    const hash = location.hash.replace(/^#\/?/, "");
    const parts = hash.split("/").map(decodeURIComponent);
    if (sluice.role() === "operator") {
      sluice.operatorPage();
    } else if (parts[0] === "projects" && parts[1]) {
      sluice.projectPage(parts[1]);
    } else {
      sluice.projectList();
    }
  };

  // Finds out whose token it is: a tenant key answers `/v1/me`; the operator token is refused
  // there with `forbidden` and answers `/v1/tenants`.
  async function signIn(event) {
    event.preventDefault();
    const input = document.getElementById("token");
    const token = input.value.trim();
    if (!token) return;
    const me = await sluice.call("GET", "/v1/me", undefined, token);
    let role = null;
    if (me.status === 200 || sluice.code(me) === "tenant_disabled") {
      role = "tenant";
    } else if (sluice.code(me) === "forbidden") {
      const tenants = await sluice.call("GET", "/v1/tenants", undefined, token);
      if (tenants.status === 200) role = "operator";
    }
    if (!role) {
      sluice.alert("Not signed in: " + sluice.message(me));
      return;
    }
    input.value = "";
    sluice.alert("");
    sluice.signIn(token, role);
    if (location.hash === "" || location.hash === "#/") sluice.route();
    else if (role === "operator") location.hash = "#/tenants";
    else sluice.route();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("login-form").addEventListener("submit", signIn);
    document.getElementById("sign-out").addEventListener("click", () => {
      sluice.signOut();
      sluice.alert("");
      location.hash = "#/";
      sluice.route();
    });
    window.addEventListener("hashchange", sluice.route);
    // A tab brought back to the front refreshes at once instead of at its next tick.
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && sluice.token()) sluice.route();
    });
    sluice.route();
  });
})();
