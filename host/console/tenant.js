// The tenant's views: the project list with usage against quotas (`#/projects`), and one
// project's page (`#/projects/<id>`) with its onboarding, configuration, actions and runs.
"use strict";

(function () {
  const h = sluice.h;

  // The list refreshes projects and usage: two requests every 3 s. The tenant record and the
  // plugin count (for the quotas) change rarely and are read once per visit.
  sluice.projectList = async () => {
    const [me, plugins] = await Promise.all([sluice.call("GET", "/v1/me"), sluice.call("GET", "/v1/plugins")]);
    if (sluice.refused(me)) return;
    const tenant = me.body;
    sluice.whoAmI("Tenant " + tenant.name);
    const pluginCount = plugins.status === 200 ? plugins.body.plugins.length : null;
    const table = h("tbody", {});
    const usage = h("div", { id: "usage" });
    sluice.show(
      h("h1", {}, "Projects"),
      h("table", { class: "list", id: "projects", "aria-label": "Projects" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Project"), h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col" }, "Schedule"), h("th", { scope: "col", class: "wide" }, "What it is doing"))),
        table),
      h("h2", {}, "Usage and quotas"),
      usage,
    );
    const changed = sluice.changes();
    sluice.poll(async () => {
      const [projects, used] = await Promise.all([sluice.call("GET", "/v1/projects"), sluice.call("GET", "/v1/usage")]);
      if (sluice.refused(projects) || sluice.refused(used)) return;
      sluice.alert("");
      const listed = changed("projects", projects.body);
      if (!changed("usage", used.body) && !listed) return;
      const rows = projects.body.projects.map((p) =>
        h("tr", { "data-project": p.id },
          h("td", {}, h("a", { href: "#/projects/" + encodeURIComponent(p.id) }, p.name)),
          h("td", {}, sluice.badge(p.status)),
          h("td", {}, p.schedule),
          h("td", { class: "wide" }, p.status_message || "running on schedule")));
      if (rows.length === 0) {
        rows.push(h("tr", {}, h("td", { colspan: "4" }, "No projects yet: create one with POST /v1/projects.")));
      }
      table.replaceChildren(...rows);
      usage.replaceChildren(usageFigures(tenant.quotas, used.body, projects.body.projects.length, pluginCount));
    }, 3000);
  };

  function usageFigures(quotas, usage, projects, plugins) {
    const undelivered = usage.disk.outbox_bytes + usage.disk.parked_bytes;
    return h("div", { class: "cards" },
      h("div", { class: "card" },
        sluice.meter("Projects", projects, quotas.max_projects),
        plugins === null ? null : sluice.meter("Plugins", plugins, quotas.max_plugins),
        sluice.meter("Waiting for Kinesis", undelivered, quotas.max_outbox_bytes, sluice.bytes)),
      h("div", { class: "card" },
        sluice.facts([
          ["Runs", String(usage.runs)],
          ["Failed runs", String(usage.runs_failed)],
          ["Records delivered", String(usage.records_delivered)],
          ["Fetched", sluice.bytes(usage.bytes_fetched)],
          ["Delivered", sluice.bytes(usage.bytes_delivered)],
          ["Plugin time", sluice.ms(usage.plugin_ms)],
          ["Shortest schedule", quotas.min_interval_seconds + " s"],
        ])));
  }

  // One project: the project and its runs, two requests every 2 s.
  sluice.projectPage = async (id) => {
    const path = "/v1/projects/" + encodeURIComponent(id);
    const head = h("div", { id: "project-head" });
    const onboarding = h("div", { id: "onboarding" });
    const config = h("div", { id: "config" });
    const runs = h("div", { id: "runs" });
    const result = h("p", { id: "action-result", role: "status" });
    sluice.show(h("p", {}, h("a", { href: "#/projects" }, "← All projects")), head, result, onboarding, runs, config);
    let stackName = "sluice-tenant";
    const changed = sluice.changes();
    sluice.poll(async () => {
      const [project, history] = await Promise.all([sluice.call("GET", path), sluice.call("GET", path + "/runs?limit=50")]);
      if (project.status === 404) {
        // Another tenant's id looks exactly like an absent one: the API says 404 for both.
        sluice.alert("");
        sluice.stopPolling();
        sluice.show(h("p", {}, h("a", { href: "#/projects" }, "← All projects")),
          h("h1", { id: "not-found" }, "Project not found"),
          h("p", {}, "You have no project with the id " + id + ". Check the link, or pick one from your projects."));
        return;
      }
      if (sluice.refused(project) || sluice.refused(history)) return;
      sluice.alert("");
      const p = project.body;
      const shown = changed("project", p);
      if (!changed("runs", history.body) && !shown) return;
      head.replaceChildren(projectHead(p, path, result));
      if (p.status === "pending") {
        // Rebuilt only when absent, so that the stack name being typed is kept.
        if (!onboarding.firstChild) onboarding.append(onboardingPanel(p, () => stackName, (v) => (stackName = v)));
      } else {
        onboarding.replaceChildren();
      }
      config.replaceChildren(configuration(p));
      runs.replaceChildren(runHistory(history.body.runs));
    }, 2000);
  };

  function projectHead(p, path, result) {
    const act = (label, action, enabled) => {
      const button = h("button", { type: "button", id: "action-" + action, disabled: !enabled }, label);
      button.addEventListener("click", async () => {
        button.disabled = true;
        const answer = await sluice.call("POST", path + "/" + action);
        if (sluice.refused(answer)) return;
        result.textContent = answer.status < 300
          ? (action === "run" ? "Run started; it appears under Runs when it ends." : "Done: the project is " + answer.body.status + ".")
          : sluice.message(answer);
      });
      return button;
    };
    return h("div", {},
      h("h1", {}, p.name, " ", sluice.badge(p.status)),
      h("p", { id: "status-message" }, p.status_message || "Running on schedule."),
      p.backoff_until ? h("p", {}, "Backing off until " + sluice.time(p.backoff_until) + ".") : null,
      h("div", { class: "actions" },
        act("Pause", "pause", p.status !== "paused"),
        act("Resume", "resume", p.status === "paused"),
        act("Run now", "run", true)));
  }

  // The stack update that makes the role trust this project: the tenant's external id goes in
  // `ExternalId`, a project's own in `ProjectExternalIds`; every other parameter keeps its value.
  function updateStackCommand(p, stack) {
    const own = p.trust === "project";
    const set = { PlatformPrincipalArn: p.onboarding.platform_principal_arn };
    set[own ? "ProjectExternalIds" : "ExternalId"] = p.onboarding.external_id;
    const keep = ["StreamName", "StreamMode", "ShardCount", "ApiKey", "NamePrefix", own ? "ExternalId" : "ProjectExternalIds"];
    const quote = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
    const lines = [
      "aws cloudformation update-stack --stack-name " + quote(stack || "sluice-tenant"),
      "  --use-previous-template --capabilities CAPABILITY_IAM",
      "  --parameters",
    ];
    for (const [key, value] of Object.entries(set)) lines.push("    " + quote("ParameterKey=" + key + ",ParameterValue=" + value));
    for (const key of keep) lines.push("    ParameterKey=" + key + ",UsePreviousValue=true");
    return lines.join(" \\\n");
  }

  function onboardingPanel(p, getStack, setStack) {
    const command = h("pre", { id: "onboarding-command", tabindex: "0", "aria-label": "The stack update command" }, updateStackCommand(p, getStack()));
    const stack = h("input", { id: "stack-name", type: "text", value: getStack(), spellcheck: "false" });
    stack.addEventListener("input", () => {
      setStack(stack.value);
      command.textContent = updateStackCommand(p, stack.value);
    });
    const note = p.trust === "project"
      ? "This project has an external id of its own: if the stack already lists other ids in ProjectExternalIds, add this one to them (comma-separated)."
      : "This is your tenant's external id: once the stack trusts it, every project of yours on this role runs without another update.";
    return h("section", { class: "panel", "aria-labelledby": "onboarding-title" },
      h("h2", { id: "onboarding-title" }, "Finish onboarding"),
      h("p", {}, "The project waits until your role trusts the platform. Update your tenant stack with these values; the next run then assumes the role and the project turns active."),
      sluice.facts([
        ["Platform principal", h("code", { id: "onboarding-principal" }, p.onboarding.platform_principal_arn)],
        ["External id", h("code", { id: "onboarding-external-id" }, p.onboarding.external_id)],
      ]),
      h("p", {}, note),
      h("label", { for: "stack-name" }, "Your stack's name"),
      stack,
      command,
      sluice.copyButton("Copy command", () => command.textContent));
  }

  function configuration(p) {
    const key = p.source.api_key;
    const keyText = key
      ? "from " + key.secret_arn + (key.header ? " in header " + key.header : key.query_param ? " in query parameter " + key.query_param : "")
      : "none";
    const settings = Object.entries(p.plugin_settings || {}).map(([k, v]) => k + " = " + v).join(", ") || "none";
    return h("section", { "aria-labelledby": "config-title" },
      h("h2", { id: "config-title" }, "Configuration"),
      sluice.facts([
        ["Id", p.id],
        ["Schedule", p.schedule + " (" + p.timezone + ")"],
        ["Source", p.source.method + " " + p.source.url],
        ["API key", keyText],
        ["Plugin", p.plugin_id],
        ["Plugin settings", settings],
        ["Stream", p.target.stream_arn],
        ["Role", p.target.role_arn],
        ["Trust", p.trust === "project" ? "its own external id" : "the tenant's external id"],
        ["Pages per run", String(p.max_pages)],
        ["Failures in a row", String(p.consecutive_failures)],
        ["Created", sluice.time(p.created_at)],
        ["Changed", sluice.time(p.updated_at)],
      ]),
      h("p", { class: "hint" }, "Change the configuration with PATCH /v1/projects/" + p.id + "."));
  }

  function runHistory(runs) {
    const delivered = runs.reduce((sum, r) => sum + (r.outcome === "succeeded" ? r.records : 0), 0);
    const rows = runs.map((r) => {
      const duration = Date.parse(r.finished_at) - Date.parse(r.started_at);
      const lag = Date.parse(r.started_at) - Date.parse(r.scheduled_at);
      const error = r.error ? h("span", {}, h("strong", {}, r.error.stage + ": "), r.error.message) : "";
      return h("tr", { class: "run" },
        h("td", {}, sluice.time(r.started_at)),
        h("td", {}, r.trigger),
        h("td", {}, sluice.badge(r.outcome)),
        h("td", { class: "num" }, String(r.records)),
        h("td", { class: "num" }, sluice.ms(duration)),
        h("td", { class: "num" }, sluice.ms(Math.max(0, lag))),
        h("td", { class: "wide" }, error));
    });
    return h("section", { "aria-labelledby": "runs-title" },
      h("h2", { id: "runs-title" }, "Runs"),
      runs.length === 0
        ? h("p", { id: "no-runs" }, "No runs yet.")
        : [
          h("p", { id: "runs-summary" }, runs.length + (runs.length === 1 ? " recent run, " : " recent runs, ") + delivered + " records delivered."),
          sluice.runChart(runs),
          h("table", { class: "list", id: "run-table", "aria-label": "Runs, newest first" },
            h("thead", {}, h("tr", {}, ...["Started", "Trigger", "Outcome", "Records", "Duration", "Lag", "Failing stage and message"]
              .map((t, i) => h("th", { scope: "col", class: i === 6 ? "wide" : null }, t)))),
            h("tbody", {}, rows)),
        ]);
  }
})();
