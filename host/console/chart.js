// A small SVG chart of a project's runs over time: each run's duration as a bar coloured by
// outcome, and its start lag (how late it started after its scheduled time) as a line.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 600;
  const H = 160;
  const PAD = { left: 48, right: 8, top: 10, bottom: 22 };

  const svg = (tag, attributes, text) => {
    const element = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    if (text !== undefined) element.textContent = text;
    return element;
  };

  // `runs` come newest first, as the API lists them.
  sluice.runChart = (runs) => {
    const points = runs
      .slice()
      .reverse()
      .map((run) => {
        const started = Date.parse(run.started_at);
        const finished = Date.parse(run.finished_at);
        const scheduled = Date.parse(run.scheduled_at);
        return {
          outcome: run.outcome,
          duration: Math.max(0, finished - started) || 0,
          lag: Math.max(0, started - scheduled) || 0,
        };
      });
    const max = Math.max(1, ...points.map((p) => Math.max(p.duration, p.lag)));
    const plotW = W - PAD.left - PAD.right;
    const plotH = H - PAD.top - PAD.bottom;
    const y = (ms) => PAD.top + plotH - (ms / max) * plotH;
    const slot = plotW / Math.max(1, points.length);
    const chart = svg("svg", {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "aria-label": `Duration and start lag of the last ${points.length} runs, oldest on the left; longest ${sluice.ms(max)}`,
    });
    chart.append(svg("line", { x1: PAD.left, y1: y(0), x2: W - PAD.right, y2: y(0), class: "axis" }));
    chart.append(svg("text", { x: PAD.left - 4, y: y(max) + 4, class: "tick", "text-anchor": "end" }, sluice.ms(max)));
    chart.append(svg("text", { x: PAD.left - 4, y: y(0), class: "tick", "text-anchor": "end" }, "0"));
    points.forEach((p, i) => {
      const height = Math.max(1, y(0) - y(p.duration));
      const bar = svg("rect", {
        x: PAD.left + i * slot + (slot - Math.max(1, Math.min(slot * 0.7, 40))) / 2,
        y: y(0) - height,
        width: Math.max(1, Math.min(slot * 0.7, 40)),
        height,
        class: "bar bar-" + p.outcome,
      });
      bar.append(svg("title", {}, `${p.outcome}: ${sluice.ms(p.duration)}, started ${sluice.ms(p.lag)} late`));
      chart.append(bar);
    });
    if (points.length > 1) {
      const line = points.map((p, i) => `${PAD.left + i * slot + slot / 2},${y(p.lag)}`).join(" ");
      chart.append(svg("polyline", { points: line, class: "lag" }));
    }
    chart.append(svg("text", { x: PAD.left, y: H - 6, class: "tick" }, "bars: duration (green succeeded, red failed) · line: start lag"));
    return chart;
  };
})();
