// Shared by every page: the API client, a server-sent-events reader that sends the token in a
// header (EventSource cannot, and tokens never go into URLs), DOM helpers and money formatting.
"use strict";

(function () {
  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || {};
    }
  }

  // Calls the JSON API. `token` goes into the Authorization header; errors come back as ApiError
  // with the envelope's code and message.
  async function api(path, { method = "GET", body, token, headers = {} } = {}) {
    const h = { accept: "application/json", ...headers };
    if (token) h.authorization = "Bearer " + token;
    if (body !== undefined) h["content-type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "NETWORK", "The server cannot be reached. Check your connection.");
    }
    if (res.status === 204) return null;
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(res.status, err.code || "HTTP_" + res.status, err.message || res.statusText, err.details);
    }
    return data;
  }

  // Reads a server-sent-events stream with fetch, so that the token travels in a header. Calls
  // `onEvent(type, data, id)` per event, reconnects after `retry` ms with Last-Event-ID, and
  // `onState(open)` when the connection comes and goes. Returns { stop() }.
  function stream(path, { token, onEvent, onState = () => {} }) {
    let stopped = false;
    let lastId = null;
    let retryMs = 2000;
    let controller = null;

    async function connect() {
      while (!stopped) {
        controller = new AbortController();
        const headers = { accept: "text/event-stream" };
        if (token) headers.authorization = "Bearer " + token;
        if (lastId !== null) headers["last-event-id"] = lastId;
        try {
          const res = await fetch(path, { headers, signal: controller.signal, cache: "no-store", credentials: "omit" });
          if (res.status === 401 || res.status === 403) {
            onState(false);
            onEvent("unauthorized", null, null);
            return;
          }
          if (!res.ok || !res.body) throw new Error("stream answered " + res.status);
          onState(true);
          await readEvents(res.body);
        } catch (e) {
          if (stopped) return;
        }
        onState(false);
        if (!stopped) await sleep(retryMs);
      }
    }

    async function readEvents(body) {
      const reader = body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      let event = { type: "message", data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += value;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, "");
          buf = buf.slice(nl + 1);
          if (line === "") {
            if (event.data.length) dispatch(event);
            event = { type: "message", data: [], id: null };
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event.type = val;
          else if (field === "data") event.data.push(val);
          else if (field === "id") event.id = val;
          else if (field === "retry" && /^\d+$/.test(val)) retryMs = Number(val);
        }
      }
    }

    function dispatch(event) {
      if (event.id !== null) lastId = event.id;
      let data = event.data.join("\n");
      try {
        data = JSON.parse(data);
      } catch (e) {
        // Not JSON: handed over as text.
      }
      onEvent(event.type, data, event.id);
    }

    connect();
    return {
      stop() {
        stopped = true;
        if (controller) controller.abort();
      },
    };
  }

  function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
  }

  // Builds an element. Children are nodes or strings (always set as text, never as HTML).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // 250 → "$2.50", 5 → "5¢".
  function cents(n) {
    if (typeof n !== "number" || !isFinite(n)) return "—";
    if (Math.abs(n) < 100) return n + "¢";
    const sign = n < 0 ? "-" : "";
    const abs = Math.abs(n);
    return sign + "$" + Math.floor(abs / 100).toLocaleString("en-US") + "." + String(abs % 100).padStart(2, "0");
  }

  function time(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return sameDay
      ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
      : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  // "in 23 h", "in 4 min", "in 3 s", "now".
  function until(iso) {
    const ms = new Date(iso) - new Date();
    if (!isFinite(ms)) return "";
    if (ms < 1000) return "now";
    if (ms < 60000) return "in " + Math.round(ms / 1000) + " s";
    const min = Math.round(ms / 60000);
    if (min < 60) return "in " + min + " min";
    const hours = Math.round(min / 60);
    if (hours < 48) return "in " + hours + " h";
    return "in " + Math.round(hours / 24) + " days";
  }

  let toastTimer = null;
  function toast(message, kind = "info") {
    const el = $("#toast");
    if (!el) return;
    el.textContent = message;
    el.className = "toast " + kind;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), 5000);
  }

  function showError(el, err) {
    if (!el) return;
    if (!err) {
      el.hidden = true;
      el.textContent = "";
      return;
    }
    el.textContent = err.message || String(err);
    el.hidden = false;
  }

  // A page's error handler: a 401 means the token is gone (revoked, or another server's), so
  // `signout` runs and `message` says so; anything else is shown in `where` when given, else as
  // a toast.
  function errorHandler(signout, message) {
    return (err, where) => {
      if (err && err.status === 401) {
        signout();
        toast(message, "error");
        return;
      }
      if (where) showError(where, err);
      else toast(err.message, "error");
    };
  }

  // A value kept in localStorage as JSON (tokens and the buyer's chat history stay in this browser).
  const saved = {
    get(key, fallback = null) {
      try {
        const v = localStorage.getItem("clawjobs." + key);
        return v === null ? fallback : JSON.parse(v);
      } catch (e) {
        return fallback;
      }
    },
    set(key, value) {
      try {
        if (value === null || value === undefined) localStorage.removeItem("clawjobs." + key);
        else localStorage.setItem("clawjobs." + key, JSON.stringify(value));
      } catch (e) {
        // Storage full or disabled: the page still works for this visit.
      }
    },
  };

  // Shows elements marked .when-in or .when-out by whether someone is signed in.
  function signedIn(yes) {
    $$(".when-in").forEach((el) => (el.hidden = !yes));
    $$(".when-out").forEach((el) => (el.hidden = yes));
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  window.CJ = { api, ApiError, stream, h, $, $$, cents, time, until, toast, showError, errorHandler, saved, signedIn, uuid, sleep };
})();
