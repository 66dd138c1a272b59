// Buyer webhooks on the buyers' page: register an endpoint (its signing secret is shown once),
// see each endpoint's recent deliveries (delivered, pending with the next attempt, dead with why),
// send a dead one again, delete an endpoint.
"use strict";

window.CJW = (function () {
  const { api, h, $, time, toast, showError } = CJ;

  let token = null;
  let events = [];
  let openId = null;

  const authed = (path, opts = {}) => api(path, { ...opts, token });
  const fail = (e) => showError($("#hook-error"), e);

  function start(t) {
    token = t;
    openId = null;
    $("#hook-secret").hidden = true;
    load();
  }

  function stop() {
    token = null;
    openId = null;
  }

  async function load() {
    if (!token) return;
    try {
      const list = await authed("/api/webhooks");
      events = list.events;
      renderEvents();
      $("#hook-rows").replaceChildren(...(list.data.length ? list.data.map(row)
        : [h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No endpoint yet."))]));
      if (openId && list.data.some((w) => w.webhook_id === openId)) loadDeliveries(openId);
      else $("#hook-deliveries").hidden = true;
    } catch (e) {
      fail(e);
    }
  }

  function renderEvents() {
    const box = $("#hook-events");
    if (box.childElementCount === events.length) return;
    box.replaceChildren(...events.map((e) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "event", value: e }), " ", e)));
  }

  function row(w) {
    return h("tr", { dataset: { id: w.webhook_id } },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => loadDeliveries(w.webhook_id) }, w.url)),
      h("td", {}, w.events.join(", ")),
      h("td", {}, time(w.created_at)),
      h("td", { class: "num" }, h("button", { type: "button", class: "link danger", onclick: () => remove(w) }, "Delete")));
  }

  async function loadDeliveries(id) {
    openId = id;
    try {
      const page = await authed(`/api/webhooks/${encodeURIComponent(id)}/deliveries?limit=20`);
      const box = $("#hook-deliveries");
      box.hidden = false;
      box.replaceChildren(
        h("div", { class: "row between" }, h("h3", {}, "Recent deliveries"),
          h("span", {}, h("button", { type: "button", class: "link", id: "hook-refresh", onclick: () => loadDeliveries(id) }, "Refresh"),
            " ", h("button", { type: "button", class: "link", onclick: () => { openId = null; box.hidden = true; } }, "Close"))),
        ...(page.data.length ? page.data.map((d) => delivery(id, d)) : [h("p", { class: "muted" }, "Nothing sent yet.")]));
    } catch (e) {
      fail(e);
    }
  }

  function delivery(id, d) {
    const said = d.status === "delivered" ? `delivered ${time(d.delivered_at)}`
      : d.status === "pending" ? (d.attempts ? `attempt ${d.attempts + 1} at ${time(d.next_attempt_at)}` : "sending")
        : d.status === "dead" ? `gave up after ${d.attempts} attempts` : d.status;
    const el = h("article", { class: "delivery", dataset: { id: d.delivery_id, status: d.status } },
      h("p", {}, h("span", { class: "badge " + d.status }, d.status), " ", h("strong", {}, d.type), " ",
        h("span", { class: "muted" }, `${time(d.created_at)} · ${said}`)));
    if (d.last_error) el.append(h("p", { class: "muted said" }, "Last attempt: " + d.last_error));
    if (d.status === "dead" || d.status === "delivered") {
      el.append(h("button", { type: "button", class: "link", onclick: () => retry(id, d) }, "Send again"));
    }
    return el;
  }

  async function retry(id, d) {
    try {
      await authed(`/api/webhooks/${encodeURIComponent(id)}/deliveries/${encodeURIComponent(d.delivery_id)}/retry`, { method: "POST" });
      toast("It is sent again now.");
      loadDeliveries(id);
    } catch (e) {
      fail(e);
    }
  }

  async function remove(w) {
    try {
      await authed(`/api/webhooks/${encodeURIComponent(w.webhook_id)}`, { method: "DELETE" });
      toast("Deleted: nothing more is sent there.");
      if (openId === w.webhook_id) openId = null;
      load();
    } catch (e) {
      fail(e);
    }
  }

  async function add(ev) {
    ev.preventDefault();
    const f = ev.target;
    const chosen = [...f.querySelectorAll("input[name=event]:checked")].map((i) => i.value);
    if (!chosen.length) return fail(new Error("Choose at least one event."));
    try {
      const w = await authed("/api/webhooks", { method: "POST", body: { url: f.url.value.trim(), events: chosen } });
      f.reset();
      showError($("#hook-error"), null);
      const box = $("#hook-secret");
      box.hidden = false;
      box.replaceChildren(
        h("p", {}, "Signing secret for ", h("strong", {}, w.url), " — copy it now, it is not shown again:"),
        h("pre", { class: "state", id: "hook-secret-value" }, w.secret),
        h("p", { class: "muted" }, "Each POST carries Clawjobs-Signature: t=…,v1=… — HMAC-SHA256 with this secret over \"{t}.{body}\"."));
      load();
    } catch (e) {
      fail(e);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("#hook-form");
    if (form) form.addEventListener("submit", add);
  });

  // A finished task or a bounty step may have sent something: the open list follows.
  document.addEventListener("cj:balance", () => token && openId && loadDeliveries(openId));

  return { start, stop };
})();
