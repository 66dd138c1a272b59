// Bounties on the buyers' and workers' pages. A buyer posts a bounty (the reward goes into
// escrow), reviews its submissions (approve, or reject with a reason) and follows it live; a
// worker browses open bounties, submits, disputes a rejection within its window, and votes on the
// submissions to consensus bounties it is asked to judge (trusted tiers and above). Both hear
// their notifications as they come (GET /api/notifications/events) and see the unread ones.
"use strict";

window.CJB = (function () {
  const { api, stream, h, $, cents, time, toast, showError, uuid } = CJ;

  let ctx = null; // { role, token, streams, watch, openId }

  const authed = (path, opts = {}) => api(path, { ...opts, token: ctx.token });

  function start(role, token) {
    stop();
    ctx = { role, token, streams: [], watch: null, openId: null, view: "open" };
    ctx.streams.push(stream("/api/notifications/events", { token, onEvent: onNotification }));
    loadList();
    loadNotifications();
    if (role === "worker") loadVotes();
  }

  function stop() {
    if (!ctx) return;
    ctx.streams.forEach((s) => s.stop());
    if (ctx.watch) ctx.watch.stop();
    ctx = null;
  }

  const fail = (e) => showError($("#bounty-error"), e);

  // ---- notifications ------------------------------------------------------------------------

  const SAYS = {
    "bounty.submission": (d) => `New submission #${d.position} to “${d.title}”.`,
    "submission.approved": (d) => `Your submission to “${d.title}” was approved: ${cents(d.paid_cents)} (frozen until the dispute window ends).`,
    "submission.rejected": (d) => ctx && ctx.role === "buyer" ? `A submission to “${d.title}” was rejected: ${d.reason}`
      : `Your submission to “${d.title}” was rejected: ${d.reason}`,
    "vote.requested": (d) => `You are asked to judge submission #${d.position} to “${d.title}” (${cents(d.fee_cents)} if you vote with the majority).`,
    "vote.decided": (d) => d.with_majority ? `The vote you took part in is decided (${d.decision}): you were paid ${cents(d.paid_cents)}.`
      : `The vote you took part in went the other way (${d.decision}).`,
    "submission.closed": (d) => `“${d.title}” ended without your submission.`,
    "dispute.opened": (d) => `A worker disputes your rejection: ${d.reason}`,
    "dispute.resolved": (d) => `A dispute was resolved (${d.outcome}): ${cents(d.worker_cents)} to the worker, ${cents(d.refund_cents)} back to the buyer.`,
    auto_release_warning: (d) => `A submission will be approved automatically at ${time(d.auto_release_at)} unless you review it.`,
    "bounty.completed": (d) => d.auto_approved ? `“${d.title}” was approved automatically.` : `“${d.title}” was approved by its validators.`,
    "bounty.expired": (d) => `“${d.title}” expired; ${cents(d.refund_cents)} is back in your balance.`,
  };
  const say = (n) => (SAYS[n.kind] || (() => n.kind))(n.data || {});

  function onNotification(type, n) {
    if (type !== "notification" || !ctx) return;
    toast(say(n));
    // Most of them move money: the page's balance and earnings follow.
    document.dispatchEvent(new CustomEvent("cj:balance"));
    loadNotifications();
    loadList();
    if (ctx.role === "worker" && n.kind.startsWith("vote.")) loadVotes();
    if (ctx.openId && n.data && n.data.bounty_id === ctx.openId) openBounty(ctx.openId);
  }

  // ---- votes asked of a validator -----------------------------------------------------------

  async function loadVotes() {
    const box = $("#votes");
    if (!box || !ctx) return;
    try {
      const asked = await authed("/api/worker/votes?limit=20");
      box.hidden = asked.data.length === 0;
      $("#vote-list").replaceChildren(...asked.data.map(voteCard));
    } catch (e) {
      fail(e);
    }
  }

  function voteCard(r) {
    const el = h("article", { class: "submission vote", dataset: { id: r.submission_id } },
      h("p", {}, h("strong", {}, r.title), " ", h("span", { class: "muted" }, `submission #${r.position}`)),
      h("p", {}, r.description));
    if (r.criteria) el.append(h("p", {}, h("strong", {}, "Criteria: "), r.criteria));
    el.append(h("pre", { class: "state" }, content(r)));
    const form = h("form", { class: "row wrap vote-form" },
      h("button", { type: "submit", name: "approve" }, "It meets them"),
      h("button", { type: "submit", name: "reject", class: "secondary" }, "It does not"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const approve = ev.submitter && ev.submitter.name === "approve";
      try {
        const v = await authed(`/api/bounties/${encodeURIComponent(r.bounty_id)}/submissions/${encodeURIComponent(r.submission_id)}/vote`,
          { method: "POST", body: { approve } });
        toast(v.decided ? `Your vote decided it: ${v.submission_status}.` : "Counted. The majority decides.");
        loadVotes();
      } catch (e) {
        fail(e);
        loadVotes();
      }
    });
    el.append(form, h("p", { class: "muted" }, `${cents(r.fee_cents)} if you vote with the majority` +
      (r.vote_by ? `; approved automatically at ${time(r.vote_by)} if undecided.` : ".")));
    return el;
  }

  async function loadNotifications() {
    try {
      const page = await authed("/api/notifications?unread=true&limit=20");
      const box = $("#bounty-notes");
      box.hidden = page.data.length === 0;
      box.replaceChildren(...page.data.map((n) => h("li", { dataset: { kind: n.kind } }, h("span", {}, say(n)), " ",
        h("span", { class: "muted" }, time(n.created_at)))));
      if (page.data.length) {
        box.append(h("li", {}, h("button", {
          type: "button", class: "link", id: "bounty-notes-read",
          onclick: async () => {
            await authed("/api/notifications/read", { method: "POST", body: { ids: page.data.map((n) => n.notification_id) } });
            loadNotifications();
          },
        }, "Mark all read")));
      }
    } catch (e) {
      fail(e);
    }
  }

  // ---- the list -----------------------------------------------------------------------------

  async function loadList() {
    if (!ctx) return;
    // A buyer's own; a worker's open ones, or those it submitted to.
    const mine = ctx.role === "buyer" || ctx.view === "mine";
    const path = mine ? "/api/bounties?mine=true&limit=50" : "/api/bounties?status=open&limit=50";
    const empty = ctx.role === "buyer" ? "You have not posted a bounty yet."
      : mine ? "You have not submitted to a bounty yet." : "No bounty is open right now.";
    try {
      const page = await authed(path);
      $("#bounty-rows").replaceChildren(...(page.data.length ? page.data.map(row)
        : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, empty))]));
    } catch (e) {
      fail(e);
    }
  }

  function row(b) {
    return h("tr", { dataset: { id: b.bounty_id }, class: "clickable", onclick: () => openBounty(b.bounty_id) },
      h("td", {}, b.title), h("td", { class: "num" }, cents(b.reward_cents)),
      h("td", {}, h("span", { class: "badge " + b.status }, b.status)),
      h("td", { class: "num" }, `${b.submissions} / ${b.max_submissions}`), h("td", {}, time(b.deadline)));
  }

  // ---- one bounty ---------------------------------------------------------------------------

  async function openBounty(id) {
    if (!ctx) return;
    try {
      const [b, subs] = await Promise.all([
        authed(`/api/bounties/${encodeURIComponent(id)}`),
        authed(`/api/bounties/${encodeURIComponent(id)}/submissions?limit=100`),
      ]);
      // The bounty's stream answers its buyer, and a worker once it has submitted.
      if (ctx.openId !== id || !ctx.watch) {
        if (ctx.watch) ctx.watch.stop();
        ctx.watch = ctx.role === "buyer" || subs.data.length ? follow(id) : null;
      }
      ctx.openId = id;
      renderDetail(b, subs.data);
    } catch (e) {
      fail(e);
    }
  }

  function follow(id) {
    return stream(`/api/bounties/${encodeURIComponent(id)}/events`, {
      token: ctx.token,
      onEvent: (type) => {
        if (type === "bounty" && ctx && ctx.openId === id) {
          openBounty(id);
          loadList();
        }
      },
    });
  }

  function renderDetail(b, subs) {
    const box = $("#bounty-detail");
    box.hidden = false;
    const parts = [
      h("div", { class: "row between" }, h("h3", {}, b.title), h("button", { type: "button", class: "link", onclick: closeDetail }, "Close")),
      h("p", { class: "muted" }, `${cents(b.reward_cents)} · ${b.status} · escrow ${cents(b.escrow_cents)} · deadline ${time(b.deadline)} · fee ${Math.round(b.fee_pct * 100)}%`),
      h("p", { class: "said" }, b.description),
      b.criteria ? h("p", {}, h("strong", {}, "Criteria: "), b.criteria) : "",
    ];
    if (ctx.role === "buyer") {
      if (b.status === "open" && b.submissions === 0) {
        parts.push(h("button", { type: "button", class: "link", id: "bounty-cancel", onclick: () => cancel(b) }, "Cancel (refunds the reward)"));
      }
      parts.push(h("h4", {}, `Submissions (${subs.length})`));
      parts.push(...(subs.length ? subs.map((s) => buyerSubmission(b, s)) : [h("p", { class: "muted" }, "None yet.")]));
    } else {
      const mine = subs[0];
      if (mine) parts.push(workerSubmission(b, mine));
      else if (b.accepting) parts.push(submitForm(b));
      else parts.push(h("p", { class: "muted" }, "This bounty takes no more submissions."));
    }
    // A refresh (a live event) keeps what the user was typing, and where.
    const same = box.dataset.bounty === b.bounty_id;
    const typed = same ? [...box.querySelectorAll("input, textarea")].filter((el) => el.value).map((el) => [fieldKey(el), el.value]) : [];
    box.dataset.bounty = b.bounty_id;
    const focused = document.activeElement && box.contains(document.activeElement) ? fieldKey(document.activeElement) : null;
    box.replaceChildren(...parts);
    for (const el of box.querySelectorAll("input, textarea")) {
      const key = fieldKey(el);
      const kept = typed.find(([k]) => k === key);
      if (kept) el.value = kept[1];
      if (key === focused) el.focus();
    }
  }

  function fieldKey(el) {
    const owner = el.closest("[data-id]");
    return (owner ? owner.dataset.id : "") + "/" + (el.form && el.form.id) + "/" + el.name;
  }

  function closeDetail() {
    if (ctx.watch) ctx.watch.stop();
    ctx.watch = null;
    ctx.openId = null;
    $("#bounty-detail").hidden = true;
  }

  function content(s) {
    const c = s.content || {};
    return typeof c.text === "string" && Object.keys(c).length === 1 ? c.text : JSON.stringify(c, null, 2);
  }

  function buyerSubmission(b, s) {
    const el = h("article", { class: "submission", dataset: { id: s.submission_id, status: s.status } },
      h("p", {}, h("strong", {}, `#${s.position}`), " ", h("span", { class: "badge " + s.status }, s.status),
        " ", h("span", { class: "muted" }, time(s.submitted_at))),
      h("pre", { class: "state" }, content(s)));
    if (s.reason) el.append(h("p", { class: "muted" }, "Rejected: " + s.reason));
    if (s.status === "disputed") el.append(h("p", {}, "Its worker disputes the rejection: an admin decides."));
    if (b.review === "consensus" && s.status === "pending") {
      el.append(h("p", { class: "muted votes" }, `Validators decide: ${s.approvals} for, ${s.rejections} against so far.`));
    }
    if (s.status === "pending" && b.status === "open" && b.review === "manual") {
      const form = h("form", { class: "row wrap review" },
        h("button", { type: "submit", name: "approve" }, `Approve and pay`),
        h("input", { name: "reason", maxlength: "2000", placeholder: "why not (to reject)" }),
        h("button", { type: "submit", name: "reject", class: "secondary" }, "Reject"));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const approve = ev.submitter && ev.submitter.name === "approve";
        const reason = form.reason.value.trim();
        if (!approve && !reason) return fail(new Error("Say why you reject it."));
        try {
          const path = `/api/bounties/${encodeURIComponent(b.bounty_id)}/submissions/${encodeURIComponent(s.submission_id)}/${approve ? "approve" : "reject"}`;
          await authed(path, approve ? { method: "POST", headers: { "Idempotency-Key": uuid() } } : { method: "POST", body: { reason } });
          toast(approve ? "Approved: the worker is paid." : "Rejected. The worker may dispute it for a day.");
          openBounty(b.bounty_id);
          loadList();
        } catch (e) {
          fail(e);
        }
      });
      el.append(form);
      if (s.auto_release_at) el.append(h("p", { class: "muted" }, `Approved automatically at ${time(s.auto_release_at)} unless you review it.`));
    }
    return el;
  }

  function workerSubmission(b, s) {
    const el = h("article", { class: "submission mine", dataset: { id: s.submission_id, status: s.status } },
      h("p", {}, "Your submission ", h("strong", {}, `#${s.position}`), " ", h("span", { class: "badge " + s.status }, s.status)),
      h("pre", { class: "state" }, content(s)));
    if (s.paid_cents) el.append(h("p", {}, `Paid ${cents(s.paid_cents)}, frozen until the dispute window ends.`));
    if (s.status === "disputed") {
      el.append(h("p", { class: "disputed" }, h("strong", {}, "Rejected: "), s.reason || "", ". You dispute it: an admin decides; the reward stays in escrow until then."));
    }
    if (s.status === "rejected") {
      el.append(h("p", {}, h("strong", {}, "Rejected: "), s.reason || ""));
      if (s.dispute_until && new Date(s.dispute_until) > new Date() && b.status === "open") {
        const form = h("form", { class: "row wrap dispute-form" },
          h("input", { name: "reason", maxlength: "2000", required: true, placeholder: "why the rejection is wrong" }),
          h("button", { type: "submit", class: "secondary" }, "Dispute"));
        form.addEventListener("submit", async (ev) => {
          ev.preventDefault();
          try {
            await authed(`/api/bounties/${encodeURIComponent(b.bounty_id)}/submissions/${encodeURIComponent(s.submission_id)}/dispute`,
              { method: "POST", body: { reason: form.reason.value.trim() } });
            toast("Disputed: an admin decides. The reward stays in escrow until then.");
            openBounty(b.bounty_id);
          } catch (e) {
            fail(e);
          }
        });
        el.append(h("p", { class: "muted" }, `You may dispute until ${time(s.dispute_until)}.`), form);
      }
    }
    return el;
  }

  function submitForm(b) {
    const form = h("form", { id: "bounty-submit" },
      h("label", {}, "Your work", h("textarea", { name: "text", rows: "6", maxlength: "200000", required: true })),
      h("button", { type: "submit" }, "Submit"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const s = await authed(`/api/bounties/${encodeURIComponent(b.bounty_id)}/submissions`,
          { method: "POST", body: { content: { text: form.text.value } } });
        toast(`Submitted: you are #${s.position}.`);
        openBounty(b.bounty_id);
        loadList();
      } catch (e) {
        fail(e);
      }
    });
    return form;
  }

  async function cancel(b) {
    try {
      await authed(`/api/bounties/${encodeURIComponent(b.bounty_id)}/cancel`, { method: "POST" });
      toast("Cancelled: the reward is back in your balance.");
      document.dispatchEvent(new CustomEvent("cj:balance"));
      openBounty(b.bounty_id);
      loadList();
    } catch (e) {
      fail(e);
    }
  }

  // ---- posting (buyers) ---------------------------------------------------------------------

  async function post(ev) {
    ev.preventDefault();
    const f = ev.target;
    const dollars = Number(f.reward.value);
    const deadline = new Date(f.deadline.value);
    if (!(dollars > 0)) return fail(new Error("Give a reward in dollars."));
    if (isNaN(deadline)) return fail(new Error("Give a deadline."));
    const body = {
      title: f.title.value, description: f.description.value, reward_cents: Math.round(dollars * 100),
      deadline: deadline.toISOString(), review: "manual",
    };
    if (f.criteria.value.trim()) body.criteria = f.criteria.value;
    if (f.max.value) body.max_submissions = Number(f.max.value);
    try {
      const b = await authed("/api/bounties", { method: "POST", body, headers: { "Idempotency-Key": uuid() } });
      f.reset();
      $("#bounty-new").open = false;
      toast(`Posted: ${cents(b.reward_cents)} is in escrow.`);
      showError($("#bounty-error"), null);
      loadList();
      openBounty(b.bounty_id);
      document.dispatchEvent(new CustomEvent("cj:balance"));
    } catch (e) {
      fail(e);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("#bounty-form");
    if (form) form.addEventListener("submit", post);
    for (const tab of document.querySelectorAll("#bounty-tabs .tab")) {
      tab.addEventListener("click", () => {
        if (!ctx) return;
        ctx.view = tab.dataset.bview;
        document.querySelectorAll("#bounty-tabs .tab").forEach((t) => t.classList.toggle("active", t === tab));
        loadList();
      });
    }
  });

  return { start, stop };
})();
