// The operator's view (`#/tenants`): the fleet's figures from `/v1/cluster` and `/metrics`, the
// tenants with disable and enable, and a form that creates a tenant.
"use strict";

(function () {
  const h = sluice.h;

  // The figures `/metrics` has for the fleet as this host sees it, by series name.
  function parseMetrics(text) {
    const values = {};
    for (const line of String(text).split("\n")) {
      const match = /^([a-z_]+) ([-0-9.eE+]+|NaN)$/.exec(line.trim());
      if (match) values[match[1]] = Number(match[2]);
    }
    return values;
  }

  // Tenants, cluster and metrics: three requests every 3 s.
  sluice.operatorPage = async () => {
    sluice.whoAmI("Operator");
    const fleet = h("div", { id: "fleet" });
    const tenants = h("tbody", {});
    const created = h("div", { id: "created", role: "status" });
    sluice.show(
      h("h1", {}, "Fleet"),
      fleet,
      h("h2", {}, "Tenants"),
      h("table", { class: "list", id: "tenants", "aria-label": "Tenants" },
        h("thead", {}, h("tr", {}, ...["Tenant", "Id", "Tier", "Status", "Created", "Action"].map((t) => h("th", { scope: "col" }, t)))),
        tenants),
      createForm(created),
      created,
    );
    const changed = sluice.changes();
    sluice.poll(async () => {
      const [list, cluster, metrics] = await Promise.all([
        sluice.call("GET", "/v1/tenants"),
        sluice.call("GET", "/v1/cluster"),
        sluice.call("GET", "/metrics"),
      ]);
      if (sluice.refused(list) || sluice.refused(cluster)) return;
      sluice.alert("");
      const figures = metrics.status === 200 ? parseMetrics(metrics.body) : {};
      fleet.replaceChildren(fleetFigures(list.body.tenants, cluster.body, figures));
      if (changed("tenants", list.body)) tenants.replaceChildren(...list.body.tenants.map(tenantRow));
    }, 3000);
  };

  function fleetFigures(tenants, cluster, m) {
    const active = tenants.filter((t) => t.status === "active").length;
    const hosts = cluster.enabled ? cluster.hosts : [];
    const alive = hosts.filter((host) => host.alive).length;
    const polls = hosts.reduce((sum, host) => sum + host.polls_per_s, 0);
    const number = (v, digits) => (v === undefined ? "–" : digits === undefined ? String(v) : v.toFixed(digits));
    const cards = [
      h("div", { class: "card" },
        sluice.facts([
          ["Tenants", tenants.length + " (" + active + " active)"],
          ["Hosts", cluster.enabled ? alive + " alive of " + hosts.length : "one host (no cluster)"],
          ["Polls per second", cluster.enabled ? polls.toFixed(1) : "–"],
          ["Runs waiting for a slot", number(m.sluice_runs_waiting)],
          ["Recent schedule lag", m.sluice_schedule_lag_recent_seconds === undefined ? "–" : sluice.ms(m.sluice_schedule_lag_recent_seconds * 1000)],
          ["Saturated", m.sluice_saturated === undefined ? "–" : m.sluice_saturated ? "yes" : "no"],
          ["Runs waiting in the outbox", number(m.sluice_outbox_depth)],
        ])),
      h("div", { class: "card" },
        m.sluice_plugin_memory_budget_bytes
          ? sluice.meter("Plugin memory", m.sluice_plugin_memory_bytes || 0, m.sluice_plugin_memory_budget_bytes, sluice.bytes)
          : null,
        sluice.facts([
          ["Peak plugin memory", sluice.bytes(m.sluice_plugin_memory_peak_bytes)],
          ["Plugins loaded", number(m.sluice_plugins_loaded)],
          ["Ready", m.sluice_ready === undefined ? "–" : m.sluice_ready ? "yes" : "shutting down"],
        ])),
    ];
    if (cluster.enabled) {
      cards.push(h("div", { class: "card" },
        h("table", { class: "list", "aria-label": "Hosts" },
          h("thead", {}, h("tr", {}, ...["Host", "Alive", "Leases", "Projects", "Polls/s"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, hosts.map((host) => h("tr", {},
            h("td", {}, host.id + (host.id === cluster.this_host ? " (this one)" : "")),
            h("td", {}, host.alive ? "yes" : "no"),
            h("td", { class: "num" }, String(host.leases)),
            h("td", { class: "num" }, String(host.projects)),
            h("td", { class: "num" }, host.polls_per_s.toFixed(1))))))));
    }
    return h("div", { class: "cards" }, cards);
  }

  function tenantRow(t) {
    const next = t.status === "active" ? "disabled" : "active";
    const label = (t.status === "active" ? "Disable " : "Enable ") + t.name;
    const button = h("button", { type: "button", class: "toggle", "aria-label": label }, t.status === "active" ? "Disable" : "Enable");
    button.addEventListener("click", async () => {
      button.disabled = true;
      const answer = await sluice.call("PATCH", "/v1/tenants/" + encodeURIComponent(t.id), { status: next });
      if (sluice.refused(answer)) return;
      if (answer.status !== 200) sluice.alert(sluice.message(answer));
      else {
        row.querySelector(".badge").replaceWith(sluice.badge(answer.body.status));
        button.textContent = answer.body.status === "active" ? "Disable" : "Enable";
        button.setAttribute("aria-label", (answer.body.status === "active" ? "Disable " : "Enable ") + t.name);
      }
      button.disabled = false;
    });
    const row = h("tr", { "data-tenant": t.id },
      h("td", {}, t.name),
      h("td", {}, h("code", {}, t.id)),
      h("td", {}, t.tier),
      h("td", {}, sluice.badge(t.status)),
      h("td", {}, sluice.time(t.created_at)),
      h("td", {}, button));
    return row;
  }

  // The new tenant's key appears once, here, as the API shows it once; it is not kept.
  function createForm(created) {
    const name = h("input", { id: "tenant-name", type: "text", required: true, maxlength: "100", autocomplete: "off" });
    const tier = h("select", { id: "tenant-tier" }, ["free", "standard", "premium"].map((t) => h("option", { value: t }, t)));
    const form = h("form", { id: "create-tenant", class: "inline", method: "post", "aria-labelledby": "create-title" },
      h("h2", { id: "create-title" }, "Create a tenant"),
      h("label", { for: "tenant-name" }, "Name"), name,
      h("label", { for: "tenant-tier" }, "Tier"), tier,
      h("button", { type: "submit" }, "Create"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const answer = await sluice.call("POST", "/v1/tenants", { name: name.value, tier: tier.value });
      if (sluice.refused(answer)) return;
      if (answer.status !== 201) {
        created.replaceChildren(h("p", { class: "error" }, sluice.message(answer)));
        return;
      }
      name.value = "";
      const key = h("code", { id: "new-key" }, answer.body.api_key);
      created.replaceChildren(h("div", { class: "panel" },
        h("p", {}, "Created " + answer.body.name + " (" + answer.body.id + "). Hand this API key to the tenant now: it is shown only once."),
        key, " ", sluice.copyButton("Copy key", () => key.textContent)));
    });
    return form;
  }
})();
