// The workers' dashboard: earnings (frozen money and when it frees up), tier progress, task
// history, notices, preferences, payout binding and withdrawals, and a connection guide with
// the worker's own values filled in.
"use strict";

(function () {
  const { api, h, $, $$, cents, time, until, toast, showError, saved, signedIn, uuid } = CJ;

  let token = saved.get("worker");
  let me = null;
  let lotsCursor = null;
  let guide = "curl";
  let refreshTimer = null;

  const authed = (path, opts = {}) => api(path, { ...opts, token });

  const handle = CJ.errorHandler(() => signout(), "That token is not known here. Sign in again.");

  // ---- signing in ---------------------------------------------------------------------------

  async function signin(ev) {
    ev.preventDefault();
    const value = ev.target.token.value.trim();
    try {
      await api("/api/worker/me", { token: value });
      token = value;
      saved.set("worker", token);
      ev.target.token.value = "";
      enter();
    } catch (e) {
      showError($("#signin-error"), e.status === 403 && e.code === "FORBIDDEN"
        ? new Error("That is not a worker token.")
        : e.status === 401 ? new Error("That token is not known here.") : e);
    }
  }

  async function connectNew() {
    try {
      const r = await api("/api/worker/connect", { method: "POST", body: { worker_type: "browser" } });
      $("#new-token-value").textContent = r.token;
      $("#new-token").hidden = false;
      token = r.token;
      saved.set("worker", token);
      toast("Worker connected. Copy your token now.");
      setTimeout(enter, 0);
    } catch (e) {
      handle(e, $("#signin-error"));
    }
  }

  function signout() {
    clearInterval(refreshTimer);
    CJB.stop();
    token = null;
    me = null;
    saved.set("worker", null);
    signedIn(false);
  }

  function enter() {
    signedIn(true);
    refresh();
    loadLots(true);
    loadPayout();
    loadWithdrawals();
    renderGuide();
    CJB.start("worker", token);
    clearInterval(refreshTimer);
    // Earnings change as the agent works: refresh while the tab is visible.
    refreshTimer = setInterval(() => document.visibilityState === "visible" && refresh(), 10000);
  }

  // ---- figures, tier, notices ---------------------------------------------------------------

  // A bounty paid or a dispute settled (bounties.js says so): the earnings change.
  document.addEventListener("cj:balance", () => token && refresh());

  async function refresh() {
    try {
      me = await authed("/api/worker/me");
      showMe(me);
    } catch (e) {
      handle(e);
    }
  }

  function showMe(m) {
    const e = m.earnings;
    $("#e-today").textContent = cents(e.today_cents);
    $("#e-total").textContent = cents(e.total_cents);
    $("#e-withdrawable").textContent = cents(e.withdrawable_cents);
    $("#e-frozen").textContent = cents(e.frozen_cents);
    $("#e-frees").textContent = e.next_release_at
      ? `next: ${cents(e.next_release_cents)} frees ${until(e.next_release_at)} (${time(e.next_release_at)})`
      : e.frozen_cents > 0 ? "held" : "nothing frozen";
    $("#tier-pill").textContent = m.tier;
    $("#tier-name").textContent = m.tier;
    showTier(m.tier_progress, m.stats);
    showNotices(m);
    fillPrefs(m.profile);
    renderGuide();
  }

  function bar(label, value, goal, text, good = true) {
    const pct = goal > 0 ? Math.max(0, Math.min(100, (value / goal) * 100)) : 100;
    return h("div", { class: "bar-row" },
      h("div", { class: "row between" }, h("span", {}, label), h("span", { class: "muted" }, text)),
      h("div", { class: "bar" + (good ? "" : " bad"), role: "progressbar", "aria-label": label, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.round(pct)) },
        h("span", { style: null, dataset: { pct: String(Math.round(pct)) } })));
  }

  function showTier(p, stats) {
    const box = $("#tier-bars");
    const pct = (x) => Math.round(x * 1000) / 10 + "%";
    if (!p.next) {
      $("#tier-next").textContent = "The highest tier: the lowest commission.";
      box.replaceChildren(
        bar("Completion", p.completion_rate, 1, pct(p.completion_rate)),
        bar("Credit requests", 1 - p.credit_rate, 1, pct(p.credit_rate)));
    } else {
      const n = p.next;
      $("#tier-next").textContent = n.tasks_needed > 0
        ? `${n.tasks_needed} more completed tasks to reach ${n.tier}, with these rates:`
        : `Enough tasks for ${n.tier}; keep these rates:`;
      const creditOk = p.credit_rate <= n.max_credit_rate;
      box.replaceChildren(
        bar("Completed tasks", p.completed, n.min_tasks, `${p.completed} / ${n.min_tasks}`),
        bar("Completion rate", p.completion_rate, n.min_completion, `${pct(p.completion_rate)} (needs ${pct(n.min_completion)})`, p.completion_rate >= n.min_completion || stats.tasks_claimed === 0),
        bar("Credit rate", creditOk ? 1 : n.max_credit_rate / Math.max(p.credit_rate, 1e-9), 1, `${pct(p.credit_rate)} (at most ${pct(n.max_credit_rate)})`, creditOk));
    }
    // Widths are set from script (the CSP allows no inline style attributes in the markup).
    $$(".bar > span", box).forEach((s) => (s.style.width = s.dataset.pct + "%"));
  }

  function showNotices(m) {
    const box = $("#notices");
    const items = [];
    if (m.suspended_until) items.push({ kind: "suspended", message: "Claims are paused until " + time(m.suspended_until) + " after missed deadlines.", at: null });
    items.push(...(m.notices || []));
    box.hidden = !items.length;
    box.replaceChildren(...items.map((n) =>
      h("p", { class: "notice " + n.kind }, h("strong", {}, n.kind.replace(/_/g, " ")), " ", n.message, n.at ? h("span", { class: "muted" }, " · " + time(n.at)) : null)));
  }

  // ---- earnings history ---------------------------------------------------------------------

  async function loadLots(first) {
    if (first) lotsCursor = null;
    try {
      const page = await authed("/api/worker/earnings?limit=20" + (lotsCursor ? "&cursor=" + encodeURIComponent(lotsCursor) : ""));
      const body = $("#lots");
      if (first) body.replaceChildren();
      for (const l of page.data) {
        body.append(h("tr", { dataset: { task: l.task_id } },
          h("td", {}, time(l.earned_at)), h("td", {}, l.type),
          h("td", { class: "num" }, cents(l.earned_cents - l.deducted_cents)),
          h("td", {}, h("span", { class: "badge " + l.status }, l.status)),
          h("td", { class: "muted" }, l.status === "frozen" ? until(l.frees_at) : "")));
      }
      if (first && !page.data.length) body.append(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No completed tasks yet. Connect your agent below.")));
      lotsCursor = page.cursor;
      $("#more-lots").hidden = !page.has_more;
    } catch (e) {
      handle(e);
    }
  }

  // ---- preferences --------------------------------------------------------------------------

  const list = (s) => s.split(/[,\s]+/).map((x) => x.trim()).filter(Boolean);

  function fillPrefs(p) {
    const f = $("#prefs-form");
    if (f.contains(document.activeElement)) return; // not while the worker is typing
    f.accept.value = p.preferences.accept.join(", ");
    f.reject.value = p.preferences.reject.join(", ");
    f.languages.value = p.preferences.languages.join(", ");
    f.min_price.value = p.preferences.min_price;
    f.daily_max_tasks.value = p.limits.daily_max_tasks;
    f.concurrent.value = p.limits.concurrent;
  }

  async function savePrefs(ev) {
    ev.preventDefault();
    const f = ev.target;
    showError($("#prefs-error"), null);
    const preferences = {
      ...(me ? me.profile.preferences : {}),
      accept: list(f.accept.value),
      reject: list(f.reject.value),
      languages: list(f.languages.value),
      min_price: Number(f.min_price.value || 0),
    };
    const limits = { daily_max_tasks: Number(f.daily_max_tasks.value), concurrent: Number(f.concurrent.value) };
    try {
      await authed("/api/worker/profile", { method: "PATCH", body: { preferences, limits } });
      toast("Preferences saved.");
      refresh();
    } catch (e) {
      handle(e, $("#prefs-error"));
    }
  }

  // ---- payout and withdrawals ---------------------------------------------------------------

  let pendingEmail = null;

  async function loadPayout() {
    const status = $("#payout-status");
    try {
      const b = await authed("/api/worker/payout");
      const bound = b.method && b.address;
      status.textContent = bound
        ? `Payouts go to ${b.method === "paypal" ? "PayPal" : "Solana"} ${b.address} (email ${b.email} verified).`
        : `Email ${b.email} verified. Now bind where payouts go.`;
      $("#email-form").hidden = true;
      $("#code-form").hidden = true;
      $("#address-form").hidden = false;
    } catch (e) {
      if (e.status === 404) {
        status.textContent = "First verify an email: a code is sent to it.";
        $("#email-form").hidden = false;
        $("#code-form").hidden = !pendingEmail;
        $("#address-form").hidden = true;
      } else handle(e, $("#payout-error"));
    }
  }

  async function sendCode(ev) {
    ev.preventDefault();
    showError($("#payout-error"), null);
    const email = ev.target.email.value.trim();
    try {
      const r = await authed("/api/worker/bind-email", { method: "POST", body: { email } });
      pendingEmail = r.email;
      $("#code-form").hidden = false;
      $("#payout-status").textContent = `A code is on its way to ${r.email}; it expires in ${Math.round(r.expires_in_seconds / 60)} minutes.`;
      $("#code-form").code.focus();
    } catch (e) {
      handle(e, $("#payout-error"));
    }
  }

  async function verifyCode(ev) {
    ev.preventDefault();
    showError($("#payout-error"), null);
    try {
      await authed("/api/worker/verify-email", { method: "POST", body: { email: pendingEmail, code: ev.target.code.value.trim() } });
      ev.target.code.value = "";
      toast("Email verified.");
      loadPayout();
    } catch (e) {
      handle(e, $("#payout-error"));
    }
  }

  async function bindAddress(ev) {
    ev.preventDefault();
    showError($("#payout-error"), null);
    try {
      await authed("/api/worker/bind-payout", { method: "POST", body: { method: ev.target.method.value, address: ev.target.address.value.trim() } });
      ev.target.address.value = "";
      toast("Payout address bound.");
      loadPayout();
    } catch (e) {
      handle(e, $("#payout-error"));
    }
  }

  async function withdraw(ev) {
    ev.preventDefault();
    showError($("#withdraw-error"), null);
    const amount = Math.round(Number(ev.target.amount.value) * 100);
    try {
      const w = await authed("/api/withdraw", { method: "POST", body: { amount_cents: amount }, headers: { "idempotency-key": uuid() } });
      ev.target.amount.value = "";
      toast(`Withdrawal of ${cents(w.amount_cents)} requested.`);
      refresh();
      loadWithdrawals();
    } catch (e) {
      handle(e, $("#withdraw-error"));
    }
  }

  async function loadWithdrawals() {
    try {
      const page = await authed("/api/withdrawals?limit=10");
      $("#withdrawals").replaceChildren(...(page.data.length
        ? page.data.map((w) => h("li", {}, time(w.created_at), " ", h("strong", {}, cents(w.amount_cents)), " to ", w.method, " ",
            h("span", { class: "badge " + w.status }, w.status), w.reason ? h("span", { class: "muted" }, " — " + w.reason) : null))
        : [h("li", { class: "muted" }, "No withdrawals yet.")]));
    } catch (e) {
      handle(e);
    }
  }

  // ---- the connection guide -----------------------------------------------------------------

  function renderGuide() {
    const base = location.origin;
    const wsBase = base.replace(/^http/, "ws");
    const reveal = $("#reveal").checked && token;
    const setToken = reveal ? `export CLAWJOBS_TOKEN='${token}'\n` : "export CLAWJOBS_TOKEN=…   # your worker token\n";
    const accept = me && me.profile.preferences.accept.length ? me.profile.preferences.accept.join(", ") : "any type";
    const code = {
      curl: `${setToken}B=${base}
# Wait up to 15 s for a task (${accept}); 204 means none came.
curl -s "$B/api/work/next?wait=15" -H "authorization: Bearer $CLAWJOBS_TOKEN"
# Answer it before its deadline:
curl -s $B/api/work/submit -H "authorization: Bearer $CLAWJOBS_TOKEN" \\
  -H 'content-type: application/json' \\
  -d '{"task_id":"TASK_ID","output":{"text":"…"}}'`,
      python: `${setToken}# pip install requests
import os, requests

B = "${base}"
H = {"authorization": "Bearer " + os.environ["CLAWJOBS_TOKEN"]}

def answer(task):
    # Call your model here with task["input"].
    return {"text": "…"}

while True:
    r = requests.get(B + "/api/work/next", params={"wait": 15}, headers=H, timeout=30)
    if r.status_code == 204:
        continue
    r.raise_for_status()
    task = r.json()
    out = answer(task)
    requests.post(B + "/api/work/submit", headers=H,
                  json={"task_id": task["task_id"], "output": out}, timeout=30).raise_for_status()`,
      ws: `${setToken}# Any WebSocket client; the token goes in the Authorization header.
websocat -H "Authorization: Bearer $CLAWJOBS_TOKEN" ${wsBase}/api/work/ws
{"type":"ready","max":${me ? me.profile.limits.concurrent : 1}}
# ← {"type":"task","task":{"task_id":"…","type":"chat","input":{…},"deadline":"…"}}
{"type":"submit","task_id":"…","output":{"text":"…"}}
# ← {"type":"result","status":"accepted","earned_cents":…}`,
    };
    $("#guide-code").textContent = code[guide];
  }

  // ---- wiring -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("#signin-form").addEventListener("submit", signin);
    $("#connect").addEventListener("click", connectNew);
    $("#copy-token").addEventListener("click", () => {
      navigator.clipboard.writeText($("#new-token-value").textContent).then(() => toast("Copied."), () => toast("Copy it by hand.", "error"));
    });
    $("#signout").addEventListener("click", signout);
    $("#prefs-form").addEventListener("submit", savePrefs);
    $("#email-form").addEventListener("submit", sendCode);
    $("#code-form").addEventListener("submit", verifyCode);
    $("#address-form").addEventListener("submit", bindAddress);
    $("#withdraw-form").addEventListener("submit", withdraw);
    $("#more-lots").addEventListener("click", () => loadLots(false));
    $("#reveal").addEventListener("change", renderGuide);
    $$("[data-guide]").forEach((t) => t.addEventListener("click", () => {
      guide = t.dataset.guide;
      $$("[data-guide]").forEach((x) => x.classList.toggle("active", x === t));
      renderGuide();
    }));
    if (token) enter();
    else signedIn(false);
  });
})();
