// The actor console: live charts from /api/admin/stream, invariant warnings, every live actor
// (sortable, filterable, paged, refreshed each second while the tab is visible) with a drill-in
// to its state, task timelines, the Supervisor's jobs with "run now", the platform config with
// validation, a diff before saving, version history and rollback, QA results, the
// withdrawals queue, and bounties: disputes to resolve, open bounties' escrow and timers.
"use strict";

(function () {
  const { api, stream, h, $, $$, cents, time, until, toast, showError } = CJ;

  // The admin token lives only as long as this tab (sessionStorage), unlike the buyers' and
  // workers' tokens: a console left open on a shared screen forgets it when closed.
  let token = sessionStorage.getItem("clawjobs.admin");
  let view = "overview";
  let live = null;
  let timers = [];
  const authed = (path, opts = {}) => api(path, { ...opts, token });

  const handle = CJ.errorHandler(() => signout(), "That admin token is not known here.");

  const visible = () => document.visibilityState === "visible";

  // ---- signing in and views -----------------------------------------------------------------

  async function signin(ev) {
    ev.preventDefault();
    const value = ev.target.token.value.trim();
    try {
      await api("/api/admin/invariants", { token: value });
      token = value;
      sessionStorage.setItem("clawjobs.admin", token);
      ev.target.token.value = "";
      enter();
    } catch (e) {
      showError($("#signin-error"), e.status === 403 ? new Error("That is not an admin token.") : e.status === 401 ? new Error("That token is not known here.") : e);
    }
  }

  function signout() {
    timers.forEach(clearInterval);
    timers = [];
    if (live) live.stop();
    live = null;
    token = null;
    sessionStorage.removeItem("clawjobs.admin");
    CJ.signedIn(false);
  }

  function enter() {
    CJ.signedIn(true);
    show(location.hash.replace("#", "") || "overview");
    startCharts();
    checkInvariants();
    timers.push(setInterval(() => visible() && view === "actors" && loadActors(), 1000));
    timers.push(setInterval(() => visible() && view === "actors" && drilled && loadDrill(), 1000));
    timers.push(setInterval(() => visible() && view === "jobs" && loadJobs(), 2000));
    timers.push(setInterval(() => visible() && checkInvariants(), 30000));
  }

  function show(name) {
    if (!document.getElementById("view-" + name)) name = "overview";
    view = name;
    $$(".console-tabs .tab").forEach((t) => t.classList.toggle("active", t.dataset.view === name));
    $$(".view").forEach((v) => (v.hidden = v.id !== "view-" + name));
    history.replaceState(null, "", "#" + name);
    ({ actors: loadActors, jobs: loadJobs, config: loadConfig, qa: loadQa, withdrawals: loadWithdrawals, bounties: loadBounties }[name] || (() => {}))();
  }

  // ---- charts (drawn on canvas: no charting library) -----------------------------------------

  const series = { tps: [], p99: [], queue: [], sessions: [] };
  const KEEP = 120;

  function startCharts() {
    if (live) live.stop();
    live = stream("/api/admin/stream", {
      token,
      onEvent: (type, f) => {
        if (type === "unauthorized") return handle({ status: 401 });
        if (type !== "figures" || !f) return;
        const sessions = (f.ws_sessions || 0) + (f.parked_claimers || 0);
        push("tps", f.tasks_completed_per_s, String(f.tasks_completed_per_s));
        push("p99", f.p99_latency_ms === null ? 0 : f.p99_latency_ms, f.p99_latency_ms === null ? "idle" : "≤ " + f.p99_latency_ms);
        push("queue", f.queue_depth, String(f.queue_depth));
        push("sessions", sessions, `${f.ws_sessions} ws · ${f.parked_claimers} polling`);
      },
    });
  }

  function push(name, value, label) {
    const s = series[name];
    s.push(Number(value) || 0);
    if (s.length > KEEP) s.shift();
    $("#v-" + name).textContent = label;
    if (visible()) draw($("#c-" + name), s);
  }

  function draw(canvas, values) {
    const ctx = canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 300;
    const hgt = canvas.clientHeight || 90;
    if (canvas.width !== w * ratio) {
      canvas.width = w * ratio;
      canvas.height = hgt * ratio;
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const max = Math.max(1, ...values);
    ctx.strokeStyle = "#dde1e6";
    ctx.beginPath();
    ctx.moveTo(0, hgt - 0.5);
    ctx.lineTo(w, hgt - 0.5);
    ctx.stroke();
    ctx.fillStyle = "#5c6670";
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(String(Math.round(max * 10) / 10), 2, 10);
    ctx.strokeStyle = "#1f6feb";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    // The newest figure at the right edge; older ones scroll left.
    values.forEach((v, i) => {
      const x = w - ((values.length - 1 - i) / (KEEP - 1)) * w;
      const y = hgt - 2 - (v / max) * (hgt - 14);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  // ---- invariants ---------------------------------------------------------------------------

  async function checkInvariants() {
    try {
      const inv = await authed("/api/admin/invariants");
      const pill = $("#health-pill");
      pill.textContent = inv.ok ? "all invariants hold" : inv.warnings.length + " warnings";
      pill.classList.toggle("bad", !inv.ok);
      $("#inv-summary").textContent = inv.ok
        ? `Checked ${time(inv.checked_at)}: the ledger balances (${inv.ledger.accounts} accounts, sum ${inv.ledger.sum_cents}), no task is stuck past its deadline, and the Dispatcher agrees with the store.`
        : `Checked ${time(inv.checked_at)}:`;
      $("#inv-warnings").replaceChildren(...inv.warnings.map((w) =>
        h("li", { class: "warning" }, h("strong", {}, w.kind.replace(/_/g, " ")), " — ", w.message,
          h("pre", { class: "state" }, JSON.stringify(w.details, null, 2)))));
    } catch (e) {
      handle(e);
    }
  }

  // ---- actors -------------------------------------------------------------------------------

  let sort = "mailbox_len";
  let ascending = false;
  let offset = 0;
  let total = 0;
  const PAGE = 100;
  let drilled = null; // { kind, id }

  async function loadActors() {
    const f = $("#actor-filter");
    const params = new URLSearchParams({ sort, order: ascending ? "asc" : "desc", limit: String(PAGE) });
    if (f.kind.value) params.set("kind", f.kind.value);
    if (f.q.value.trim()) params.set("q", f.q.value.trim());
    if (offset) params.set("cursor", String(offset));
    try {
      const page = await authed("/api/admin/actors?" + params);
      total = page.total;
      fillKinds(page.kinds);
      $("#actor-count").textContent = `${page.total} matching · ${Object.values(page.kinds).reduce((a, b) => a + b, 0)} live`;
      $("#actor-rows").replaceChildren(...page.data.map(actorRow));
      $("#actors-page").textContent = page.total ? `${offset + 1}–${offset + page.data.length} of ${page.total}` : "";
      $("#actors-prev").hidden = offset === 0;
      $("#actors-next").hidden = !page.has_more;
      $$(".actors th[data-sort]").forEach((th) => {
        th.classList.toggle("sorted", th.dataset.sort === sort);
        th.dataset.dir = th.dataset.sort === sort ? (ascending ? "▲" : "▼") : "";
      });
    } catch (e) {
      handle(e);
    }
  }

  function fillKinds(kinds) {
    const select = $("#actor-kind");
    const have = new Set($$("option", select).map((o) => o.value));
    for (const [k, n] of Object.entries(kinds)) {
      if (!have.has(k)) select.append(h("option", { value: k }, k));
      const opt = $$("option", select).find((o) => o.value === k);
      opt.textContent = `${k} (${n})`;
    }
  }

  function summary(s) {
    return Object.entries(s || {}).map(([k, v]) => `${k.replace(/_/g, " ")} ${k.endsWith("_cents") ? cents(v) : v}`).join(" · ");
  }

  function wait(us) {
    if (!us) return "—";
    return us < 1000 ? us + " µs" : us < 1e6 ? (us / 1000).toFixed(1) + " ms" : (us / 1e6).toFixed(2) + " s";
  }

  function actorRow(a) {
    const open = drilled && drilled.kind === a.kind && drilled.id === a.id;
    return h("tr", { class: "clickable" + (open ? " open" : ""), dataset: { kind: a.kind, id: a.id }, onclick: () => drill(a.kind, a.id) },
      h("td", {}, a.kind), h("td", { class: "mono" }, a.id),
      h("td", { class: "num" + (a.mailbox_len > 100 ? " warn" : "") }, String(a.mailbox_len)),
      h("td", { class: "num" }, String(a.messages_handled)),
      h("td", { class: "num" }, String(a.messages_per_s)),
      h("td", { class: "num" }, wait(a.slowest_wait_us)),
      h("td", { class: "muted" }, summary(a.summary)));
  }

  function drill(kind, id) {
    drilled = { kind, id };
    $("#actor-drill").hidden = false;
    $("#drill-title").textContent = `${kind} ${id}`;
    loadDrill();
    $$("#actor-rows tr").forEach((tr) => tr.classList.toggle("open", tr.dataset.kind === kind && tr.dataset.id === id));
  }

  async function loadDrill() {
    const d = drilled;
    if (!d) return;
    try {
      const r = await authed(`/api/admin/actors/${encodeURIComponent(d.kind)}/${encodeURIComponent(d.id)}`);
      if (drilled !== d) return;
      const a = r.actor;
      $("#drill-figures").textContent = `mailbox ${a.mailbox_len} · handled ${a.messages_handled} · ${a.messages_per_s} msg/s · slowest wait ${wait(a.slowest_wait_us)} · started ${time(a.started_at)}`;
      $("#drill-state").replaceChildren(renderJson(r.state, 0));
    } catch (e) {
      if (e.status === 404) {
        $("#drill-figures").textContent = "This actor has stopped.";
        drilled = null;
      } else handle(e);
    }
  }

  // State as indented text; task ids open their timeline. Keys that could carry a secret are
  // masked here as well as by the server.
  const SECRET = /token|secret|password|api_key/i;
  function renderJson(value, depth, key) {
    const pad = "  ".repeat(depth);
    if (key && SECRET.test(key)) return document.createTextNode('"[redacted]"');
    if (Array.isArray(value)) {
      if (!value.length) return document.createTextNode("[]");
      const frag = document.createDocumentFragment();
      frag.append("[\n");
      value.forEach((v, i) => {
        frag.append(pad + "  ", renderJson(v, depth + 1), i < value.length - 1 ? ",\n" : "\n");
      });
      frag.append(pad + "]");
      return frag;
    }
    if (value && typeof value === "object") {
      const keys = Object.keys(value);
      if (!keys.length) return document.createTextNode("{}");
      const frag = document.createDocumentFragment();
      frag.append("{\n");
      keys.forEach((k, i) => {
        frag.append(pad + "  ", h("span", { class: "key" }, JSON.stringify(k)), ": ", renderJson(value[k], depth + 1, k), i < keys.length - 1 ? ",\n" : "\n");
      });
      frag.append(pad + "}");
      return frag;
    }
    if (typeof value === "string" && /^task_[0-9a-f]+$/.test(value)) {
      return h("button", { type: "button", class: "link mono", title: "Show this task's timeline", onclick: () => openTimeline(value) }, JSON.stringify(value));
    }
    return document.createTextNode(JSON.stringify(value));
  }

  // ---- task timeline ------------------------------------------------------------------------

  function openTimeline(taskId) {
    $("#timeline-form").task_id.value = taskId;
    show("timeline");
    loadTimeline(taskId);
  }

  async function loadTimeline(taskId) {
    showError($("#timeline-error"), null);
    try {
      const t = await authed(`/api/admin/tasks/${encodeURIComponent(taskId)}/timeline`);
      $("#timeline-table").hidden = false;
      $("#timeline-rows").replaceChildren(...t.events.map((e) =>
        h("tr", { dataset: { event: e.event } },
          h("td", {}, time(e.at)), h("td", {}, h("span", { class: "badge ev-" + e.event }, e.event)),
          h("td", { class: "mono" }, e.actor),
          h("td", { class: "muted" }, Object.entries(e.details).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ")))));
    } catch (e) {
      $("#timeline-table").hidden = true;
      handle(e, $("#timeline-error"));
    }
  }

  // ---- supervisor jobs ----------------------------------------------------------------------

  async function loadJobs() {
    try {
      const s = await authed("/api/admin/supervisor/jobs");
      $("#job-rows").replaceChildren(...s.jobs.map((j) =>
        h("tr", { dataset: { job: j.name } },
          h("td", {}, h("strong", {}, j.name), h("div", { class: "muted small" }, j.what)),
          h("td", {}, j.every_ms >= 1000 ? j.every_ms / 1000 + " s" : j.every_ms + " ms"),
          h("td", {}, j.last_run ? time(j.last_run) : "not yet", j.last_duration_ms !== null ? h("div", { class: "muted small" }, j.last_duration_ms + " ms") : null),
          h("td", {}, j.running ? h("span", { class: "badge pending" }, "running") : j.last_ok === null ? "—" : h("span", { class: "badge " + (j.last_ok ? "ok" : "fail") }, j.last_result)),
          h("td", {}, until(j.next_run)),
          h("td", { class: "num" }, `${j.runs}${j.failures ? " (" + j.failures + " failed)" : ""}`),
          h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => runJob(j.name) }, "Run now")))));
      $("#jobs-supervised").textContent = "Supervised actors: " + Object.entries(s.supervised).map(([k, v]) => `${k.replace(/_/g, " ")} ${v ? "alive" : "restarting"}`).join(" · ");
    } catch (e) {
      handle(e);
    }
  }

  async function runJob(name) {
    try {
      await authed(`/api/admin/supervisor/jobs/${encodeURIComponent(name)}/run`, { method: "POST" });
      toast(`${name} started (audit-logged).`);
      setTimeout(loadJobs, 400);
    } catch (e) {
      handle(e);
    }
  }

  // ---- config -------------------------------------------------------------------------------

  let original = "";
  let loadedKey = null;

  function stripMeta(doc) {
    const { key, version, updated_at, updated_by, ...rest } = doc;
    return rest;
  }

  async function loadConfig() {
    const key = $("#config-key").value;
    showError($("#config-error"), null);
    $("#config-diff").hidden = true;
    $("#config-save").disabled = true;
    try {
      const doc = await authed("/api/admin/config/" + encodeURIComponent(key));
      original = JSON.stringify(stripMeta(doc), null, 2);
      loadedKey = key;
      $("#config-text").value = original;
      $("#config-version").textContent = `version ${doc.version}, changed ${time(doc.updated_at)}${doc.updated_by ? " by " + doc.updated_by : ""}`;
      loadHistory(key, doc.version);
    } catch (e) {
      handle(e, $("#config-error"));
    }
  }

  async function loadHistory(key, current) {
    try {
      const h = await authed(`/api/admin/config/${encodeURIComponent(key)}/history`);
      $("#config-history").replaceChildren(...h.versions.map((v) =>
        configRow(v, current, key)));
    } catch (e) {
      handle(e);
    }
  }

  function configRow(v, current, key) {
    const text = JSON.stringify(stripMeta(v), null, 2);
    return h("tr", { dataset: { version: String(v.version) } },
      h("td", {}, String(v.version), v.version === current ? h("span", { class: "badge ok" }, "in force") : null),
      h("td", {}, time(v.updated_at)), h("td", { class: "mono" }, v.updated_by || ""),
      h("td", {}, v.version === current ? null : [
        h("button", { type: "button", class: "link", onclick: () => {
          $("#config-text").value = text;
          review();
        } }, "Compare"), " ",
        h("button", { type: "button", class: "secondary", onclick: () => rollback(key, v.version) }, "Roll back to this"),
      ]));
  }

  async function rollback(key, version) {
    showError($("#config-error"), null);
    try {
      const stored = await authed(`/api/admin/config/${encodeURIComponent(key)}/rollback`, { method: "POST", body: { version } });
      toast(`${key} is back to version ${version}'s content, stored as version ${stored.version}.`);
      loadConfig();
    } catch (e) {
      handle(new Error("Not rolled back: " + e.message), $("#config-error"));
    }
  }

  // A line diff (longest common subsequence): what Save would change.
  function diff(a, b) {
    const x = a.split("\n");
    const y = b.split("\n");
    const n = x.length;
    const m = y.length;
    const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    const out = [];
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) {
        out.push({ op: " ", line: x[i++] });
        j++;
      } else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) out.push({ op: "+", line: y[j++] });
      else out.push({ op: "-", line: x[i++] });
    }
    return out;
  }

  function review() {
    showError($("#config-error"), null);
    const text = $("#config-text").value;
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      showError($("#config-error"), new Error("Not valid JSON: " + e.message));
      $("#config-save").disabled = true;
      return null;
    }
    const pretty = JSON.stringify(parsed, null, 2);
    const changes = diff(original, pretty);
    const changed = changes.some((c) => c.op !== " ");
    const box = $("#config-diff");
    box.hidden = false;
    box.replaceChildren(...(changed
      ? changes.filter((c, k) => c.op !== " " || changes.slice(Math.max(0, k - 2), k + 3).some((d) => d.op !== " "))
          .map((c) => h("span", { class: c.op === "+" ? "add" : c.op === "-" ? "del" : "same" }, c.op + " " + c.line + "\n"))
      : [h("span", { class: "same" }, "No changes.")]));
    $("#config-save").disabled = !changed;
    return changed ? parsed : null;
  }

  async function save() {
    const doc = review();
    if (!doc) return;
    try {
      const stored = await authed("/api/admin/config/" + encodeURIComponent(loadedKey), { method: "PUT", body: doc });
      toast(`Saved ${loadedKey} as version ${stored.version}; in force now.`);
      loadConfig();
    } catch (e) {
      const field = e.details && e.details.field ? ` (${e.details.field})` : "";
      handle(new Error("Not saved: " + e.message + field), $("#config-error"));
    }
  }

  // ---- QA -----------------------------------------------------------------------------------

  async function loadQa() {
    const verdict = $("#qa-verdict").value;
    try {
      const [results, stats] = await Promise.all([
        authed("/api/admin/qa/results?limit=50" + (verdict ? "&verdict=" + verdict : "")),
        authed("/api/admin/qa/stats"),
      ]);
      $("#qa-rows").replaceChildren(...(results.data.length ? results.data.map((r) =>
        h("tr", {}, h("td", {}, time(r.decided_at)), h("td", {}, r.qa_type),
          h("td", {}, h("span", { class: "badge " + r.verdict }, r.verdict)),
          h("td", { class: "num" }, r.similarity.toFixed(2)),
          h("td", { class: "mono" }, r.blamed_worker_id || ""),
          h("td", {}, h("button", { type: "button", class: "link mono", onclick: () => openTimeline(r.task_id) }, r.task_id))))
        : [h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No QA results yet."))]));
      $("#qa-stats").textContent = JSON.stringify(stats, null, 2);
    } catch (e) {
      handle(e);
    }
  }

  // ---- withdrawals --------------------------------------------------------------------------

  async function loadWithdrawals() {
    try {
      const page = await authed("/api/admin/withdrawals?status=pending&limit=100");
      $("#wd-rows").replaceChildren(...(page.data.length ? page.data.map((w) =>
        h("tr", { dataset: { id: w.withdrawal_id } }, h("td", {}, time(w.created_at)), h("td", { class: "mono" }, w.worker_id),
          h("td", { class: "num" }, cents(w.amount_cents)), h("td", {}, `${w.method} ${w.address}`),
          h("td", {}, settleForm(w))))
        : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "Nothing waits to be paid."))]));
    } catch (e) {
      handle(e);
    }
  }

  function settleForm(w) {
    const form = h("form", { class: "row wrap settle" },
      h("input", { name: "note", maxlength: "200", placeholder: "payout reference, or why not" }),
      h("button", { type: "submit", name: "complete", class: "secondary" }, "Paid"),
      h("button", { type: "submit", name: "reject", class: "link" }, "Reject"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const how = ev.submitter && ev.submitter.name === "reject" ? "reject" : "complete";
      const note = form.note.value.trim();
      if (!note) return showError($("#wd-error"), new Error(how === "complete" ? "Give the payout's reference." : "Say why it is rejected."));
      try {
        await authed(`/api/admin/withdrawals/${encodeURIComponent(w.withdrawal_id)}/${how}`, {
          method: "POST",
          body: how === "complete" ? { external_ref: note } : { reason: note },
        });
        toast(how === "complete" ? "Marked paid." : "Rejected; the money is back in the worker's balance.");
        loadWithdrawals();
      } catch (e) {
        handle(e, $("#wd-error"));
      }
    });
    return form;
  }

  // ---- bounties: disputes and escrow --------------------------------------------------------

  async function loadBounties() {
    try {
      const [disputes, open] = await Promise.all([
        authed("/api/admin/disputes?status=open&limit=100"),
        authed("/api/bounties?status=open&limit=100"),
      ]);
      $("#dispute-list").replaceChildren(...(disputes.data.length ? disputes.data.map(disputeCard)
        : [h("p", { class: "muted" }, "No dispute is open.")]));
      $("#bounty-rows").replaceChildren(...(open.data.length ? open.data.map((b) =>
        h("tr", { dataset: { id: b.bounty_id } }, h("td", {}, b.title), h("td", { class: "mono" }, b.buyer_id || ""),
          h("td", { class: "num" }, cents(b.escrow_cents)), h("td", { class: "num" }, `${b.submissions} / ${b.max_submissions}`),
          h("td", {}, time(b.deadline)), h("td", { class: "muted" }, `${Math.round(b.auto_release_seconds / 3600)} h, then approved`)))
        : [h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No bounty is open."))]));
      const held = open.data.reduce((sum, b) => sum + b.escrow_cents, 0);
      $("#bounty-escrow").textContent = `${cents(held)} in escrow across ${open.data.length} open bounties${open.has_more ? " (the newest 100)" : ""}.`;
    } catch (e) {
      handle(e, $("#dispute-error"));
    }
  }

  function disputeCard(d) {
    const b = d.bounty || {};
    const content = d.submission ? JSON.stringify(d.submission.content, null, 2) : "";
    const form = h("form", { class: "row wrap resolve" },
      h("button", { type: "submit", name: "worker", class: "secondary" }, "To the worker"),
      h("button", { type: "submit", name: "buyer", class: "secondary" }, "To the buyer"),
      h("label", { class: "inline" }, "Split, worker %",
        h("input", { name: "pct", type: "number", min: "1", max: "99", value: "50", class: "short" })),
      h("button", { type: "submit", name: "split" }, "Split"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const outcome = (ev.submitter && ev.submitter.name) || "split";
      const body = { outcome };
      if (outcome === "split") body.worker_pct = Number(form.pct.value);
      try {
        const r = await authed(`/api/admin/disputes/${encodeURIComponent(d.dispute_id)}/resolve`, {
          method: "POST", body, headers: { "Idempotency-Key": `resolve-${d.dispute_id}` },
        });
        toast(`Resolved: ${cents(r.worker_cents)} to the worker, ${cents(r.refund_cents)} back to the buyer.`);
        loadBounties();
      } catch (e) {
        handle(e, $("#dispute-error"));
      }
    });
    return h("article", { class: "dispute", dataset: { id: d.dispute_id } },
      h("h3", {}, b.title || d.bounty_id),
      h("p", { class: "muted" }, `Escrow ${cents(b.escrow_cents || 0)} · deadline ${b.deadline ? time(b.deadline) : "—"} · opened ${time(d.opened_at)}`),
      h("div", { class: "grid two" },
        h("div", {}, h("h4", {}, "The buyer rejected it"), h("p", { class: "said buyer-said" }, d.rejection_reason)),
        h("div", {}, h("h4", {}, "The worker disputes"), h("p", { class: "said worker-said" }, d.reason))),
      b.criteria ? h("p", {}, h("strong", {}, "Criteria: "), b.criteria) : "",
      h("details", {}, h("summary", {}, "The submission"), h("pre", { class: "state" }, content)),
      form);
  }

  // ---- wiring -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("#signin-form").addEventListener("submit", signin);
    $("#signout").addEventListener("click", signout);
    $$(".console-tabs .tab").forEach((t) => t.addEventListener("click", () => show(t.dataset.view)));
    $("#check-invariants").addEventListener("click", checkInvariants);
    $$(".actors th[data-sort]").forEach((th) => th.addEventListener("click", () => {
      if (sort === th.dataset.sort) ascending = !ascending;
      else {
        sort = th.dataset.sort;
        ascending = sort === "kind" || sort === "id";
      }
      offset = 0;
      loadActors();
    }));
    let searchTimer = null;
    $("#actor-filter").addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        offset = 0;
        loadActors();
      }, 200);
    });
    $("#actor-filter").addEventListener("submit", (e) => e.preventDefault());
    $("#actors-prev").addEventListener("click", () => {
      offset = Math.max(0, offset - PAGE);
      loadActors();
    });
    $("#actors-next").addEventListener("click", () => {
      if (offset + PAGE < total) offset += PAGE;
      loadActors();
    });
    $("#drill-close").addEventListener("click", () => {
      drilled = null;
      $("#actor-drill").hidden = true;
    });
    $("#timeline-form").addEventListener("submit", (e) => {
      e.preventDefault();
      loadTimeline(e.target.task_id.value.trim());
    });
    $("#config-key").addEventListener("change", loadConfig);
    $("#config-review").addEventListener("click", review);
    $("#config-save").addEventListener("click", save);
    $("#config-reset").addEventListener("click", loadConfig);
    $("#config-text").addEventListener("input", () => ($("#config-save").disabled = true));
    $("#qa-verdict").addEventListener("change", loadQa);
    document.addEventListener("visibilitychange", () => {
      if (visible() && view === "actors") loadActors();
    });
    if (token) enter();
    else CJ.signedIn(false);
  });
})();
