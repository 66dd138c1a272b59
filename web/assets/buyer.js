// The buyers' page: sign-up and log-in, a chat whose history stays in this browser and is sent
// with every message, the task's status live over SSE, credits, the public feed, balance and
// deposits, and past tasks.
"use strict";

(function () {
  const { api, stream, h, $, $$, cents, time, toast, showError, saved, signedIn, uuid } = CJ;
  const FINAL = new Set(["completed", "failed", "credited"]);
  const STEPS = ["pending", "assigned", "completed"];

  let session = saved.get("buyer"); // { token, user_id, email }
  let streams = [];
  let balance = null;
  let tasksCursor = null;
  let chat = { turns: [] }; // { role, content, task_id?, status?, price_cents?, credited_cents? }
  let estimateTimer = null;
  let estimateSeq = 0;

  const authed = (opts = {}) => api(opts.path, { ...opts, token: session && session.token });

  // ---- signing in ---------------------------------------------------------------------------

  let mode = "signup";
  function setMode(m) {
    mode = m;
    $$(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === m));
    $$(".signup-only").forEach((el) => (el.hidden = m !== "signup"));
    $("#auth-submit").textContent = m === "signup" ? "Create account" : "Log in";
    $("#auth-form [name=password]").setAttribute("autocomplete", m === "signup" ? "new-password" : "current-password");
    showError($("#auth-error"), null);
  }

  async function authenticate(ev) {
    ev.preventDefault();
    const form = ev.target;
    const email = form.email.value.trim();
    const body = { email, password: form.password.value };
    const code = form.referral_code.value.trim();
    if (mode === "signup" && code) body.referral_code = code;
    const button = $("#auth-submit");
    button.disabled = true;
    try {
      const path = mode === "signup" ? "/api/auth/register" : "/api/auth/login";
      const res = await api(path, { method: "POST", body });
      session = { token: res.token, user_id: res.user_id, email };
      saved.set("buyer", session);
      form.password.value = "";
      if (mode === "signup") toast("Welcome! Your signup credit is in your balance.");
      enter();
    } catch (e) {
      showError($("#auth-error"), e);
    } finally {
      button.disabled = false;
    }
  }

  function logout() {
    streams.forEach((s) => s.stop());
    streams = [];
    CJB.stop();
    CJW.stop();
    session = null;
    saved.set("buyer", null);
    signedIn(false);
  }

  const handle = CJ.errorHandler(() => logout(), "Please log in again.");

  function enter() {
    signedIn(true);
    chat = saved.get("chat." + session.user_id, { turns: [] });
    renderChat();
    refreshBalance();
    loadDepositOptions();
    loadDeposits();
    loadTasks(true);
    CJB.start("buyer", session.token);
    CJW.start(session.token);
    streams.forEach((s) => s.stop());
    streams = [
      stream("/api/tasks/events", {
        token: session.token,
        onEvent: onTaskEvent,
        onState: (open) => open && catchUp(),
      }),
    ];
    followDeposit();
  }

  // ---- balance and deposits -----------------------------------------------------------------

  async function refreshBalance() {
    try {
      showBalance(await authed({ path: "/api/balance" }));
    } catch (e) {
      handle(e);
    }
  }

  // Posting or cancelling a bounty moves money in or out of escrow (bounties.js says so).
  document.addEventListener("cj:balance", () => session && refreshBalance());

  function showBalance(b) {
    balance = b;
    $("#balance-pill").textContent = cents(b.available_cents);
    $("#bal-available").textContent = cents(b.available_cents);
    $("#bal-deposited").textContent = cents(b.total_deposited_cents);
  }

  function setAvailable(c) {
    if (balance) showBalance({ ...balance, available_cents: c });
  }

  async function loadDepositOptions() {
    const box = $("#deposit-buttons");
    box.replaceChildren();
    try {
      const o = await authed({ path: "/api/deposit/options" });
      if (!o.enabled) {
        $("#deposit-note").textContent =
          "Card payments are turned off on this server. Ask an administrator to add credit.";
        return;
      }
      depositOptions = o;
      depositNote();
      for (const amount of o.amounts_cents) {
        box.append(h("button", { type: "button", class: "secondary", onclick: () => deposit(amount) }, "Add " + cents(amount)));
      }
    } catch (e) {
      handle(e, $("#deposit-error"));
    }
  }

  let depositOptions = null;
  let depositedBefore = false;

  function depositNote() {
    if (!depositOptions || !depositOptions.enabled) return;
    const bonus = Math.round(depositOptions.first_deposit_bonus_pct * 100);
    $("#deposit-note").textContent =
      "Pay with Stripe Checkout." + (bonus > 0 && !depositedBefore ? ` Your first deposit gets ${bonus}% extra.` : "");
  }

  async function deposit(amount) {
    showError($("#deposit-error"), null);
    try {
      const d = await authed({
        path: "/api/deposit",
        method: "POST",
        body: { amount_cents: amount },
        headers: { "idempotency-key": uuid() },
      });
      window.location.assign(d.checkout_url);
    } catch (e) {
      if (e.code === "PAYMENTS_DISABLED") {
        $("#deposit-note").textContent = "Card payments are turned off on this server right now.";
        $("#deposit-buttons").replaceChildren();
      }
      handle(e, $("#deposit-error"));
    }
  }

  async function loadDeposits() {
    try {
      const page = await authed({ path: "/api/deposits?limit=10" });
      depositedBefore = page.data.some((d) => d.status === "completed");
      depositNote();
      const list = $("#deposits");
      list.replaceChildren(
        ...(page.data.length
          ? page.data.map((d) =>
              h("li", {}, h("span", {}, time(d.created_at)), " ", h("strong", {}, cents(d.amount_cents)), " ",
                h("span", { class: "badge " + d.status }, d.status)))
          : [h("li", { class: "muted" }, "No deposits yet.")])
      );
      return page.data;
    } catch (e) {
      handle(e);
      return [];
    }
  }

  // Back from Stripe Checkout: the deposit is credited when Stripe's webhook arrives, usually
  // within seconds. Watch it for a minute.
  async function followDeposit() {
    const id = new URLSearchParams(location.search).get("deposit_id");
    if (!id || !location.pathname.startsWith("/deposit/")) return;
    history.replaceState(null, "", "/");
    for (let i = 0; i < 30; i++) {
      const mine = (await loadDeposits()).find((d) => d.deposit_id === id);
      if (mine && mine.status !== "pending") {
        const done = mine.status === "completed";
        const note = $("#page-notice");
        if (note) note.textContent = done ? `Your deposit of ${cents(mine.amount_cents)} is in your balance.` : `That deposit is ${mine.status}.`;
        toast(done ? "Your deposit is in your balance." : "Deposit " + mine.status + ".");
        refreshBalance();
        return;
      }
      await CJ.sleep(2000);
    }
  }

  // ---- chat ---------------------------------------------------------------------------------

  function saveChat() {
    // A long conversation keeps its newest 50 turns.
    chat.turns = chat.turns.slice(-50);
    saved.set("chat." + session.user_id, chat);
  }

  // What the next task's input is: the finished turns so far, then the new message.
  function messagesWith(text) {
    const history = chat.turns
      .filter((t) => t.content && (t.role === "assistant" || t.status !== "failed"))
      .map((t) => ({ role: t.role, content: t.content }));
    return text ? [...history, { role: "user", content: text }] : history;
  }

  function renderChat() {
    const list = $("#messages");
    list.replaceChildren(...chat.turns.map(renderTurn));
    if (!chat.turns.length) list.append(h("li", { class: "muted empty" }, "Your conversation appears here. Workers answer in seconds."));
    list.scrollTop = list.scrollHeight;
  }

  function renderTurn(t) {
    if (t.role === "user") {
      return h("li", { class: "msg user", dataset: { task: t.task_id || "" } },
        h("div", { class: "bubble" }, t.content),
        t.task_id ? statusLine(t) : null);
    }
    const credit = t.credited_cents !== undefined
      ? h("p", { class: "muted credited" }, "Credited " + cents(t.credited_cents) + " back to your balance.")
      : h("div", { class: "rate" },
          h("button", { type: "button", class: "link thumbs", title: "Not good: ask for a credit", "aria-label": "Not good: ask for a credit", onclick: (e) => askCredit(t, e.target) },
            h("span", { class: "thumb", "aria-hidden": "true" }), "Not good"));
    return h("li", { class: "msg assistant", dataset: { task: t.task_id || "" } },
      h("div", { class: "bubble" }, t.content), credit);
  }

  function statusLine(t) {
    const steps = t.status === "failed" ? ["pending", "assigned", "failed"] : STEPS;
    const at = steps.indexOf(t.status === "credited" ? "completed" : t.status);
    return h("div", { class: "status", "data-status": t.status },
      ...steps.map((s, i) => h("span", { class: "step" + (i <= at ? " done" : "") + (i === at ? " now" : "") }, s)),
      t.price_cents ? h("span", { class: "muted price" }, cents(t.price_cents)) : null);
  }

  function askCredit(turn, button) {
    const li = button.closest("li");
    if ($("form.credit", li)) return;
    const form = h("form", { class: "credit row wrap" },
      h("input", { name: "reason", maxlength: "500", placeholder: "What was wrong? (optional)" }),
      h("button", { type: "submit", class: "secondary" }, "Ask for the credit"),
      h("p", { class: "error", role: "alert", hidden: true }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const reason = form.reason.value.trim();
      try {
        const r = await authed({
          path: `/api/task/${encodeURIComponent(turn.task_id)}/credit`,
          method: "POST",
          body: reason ? { reason } : {},
          headers: { "idempotency-key": uuid() },
        });
        turn.credited_cents = r.credited_cents;
        const user = chat.turns.find((t) => t.role === "user" && t.task_id === turn.task_id);
        if (user) user.status = "credited";
        saveChat();
        setAvailable(r.balance_after_cents);
        renderChat();
        toast("Credited " + cents(r.credited_cents) + ".");
      } catch (e) {
        handle(e, $(".error", form));
      }
    });
    li.append(form);
    form.reason.focus();
  }

  async function send(ev) {
    ev.preventDefault();
    const input = $("#chat-input");
    const text = input.value.trim();
    if (!text) return;
    const button = $("#send");
    button.disabled = true;
    showError($("#chat-error"), null);
    try {
      const r = await authed({
        path: "/api/task",
        method: "POST",
        body: { type: "chat", input: { messages: messagesWith(text) } },
        headers: { "idempotency-key": uuid() },
      });
      chat.turns.push({ role: "user", content: text, task_id: r.task_id, status: r.status, price_cents: r.price_cents });
      saveChat();
      renderChat();
      setAvailable(r.balance_after_cents);
      input.value = "";
      $("#estimate").textContent = "\u00a0";
      prependTask({ task_id: r.task_id, type: "chat", status: r.status, price_cents: r.price_cents, created_at: new Date().toISOString() });
      const news = early.get(r.task_id);
      if (news) {
        early.delete(r.task_id);
        applyStatus(news.task_id, news.status, news.output);
      }
    } catch (e) {
      if (e.code === "INSUFFICIENT_BALANCE") e.message = "Your balance is too low for this message. Add money below.";
      handle(e, $("#chat-error"));
    } finally {
      button.disabled = false;
    }
  }

  function estimateSoon() {
    clearTimeout(estimateTimer);
    estimateTimer = setTimeout(estimate, 250);
  }

  async function estimate() {
    const text = $("#chat-input").value.trim();
    const out = $("#estimate");
    if (!text) {
      out.textContent = "\u00a0";
      return;
    }
    const mine = ++estimateSeq;
    try {
      const r = await authed({ path: "/api/task/estimate", method: "POST", body: { type: "chat", input: { messages: messagesWith(text) } } });
      if (mine !== estimateSeq) return;
      const short = balance && balance.available_cents < r.price_cents;
      out.textContent = "This message costs " + cents(r.price_cents) + (short ? " — more than your balance" : "");
      out.classList.toggle("warn", !!short);
    } catch (e) {
      if (mine === estimateSeq) out.textContent = e.status === 429 ? "\u00a0" : e.message;
    }
  }

  // A task_status event: pending, assigned, completed (with the output), failed, credited.
  function onTaskEvent(type, data) {
    if (type === "unauthorized") return handle({ status: 401 });
    if (type === "reset") return catchUp();
    if (type !== "task_status" || !data || !data.task_id) return;
    // A fast worker can answer before this page has read the answer to its own POST: keep the
    // news for the task until the page knows it.
    if (!chat.turns.some((t) => t.task_id === data.task_id)) {
      early.set(data.task_id, data);
      if (early.size > 50) early.delete(early.keys().next().value);
    }
    applyStatus(data.task_id, data.status, data.output);
    // A sensitive task's output is in no event: read it from the task itself.
    if (data.status === "completed" && data.sensitive && chat.turns.some((t) => t.task_id === data.task_id)) {
      authed({ path: "/api/task/" + encodeURIComponent(data.task_id) })
        .then((t) => applyStatus(t.task_id, t.status, t.output))
        .catch(handle);
    }
  }

  const early = new Map();

  function applyStatus(taskId, status, output) {
    updateTaskRow(taskId, status);
    const user = chat.turns.find((t) => t.role === "user" && t.task_id === taskId);
    if (!user) return;
    if (user.status === status && status !== "completed") return;
    user.status = status;
    const answered = chat.turns.some((t) => t.role === "assistant" && t.task_id === taskId);
    if (status === "completed" && output !== undefined && !answered) {
      const i = chat.turns.indexOf(user);
      chat.turns.splice(i + 1, 0, { role: "assistant", content: outputText(output), task_id: taskId });
    }
    if (status === "failed") refreshBalance();
    saveChat();
    renderChat();
  }

  function outputText(output) {
    if (typeof output === "string") return output;
    if (output && typeof output.text === "string") return output.text;
    if (output && typeof output.content === "string") return output.content;
    return JSON.stringify(output, null, 2);
  }

  // After a reconnect, ask the server about every task still open in the conversation.
  async function catchUp() {
    const open = chat.turns.filter((t) => t.role === "user" && t.task_id && !FINAL.has(t.status));
    for (const t of open) {
      try {
        const task = await authed({ path: "/api/task/" + encodeURIComponent(t.task_id) });
        applyStatus(task.task_id, task.status, task.output);
      } catch (e) {
        if (e.status === 401) return handle(e);
      }
    }
  }

  // ---- past tasks ---------------------------------------------------------------------------

  async function loadTasks(first) {
    if (first) tasksCursor = null;
    try {
      const q = "/api/tasks?limit=10" + (tasksCursor ? "&cursor=" + encodeURIComponent(tasksCursor) : "");
      const page = await authed({ path: q });
      const body = $("#tasks");
      if (first) body.replaceChildren();
      page.data.forEach((t) => body.append(taskRow(t)));
      if (first && !page.data.length) body.append(h("tr", { class: "empty" }, h("td", { colspan: "4", class: "muted" }, "No tasks yet.")));
      tasksCursor = page.cursor;
      $("#more-tasks").hidden = !page.has_more;
    } catch (e) {
      handle(e);
    }
  }

  function taskRow(t) {
    return h("tr", { dataset: { task: t.task_id }, class: "clickable", onclick: () => showTask(t.task_id), title: "Show the result" },
      h("td", {}, time(t.created_at)), h("td", {}, t.type),
      h("td", {}, h("span", { class: "badge " + t.status }, t.status)), h("td", { class: "num" }, cents(t.price_cents)));
  }

  function prependTask(t) {
    const body = $("#tasks");
    const empty = $("tr.empty", body);
    if (empty) empty.remove();
    // A reload may have listed it already.
    if ($(`#tasks tr[data-task="${CSS.escape(t.task_id)}"]`)) return;
    body.prepend(taskRow(t));
  }

  let reloadTimer = null;

  function updateTaskRow(taskId, status) {
    const row = $(`#tasks tr[data-task="${CSS.escape(taskId)}"] .badge`);
    if (row) {
      row.textContent = status;
      row.className = "badge " + status;
      return;
    }
    // A task this page did not post (the API, another tab): the list is read again, once for a
    // burst of them.
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => session && loadTasks(true), 500);
  }

  async function showTask(taskId) {
    const row = $(`#tasks tr[data-task="${CSS.escape(taskId)}"]`);
    if (!row) return;
    const next = row.nextElementSibling;
    if (next && next.classList.contains("detail")) return next.remove();
    try {
      const t = await authed({ path: "/api/task/" + encodeURIComponent(taskId) });
      const text = t.purged
        ? "The input and output were deleted after the refund window (" + t.status + ")."
        : t.output !== undefined ? outputText(t.output) : "No result yet (" + t.status + ").";
      row.after(h("tr", { class: "detail" }, h("td", { colspan: "4" }, h("pre", {}, text))));
    } catch (e) {
      handle(e);
    }
  }

  // ---- the public feed ----------------------------------------------------------------------

  function startFeed() {
    const list = $("#feed-list");
    const dot = $("#feed-dot");
    // The newest 15 first, so the feed is not empty on arrival; a reconnect resumes by id.
    stream("/api/feed?recent=15", {
      onState: (open) => {
        dot.classList.toggle("live", open);
        dot.title = open ? "live" : "reconnecting";
      },
      onEvent: (type, d, id) => {
        if (type !== "task_completed" || !d) return;
        const empty = $("li.muted", list);
        if (empty) empty.remove();
        if (id && $(`li[data-id="${CSS.escape(id)}"]`, list)) return;
        list.prepend(h("li", { dataset: { id: id || "" } }, h("span", { class: "muted" }, time(d.at)), " ", h("strong", {}, d.task_type), " for ",
          cents(d.price_cents), " — ", d.worker, " earned ", cents(d.earned_cents)));
        while (list.children.length > 15) list.lastElementChild.remove();
      },
    });
  }

  // ---- wiring -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $$(".tab").forEach((t) => t.addEventListener("click", () => setMode(t.dataset.tab)));
    $("#auth-form").addEventListener("submit", authenticate);
    $("#logout").addEventListener("click", logout);
    $("#chat-form").addEventListener("submit", send);
    $("#chat-input").addEventListener("input", estimateSoon);
    $("#chat-input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        $("#chat-form").requestSubmit();
      }
    });
    $("#new-chat").addEventListener("click", () => {
      chat = { turns: [] };
      saveChat();
      renderChat();
    });
    $("#more-tasks").addEventListener("click", () => loadTasks(false));
    setMode("signup");
    startFeed();
    if (session && session.token) enter();
    else signedIn(false);
  });
})();
