// Starts the real server binary on a free port with its own data directory, drives Debian's
// Chromium through playwright-core (never a downloaded browser), and fails a test on any
// JavaScript error or failed request on its pages. Screenshots go to target/screenshots/.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { test, before, after } from "node:test";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
export const SHOTS = path.join(root, "target", "screenshots");
const BIN = process.env.CLAWJOBS_BIN || path.join(root, "target", "debug", "clawjobs");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const ADMIN = "cja_browser_admin_token";

export async function startServer(env = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), "clawjobs-browser-"));
  const child = spawn(BIN, ["serve", "--bind", "127.0.0.1:0", "--data-dir", dir], {
    cwd: root,
    env: { ...process.env, CLAWJOBS_ADMIN_TOKEN: ADMIN, CLAWJOBS_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (d) => (log += d));
  const base = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("the server did not start:\n" + log)), 60000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/clawjobs listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].startsWith("http") ? m[1] : "http://" + m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited (${code}):\n${log}`)));
  });
  for (let i = 0; ; i++) {
    const r = await fetch(base + "/api/ready").catch(() => null);
    if (r && r.ok) break;
    if (i > 200) throw new Error("the server never became ready");
    await sleep(100);
  }
  return {
    base,
    log: () => log,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// scripts/fake-stripe.py, the stand-in for Stripe's API the fuzzer uses too.
export async function startFakeStripe() {
  const child = spawn("python3", [path.join(root, "scripts", "fake-stripe.py")], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (\d+)/);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error("fake Stripe exited " + code)));
  });
  return { base: `http://127.0.0.1:${port}/`, stop: () => child.kill() };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// The JSON API, for the parts of a scenario that are not the page under test (a worker's agent,
// an admin's setup).
export async function api(base, p, { method = "GET", token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = "Bearer " + token;
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await fetch(base + p, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw Object.assign(new Error(`${method} ${p} → ${res.status} ${text}`), { status: res.status, data });
  return data;
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

// Pages still open, for a screenshot when a scenario fails.
const openPages = new Set();

// A test that, when it fails, leaves screenshots of its open pages as target/screenshots/failed-*.png.
export function scenario(name, fn) {
  test(name, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      const slug = name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60);
      let i = 0;
      for (const p of openPages) await p.shot(`failed-${slug}-${i++}`).catch(() => {});
      e.message += "\nproblems on the pages: " + JSON.stringify([...openPages].flatMap((p) => p.problems));
      throw e;
    } finally {
      for (const p of openPages) await p.close().catch(() => {});
    }
  });
}

// One server (its own data directory) and one browser for a test file: started before its
// scenarios, stopped after them. The fields are set once `before` has run.
export function suite(env = {}) {
  const s = { server: null, browser: null };
  before(async () => {
    s.server = await startServer(env);
    s.browser = await launch();
    await relax(s.server.base);
  });
  after(async () => {
    await s.browser?.close();
    await s.server?.stop();
  });
  return s;
}

// Changes the config document `key` through the admin API: `change` edits it in place.
export async function putConfig(base, key, change) {
  const doc = await api(base, "/api/admin/config/" + key, { token: ADMIN });
  delete doc.version;
  delete doc.updated_at;
  change(doc);
  await api(base, "/api/admin/config/" + key, { method: "PUT", token: ADMIN, body: doc });
}

// Lets the scenarios run at a test's pace: no invisible QA copies (the one worker in a scenario
// gets exactly the buyer's tasks) and rate limits well above what a scenario does.
export async function relax(base) {
  const put = (key, change) => putConfig(base, key, change);
  await put("qa", (qa) => {
    qa.shadow_execution_rate = 0;
    for (const k of Object.keys(qa.spot_check_rates)) qa.spot_check_rates[k] = 0;
  });
  await put("rate_limits", (r) => {
    r.registration.per_ip_per_min = 1000;
    r.registration.fingerprint_per_hour = 1000;
    r.work_next.new_per_min = 1000;
    r.work_next.established_per_min = 1000;
  });
}

// A fresh browser context (its own storage) and a page that records every script error, console
// error and failed request; `check()` asserts there were none.
export async function open(browser, base, { phone = false } = {}) {
  const context = await browser.newContext(
    phone
      ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
      : { viewport: { width: 1280, height: 900 } }
  );
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    // The browser logs every 4xx answer as a failed load; those are the API's answers (a wrong
    // password, no payout bound yet) that the page shows. A 5xx is a problem.
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push("console error: " + m.text());
  });
  page.on("requestfailed", (r) => {
    // A stream the page closes on purpose (navigation, log-out) is aborted, not failed.
    const why = r.failure() ? r.failure().errorText : "";
    if (!why.includes("ERR_ABORTED")) problems.push(`request failed: ${r.url()} ${why}`);
  });
  page.setDefaultTimeout(15000);
  const handle = {
    page,
    context,
    problems,
    goto: (p) => page.goto(base + p),
    async shot(name) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
    },
    check() {
      assert.deepEqual(problems, [], "the page had errors");
    },
    close() {
      openPages.delete(handle);
      return context.close();
    },
  };
  openPages.add(handle);
  return handle;
}

// A worker's agent over the HTTP API: claims the next task and answers it.
export async function connectWorker(base) {
  return api(base, "/api/worker/connect", { method: "POST", body: { worker_type: "browser-test" } });
}

export async function claim(base, token, waitSeconds = 10) {
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${base}/api/work/next?wait=${waitSeconds}`, { headers: { authorization: "Bearer " + token } });
    if (res.status === 200) return res.json();
    if (res.status !== 204) throw new Error("work/next answered " + res.status + " " + (await res.text()));
  }
  throw new Error("no task came");
}

export async function submit(base, token, taskId, output) {
  return api(base, "/api/work/submit", { method: "POST", token, body: { task_id: taskId, output } });
}

export async function assertAudit(base) {
  const audit = await api(base, "/api/admin/ledger/audit", { token: ADMIN });
  assert.equal(audit.ok, true, "the ledger audit failed: " + JSON.stringify(audit.violations));
}
