// The buyers' page at `/`, driven in Chromium: the landing's prices follow the live config; a buyer
// signs up, chats, watches the status live and the worker's answer arrive, asks for a credit;
// the feed and past tasks update; payments switched off say so.
import assert from "node:assert/strict";
import { scenario, suite, open, api, connectWorker, claim, submit, assertAudit, ADMIN } from "./harness.mjs";

const s = suite();

scenario("the landing explains the product and prices from the live config, on a phone too", async () => {
  const p = await open(s.browser, s.server.base, { phone: true });
  await p.goto("/");
  await p.page.getByRole("heading", { name: /pay for the answer/i }).waitFor();
  const row = p.page.locator("#pricing tr", { hasText: "code" });
  assert.match(await row.innerText(), /5¢/);
  await p.shot("buyer-landing-phone");
  // The page has no horizontal scroll on a phone.
  const overflow = await p.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);

  const pricing = await api(s.server.base, "/api/admin/config/pricing", { token: ADMIN });
  delete pricing.version;
  delete pricing.updated_at;
  pricing.code.base_cents = 7;
  await api(s.server.base, "/api/admin/config/pricing", { method: "PUT", token: ADMIN, body: pricing });
  await p.page.reload();
  assert.match(await p.page.locator("#pricing tr", { hasText: "code" }).innerText(), /7¢/);
  pricing.code.base_cents = 5;
  await api(s.server.base, "/api/admin/config/pricing", { method: "PUT", token: ADMIN, body: pricing });
  p.check();
  await p.close();
});

scenario("a buyer signs up, chats, sees the answer arrive live, and asks for a credit", async () => {
  const p = await open(s.browser, s.server.base);
  const { page } = p;
  await p.goto("/");
  await page.fill("#auth-form [name=email]", "ann@example.com");
  await page.fill("#auth-form [name=password]", "a long password");
  await page.click("#auth-submit");
  await page.locator("#chat").waitFor();
  await page.locator("#balance-pill", { hasText: "50¢" }).waitFor();
  // The live feed is connected before anything happens.
  await page.locator("#feed-dot.live").waitFor();

  // The price estimate follows what is typed.
  await page.fill("#chat-input", "What is the capital of France?");
  await page.locator("#estimate", { hasText: "This message costs 2¢" }).waitFor();
  await page.click("#send");
  const status = page.locator(".msg.user .status").last();
  await status.locator(".step.now", { hasText: "pending" }).waitFor();
  assert.equal(await page.locator("#balance-pill").innerText(), "48¢");

  // A worker's agent claims it: the page shows it assigned, live.
  const worker = await connectWorker(s.server.base);
  const task = await claim(s.server.base, worker.token);
  assert.deepEqual(task.input.messages, [{ role: "user", content: "What is the capital of France?" }]);
  await status.locator(".step.now", { hasText: "assigned" }).waitFor();
  await submit(s.server.base, worker.token, task.task_id, { text: "Paris is the capital of France." });
  await page.locator(".msg.assistant .bubble", { hasText: "Paris is the capital of France." }).waitFor();
  await status.locator(".step.now", { hasText: "completed" }).waitFor();
  // The public feed shows the completion; the past tasks list shows it completed.
  await page.locator("#feed-list li", { hasText: "chat" }).waitFor();
  await page.locator(`#tasks tr[data-task="${task.task_id}"] .badge`, { hasText: "completed" }).waitFor();
  await p.shot("buyer-chat-answered");

  // The second message carries the whole conversation.
  await page.fill("#chat-input", "And of Germany?");
  await page.click("#send");
  const second = await claim(s.server.base, worker.token);
  assert.deepEqual(
    second.input.messages.map((m) => m.role + ":" + m.content),
    ["user:What is the capital of France?", "assistant:Paris is the capital of France.", "user:And of Germany?"]
  );
  await submit(s.server.base, worker.token, second.task_id, { text: "Berlin." });
  await page.locator(".msg.assistant .bubble", { hasText: "Berlin." }).waitFor();

  // Thumbs down on the last answer asks for the credit.
  await page.locator(".msg.assistant").last().getByRole("button", { name: /not good/i }).click();
  await page.fill(".msg.assistant form.credit [name=reason]", "too short");
  await page.click(".msg.assistant form.credit button[type=submit]");
  await page.locator(".msg.assistant .credited", { hasText: "Credited" }).waitFor();
  const balance = await api(s.server.base, "/api/balance", { token: await page.evaluate(() => JSON.parse(localStorage.getItem("clawjobs.buyer")).token) });
  assert.equal(await page.locator("#balance-pill").innerText(), balance.available_cents + "¢");
  await page.locator(`#tasks tr[data-task="${second.task_id}"] .badge`, { hasText: "credited" }).waitFor();

  // The conversation survives a reload (it is kept in this browser).
  await page.reload();
  await page.locator(".msg.assistant .bubble", { hasText: "Berlin." }).waitFor();
  await p.shot("buyer-chat-credited");

  // Payments are off on this server: the page says so instead of offering Checkout.
  await page.locator("#deposit-note", { hasText: "turned off" }).waitFor();
  p.check();
  await p.close();
  await assertAudit(s.server.base);
});

scenario("a wrong password is shown as an error and nothing is stored", async () => {
  const p = await open(s.browser, s.server.base);
  await p.goto("/");
  await p.page.click('[data-tab="login"]');
  await p.page.fill("#auth-form [name=email]", "ann@example.com");
  await p.page.fill("#auth-form [name=password]", "not the password");
  await p.page.click("#auth-submit");
  await p.page.locator("#auth-error").waitFor();
  assert.equal(await p.page.evaluate(() => localStorage.getItem("clawjobs.buyer")), null);
  p.check();
  await p.close();
});
