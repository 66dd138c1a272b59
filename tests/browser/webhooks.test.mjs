// Buyer webhooks on the buyers' page: a buyer adds an endpoint (the secret is shown once), a
// finished task reaches a receiver of the test's own with a signature that checks out, the page
// shows the delivery; an endpoint that keeps failing ends in the dead-letter list, and once it
// is fixed the buyer sends it again from the page.
import assert from "node:assert/strict";
import http from "node:http";
import crypto from "node:crypto";
import { scenario, suite, open, api, connectWorker, claim, submit, assertAudit, putConfig, ADMIN } from "./harness.mjs";

// This server may deliver to this machine (a development setting; production refuses it).
const s = suite({ CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE: "1" });

// A receiver answering `status()` to each POST, keeping what it got.
function receiver(status) {
  const got = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const code = status();
      got.push({ signature: req.headers["clawjobs-signature"], body, code });
      res.writeHead(code, { "content-type": "text/plain" });
      res.end(code === 200 ? "ok" : "not today");
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${server.address().port}/hook`, got, close: () => server.close() })));
}

function signedBy(secret, header, body) {
  const parts = Object.fromEntries(header.split(",").map((p) => p.split("=")));
  const want = crypto.createHmac("sha256", secret).update(`${parts.t}.${body}`).digest("hex");
  return parts.v1 === want && Math.abs(Date.now() / 1000 - Number(parts.t)) < 300;
}

scenario("a buyer adds a webhook, sees it delivered, and sends a dead one again", async () => {
  const base = s.server.base;
  await putConfig(base, "webhooks", (w) => Object.assign(w, { max_attempts: 2, initial_backoff_ms: 200, max_backoff_ms: 400, timeout_ms: 2000 }));
  let broken = false;
  const rx = await receiver(() => (broken ? 503 : 200));
  const email = "hooks-page@example.com";
  const buyer = await api(base, "/api/auth/register", { method: "POST", body: { email, password: "a long password" } });
  await api(base, "/api/admin/credit", { method: "POST", token: ADMIN, body: { user_id: buyer.user_id, amount_cents: 500, reason: "test" } });

  const p = await open(s.browser, base);
  const { page } = p;
  await p.goto("/");
  await page.click('.tab[data-tab="login"]');
  await page.fill("#auth-form [name=email]", email);
  await page.fill("#auth-form [name=password]", "a long password");
  await page.click("#auth-submit");
  await page.locator("#chat").waitFor();
  await page.click("#hook-panel summary");
  await page.locator("#hook-rows", { hasText: "No endpoint yet." }).waitFor();
  await page.fill("#hook-form [name=url]", rx.url);
  await page.check('#hook-events input[value="task.completed"]');
  await page.click("#hook-form button[type=submit]");
  const secret = (await page.locator("#hook-secret-value").innerText()).trim();
  assert.match(secret, /^whsec_[0-9a-f]{48}$/);
  const row = page.locator("#hook-rows tr", { hasText: rx.url });
  await row.waitFor();
  assert.match(await row.innerText(), /task\.completed/);
  await p.shot("webhooks-added");

  // A task finishes: the receiver gets it, signed with the secret the page showed.
  const worker = await connectWorker(base);
  const task = await api(base, "/api/task", { method: "POST", token: buyer.token, body: { type: "code", input: { prompt: "hi" } } });
  await submit(base, worker.token, (await claim(base, worker.token)).task_id, { text: "hello" });
  for (let i = 0; i < 100 && rx.got.length < 1; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(rx.got.length, 1, "the event arrived");
  assert.ok(signedBy(secret, rx.got[0].signature, rx.got[0].body), rx.got[0].signature);
  const body = JSON.parse(rx.got[0].body);
  assert.equal(body.type, "task.completed");
  assert.equal(body.data.task_id, task.task_id);

  // A task posted through the API shows up among the past tasks, live.
  await page.locator(`#tasks tr[data-task="${task.task_id}"] .badge`, { hasText: "completed" }).waitFor();
  await row.getByRole("button", { name: rx.url }).click();
  await page.locator('#hook-deliveries article[data-status="delivered"]', { hasText: "task.completed" }).waitFor();

  // The endpoint breaks: two attempts, then the dead-letter list says why.
  broken = true;
  const second = await api(base, "/api/task", { method: "POST", token: buyer.token, body: { type: "code", input: { prompt: "again" } } });
  await submit(base, worker.token, (await claim(base, worker.token)).task_id, { text: "hello again" });
  for (let i = 0; i < 100 && rx.got.length < 3; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(rx.got.map((g) => g.code), [200, 503, 503]);
  const dead = page.locator('#hook-deliveries article[data-status="dead"]');
  for (let i = 0; i < 50 && !(await dead.count()); i++) {
    await page.click("#hook-refresh");
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(await dead.innerText(), /gave up after 2 attempts/);
  assert.match(await dead.innerText(), /answered 503: not today/);
  await p.shot("webhooks-dead");

  // Fixed: send it again from the page.
  broken = false;
  await dead.getByRole("button", { name: "Send again" }).click();
  for (let i = 0; i < 100 && rx.got.length < 4; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(rx.got.length, 4);
  assert.equal(JSON.parse(rx.got[3].body).data.task_id, second.task_id);
  for (let i = 0; i < 50 && (await page.locator('#hook-deliveries article[data-status="delivered"]').count()) < 2; i++) {
    await page.click("#hook-refresh");
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(await page.locator('#hook-deliveries article[data-status="delivered"]').count(), 2);

  // Deleted: it is gone from the list.
  await row.getByRole("button", { name: "Delete" }).click();
  await page.locator("#hook-rows", { hasText: "No endpoint yet." }).waitFor();
  rx.close();
  p.check();
  await p.close();
  await assertAudit(base);
});
