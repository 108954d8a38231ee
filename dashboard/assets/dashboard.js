// socialsync ops dashboard: live numbers over Server-Sent Events, and select-all on the job list.
"use strict";
(function () {
  const base = document.body.dataset.base || "/dashboard";

  // Overview: each frame carries every queue's counts and the throughput chart.
  const status = document.getElementById("live-status");
  if (status) {
    let source = null;
    const apply = (frame) => {
      for (const [queue, q] of Object.entries(frame.queues || {})) {
        for (const [state, n] of Object.entries(q.counts || {})) {
          const cell = document.querySelector(`[data-cell="${queue}:${state}"]`);
          if (cell) cell.textContent = (q.estimated || []).includes(state) ? "≈ " + n : n;
        }
        const oldest = document.querySelector(`[data-oldest="${queue}"]`);
        if (oldest) oldest.textContent = q.oldest_pending ? span(frame.at - q.oldest_pending) : "—";
      }
      if (frame.chart) document.getElementById("throughput").innerHTML = frame.chart;
      document.getElementById("live-at").textContent = new Date(frame.at).toISOString().replace("T", " ").slice(0, 19);
      const err = document.getElementById("live-error");
      err.hidden = !frame.error;
      err.textContent = frame.error || "";
    };
    const start = () => {
      source = new EventSource(base + "/live");
      source.onmessage = (e) => apply(JSON.parse(e.data));
      source.onerror = () => { status.textContent = "Reconnecting…"; };
      source.onopen = () => { status.textContent = "Live"; status.classList.remove("paused"); };
    };
    const toggle = document.getElementById("live-toggle");
    toggle.addEventListener("click", () => {
      if (source) {
        source.close();
        source = null;
        status.textContent = "Paused";
        status.classList.add("paused");
        toggle.textContent = "Resume";
      } else {
        start();
        toggle.textContent = "Pause";
      }
    });
    start();
  }

  function span(ms) {
    ms = Math.max(0, ms);
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    if (ms < 7200000) return Math.floor(ms / 60000) + " min";
    if (ms < 172800000) return Math.floor(ms / 3600000) + " h";
    return Math.floor(ms / 86400000) + " d";
  }

  // Job list: the header checkbox selects every row on the page.
  const all = document.querySelector("[data-select-all]");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll('input[name="id"]')) box.checked = all.checked;
    });
  }
})();
