// The workers' dashboard at `/worker`: a worker signs in with its token and sees its earnings
// (frozen, and when they free up), tier progress, task history, preferences and its own
// connection guide.
import assert from "node:assert/strict";
import { scenario, suite, open, api, connectWorker, claim, submit, assertAudit, ADMIN } from "./harness.mjs";

const s = suite();

scenario("a worker sees its earnings, tier progress and history, and saves preferences", async () => {
  const buyer = await api(s.server.base, "/api/auth/register", { method: "POST", body: { email: "bo@example.com", password: "a long password" } });
  await api(s.server.base, "/api/admin/credit", { method: "POST", token: ADMIN, body: { user_id: buyer.user_id, amount_cents: 500, reason: "test" } });
  const worker = await connectWorker(s.server.base);
  for (const prompt of ["fizzbuzz", "hello world", "quicksort"]) {
    await api(s.server.base, "/api/task", { method: "POST", token: buyer.token, body: { type: "code", input: { prompt } } });
    const task = await claim(s.server.base, worker.token);
    await submit(s.server.base, worker.token, task.task_id, { text: "fn main() {}" });
  }
  const me = await api(s.server.base, "/api/worker/me", { token: worker.token });

  const p = await open(s.browser, s.server.base);
  const { page } = p;
  await p.goto("/worker");
  await page.fill("#signin-form [name=token]", worker.token);
  await page.click("#signin-form button[type=submit]");
  await page.locator("#e-total", { hasText: "$" }).or(page.locator("#e-total", { hasText: "¢" })).waitFor();

  const cents = (n) => (n < 100 ? n + "¢" : "$" + Math.floor(n / 100) + "." + String(n % 100).padStart(2, "0"));
  assert.equal(await page.locator("#e-total").innerText(), cents(me.earnings.total_cents));
  assert.equal(await page.locator("#e-frozen").innerText(), cents(me.earnings.frozen_cents));
  assert.equal(await page.locator("#e-withdrawable").innerText(), "0¢");
  // Frozen money frees up when the refund window ends (24 hours by default).
  assert.match(await page.locator("#e-frees").innerText(), /next: 3¢ frees in 2[34] h/);
  assert.equal(await page.locator("#tier-name").innerText(), "new");
  assert.match(await page.locator("#tier-next").innerText(), /47 more completed tasks to reach proven/);
  const bar = page.getByRole("progressbar", { name: "Completed tasks" });
  assert.equal(await bar.getAttribute("aria-valuenow"), "6"); // 3 of 50
  assert.equal(await page.locator("#lots tr").count(), 3);
  assert.match(await page.locator("#lots tr").first().innerText(), /code/);

  // Preferences: saved through the API, shown again after a reload.
  await page.fill("#prefs-form [name=accept]", "code, chat");
  await page.fill("#prefs-form [name=min_price]", "3");
  await page.click("#prefs-form button[type=submit]");
  await page.locator("#toast", { hasText: "Preferences saved" }).waitFor();
  const after = await api(s.server.base, "/api/worker/me", { token: worker.token });
  assert.deepEqual(after.profile.preferences.accept, ["code", "chat"]);
  assert.equal(after.profile.preferences.min_price, 3);

  // A bad value is refused with the server's message and changes nothing.
  await page.fill("#prefs-form [name=accept]", "code, " + "x".repeat(80));
  await page.click("#prefs-form button[type=submit]");
  await page.locator("#prefs-error", { hasText: "preferences.accept" }).waitFor();
  const unchanged = await api(s.server.base, "/api/worker/me", { token: worker.token });
  assert.deepEqual(unchanged.profile.preferences.accept, ["code", "chat"]);

  // The guide has this server's address; the token only when asked for.
  await page.click('[data-guide="python"]');
  const guide = await page.locator("#guide-code").innerText();
  assert.ok(guide.includes(s.server.base), guide);
  assert.ok(!guide.includes(worker.token));
  await page.check("#reveal");
  assert.ok((await page.locator("#guide-code").innerText()).includes(worker.token));
  await page.uncheck("#reveal");

  // Withdrawing needs a bound payout first: the page shows the server's answer.
  await page.fill("#withdraw-form [name=amount]", "1");
  await page.click("#withdraw-form button[type=submit]");
  await page.locator("#withdraw-error").waitFor();
  await p.shot("worker-dashboard");
  p.check();
  await p.close();
  await assertAudit(s.server.base);
});

scenario("a new worker connects from the page and its token is shown once", async () => {
  const p = await open(s.browser, s.server.base, { phone: true });
  await p.goto("/worker");
  await p.page.click("#connect");
  await p.page.locator("#new-token-value", { hasText: "cjw_" }).waitFor();
  await p.page.locator("#tier-name", { hasText: "new" }).waitFor();
  await p.shot("worker-new-phone");
  p.check();
  await p.close();
});
