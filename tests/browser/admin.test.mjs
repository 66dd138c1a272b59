// The actor console at `/admin`: an admin finds the Dispatcher, drills into it, follows a task's
// timeline from there, runs a Supervisor job, watches the live charts, and is shown the server's
// validation error when saving a bad config (after a diff of the change).
import assert from "node:assert/strict";
import { scenario, suite, open, api, connectWorker, claim, submit, assertAudit, ADMIN, sleep } from "./harness.mjs";

const s = suite();

scenario("an admin finds the Dispatcher, drills in and follows a task's timeline", async () => {
  const buyer = await api(s.server.base, "/api/auth/register", { method: "POST", body: { email: "cat@example.com", password: "a long password" } });
  await api(s.server.base, "/api/admin/credit", { method: "POST", token: ADMIN, body: { user_id: buyer.user_id, amount_cents: 500, reason: "test" } });
  // One task done, one held by a worker, one waiting.
  const worker = await connectWorker(s.server.base);
  const done = await api(s.server.base, "/api/task", { method: "POST", token: buyer.token, body: { type: "code", input: { prompt: "a" } } });
  await submit(s.server.base, worker.token, (await claim(s.server.base, worker.token)).task_id, { text: "fn a() {}" });
  const held = await api(s.server.base, "/api/task", { method: "POST", token: buyer.token, body: { type: "code", input: { prompt: "b" } } });
  await claim(s.server.base, worker.token);
  await api(s.server.base, "/api/task", { method: "POST", token: buyer.token, body: { type: "research", input: { q: "c" } } });

  const p = await open(s.browser, s.server.base);
  const { page } = p;
  await p.goto("/admin");
  await page.fill("#signin-form [name=token]", ADMIN);
  await page.click("#signin-form button[type=submit]");
  await page.locator("#health-pill", { hasText: "all invariants hold" }).waitFor();
  // The live charts get a figure a second.
  await page.locator("#v-queue", { hasText: "1" }).waitFor();
  await sleep(2500);
  await p.shot("admin-overview");

  await page.click('[data-view="actors"]');
  await page.selectOption("#actor-kind", "Dispatcher");
  const row = page.locator('#actor-rows tr[data-kind="Dispatcher"]');
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll("#actor-rows tr");
    return rows.length === 1 && rows[0].dataset.kind === "Dispatcher";
  });
  await row.click();
  const state = page.locator("#drill-state");
  await state.locator("text=pending_by_type").waitFor();
  assert.match(await state.innerText(), /"research": 1/);
  assert.match(await state.innerText(), new RegExp(worker.worker_id));
  await p.shot("admin-dispatcher");

  // The held task's id in the Dispatcher's state opens its timeline.
  await state.getByRole("button", { name: `"${held.task_id}"` }).click();
  await page.locator('#timeline-rows tr[data-event="claimed"]').waitFor();
  const events = await page.locator("#timeline-rows tr").evaluateAll((rows) => rows.map((r) => r.dataset.event));
  assert.deepEqual(events, ["posted", "claimed"]);
  // And the finished one, typed in.
  await page.fill("#timeline-form [name=task_id]", done.task_id);
  await page.click("#timeline-form button[type=submit]");
  await page.locator('#timeline-rows tr[data-event="submitted"]').waitFor();
  await p.shot("admin-timeline");

  // Every actor kind is there, sortable; a balance actor is found by its id.
  await page.click('[data-view="actors"]');
  await page.selectOption("#actor-kind", "");
  await page.fill("#actor-filter [name=q]", buyer.user_id);
  await page.locator(`#actor-rows tr[data-kind="BalanceActor"][data-id="${buyer.user_id}"]`).waitFor();
  await page.fill("#actor-filter [name=q]", "");
  for (const kind of ["Dispatcher", "FeedHub", "Supervisor", "ConfigActor", "QaComparator", "BalanceActor"]) {
    await page.locator(`#actor-kind option[value="${kind}"]`).waitFor({ state: "attached" });
  }
  await page.click('th[data-sort="messages_handled"]');
  await page.locator('th.sorted[data-sort="messages_handled"]').waitFor();
  await p.shot("admin-actors");

  // The Supervisor's jobs, and one run now.
  await page.click('[data-view="jobs"]');
  const purge = page.locator('#job-rows tr[data-job="purge_idempotency"]');
  await purge.waitFor();
  assert.match(await purge.innerText(), /not yet/);
  await purge.getByRole("button", { name: "Run now" }).click();
  await purge.locator(".badge.ok", { hasText: "forgot" }).waitFor();
  await p.shot("admin-jobs");
  p.check();
  await p.close();
  await assertAudit(s.server.base);
});

scenario("a bad config is shown as the server's validation error and nothing changes", async () => {
  const p = await open(s.browser, s.server.base);
  const { page } = p;
  await p.goto("/admin");
  await page.fill("#signin-form [name=token]", ADMIN);
  await page.click("#signin-form button[type=submit]");
  await page.click('[data-view="config"]');
  await page.selectOption("#config-key", "commissions");
  await page.locator("#config-version", { hasText: "version" }).waitFor();
  const before = await api(s.server.base, "/api/admin/config/commissions", { token: ADMIN });
  const text = await page.inputValue("#config-text");
  const doc = JSON.parse(text);
  doc.standard = 1.5; // a commission above 100 %
  await page.fill("#config-text", JSON.stringify(doc, null, 2));
  await page.click("#config-review");
  await page.locator("#config-diff .add", { hasText: '"standard": 1.5' }).waitFor();
  await page.locator("#config-diff .del", { hasText: '"standard": 0.2' }).waitFor();
  await page.click("#config-save");
  await page.locator("#config-error", { hasText: "Not saved" }).waitFor();
  await p.shot("admin-config-invalid");
  const afterDoc = await api(s.server.base, "/api/admin/config/commissions", { token: ADMIN });
  assert.equal(afterDoc.version, before.version, "nothing was stored");

  // Broken JSON never reaches the server.
  await page.fill("#config-text", "{ not json");
  await page.click("#config-review");
  await page.locator("#config-error", { hasText: "Not valid JSON" }).waitFor();
  assert.equal(await page.locator("#config-save").isDisabled(), true);

  // A good change is saved and in force.
  doc.standard = 0.18;
  await page.fill("#config-text", JSON.stringify(doc, null, 2));
  await page.click("#config-review");
  await page.click("#config-save");
  await page.locator("#config-version", { hasText: `version ${before.version + 1}` }).waitFor();
  assert.equal((await api(s.server.base, "/api/admin/config/commissions", { token: ADMIN })).standard, 0.18);

  // The earlier version is listed; rolling back to it puts its content back as a new version.
  const old = page.locator(`#config-history tr[data-version="${before.version}"]`);
  await old.getByRole("button", { name: "Roll back to this" }).click();
  await page.locator("#config-version", { hasText: `version ${before.version + 2}` }).waitFor();
  assert.equal((await api(s.server.base, "/api/admin/config/commissions", { token: ADMIN })).standard, before.standard);
  await p.shot("admin-config-history");
  p.check();
  await p.close();
});

scenario("an admin reads both sides of a dispute and splits the escrow", async () => {
  const base = s.server.base;
  const buyer = await api(base, "/api/auth/register", { method: "POST", body: { email: "bounty-buyer@example.com", password: "a long password" } });
  await api(base, "/api/admin/credit", { method: "POST", token: ADMIN, body: { user_id: buyer.user_id, amount_cents: 5000, reason: "test" } });
  const start = (await api(base, "/api/balance", { token: buyer.token })).available_cents;
  const deadline = new Date(Date.now() + 48 * 3600 * 1000).toISOString();
  const bounty = await api(base, "/api/bounties", {
    method: "POST", token: buyer.token,
    body: { title: "Port the parser", description: "With tests.", criteria: "cargo test passes", reward_cents: 2000, deadline },
  });
  const worker = await connectWorker(base);
  const sub = await api(base, `/api/bounties/${bounty.bounty_id}/submissions`, { method: "POST", token: worker.token, body: { content: { repo: "https://example.com/parser.git" } } });
  await api(base, `/api/bounties/${bounty.bounty_id}/submissions/${sub.submission_id}/reject`, { method: "POST", token: buyer.token, body: { reason: "the tests fail" } });
  const dispute = await api(base, `/api/bounties/${bounty.bounty_id}/submissions/${sub.submission_id}/dispute`, { method: "POST", token: worker.token, body: { reason: "they pass on a clean checkout" } });

  const p = await open(s.browser, base);
  const { page } = p;
  await p.goto("/admin#bounties");
  if (await page.locator("#signin-form").isVisible()) {
    await page.fill("#signin-form [name=token]", ADMIN);
    await page.click("#signin-form button[type=submit]");
  }
  const card = page.locator(`article.dispute[data-id="${dispute.dispute_id}"]`);
  await card.waitFor();
  assert.equal(await card.locator(".buyer-said").innerText(), "the tests fail");
  assert.equal(await card.locator(".worker-said").innerText(), "they pass on a clean checkout");
  await card.locator("summary").click();
  await card.locator("pre", { hasText: "parser.git" }).waitFor();
  // The bounty's escrow is held while the dispute is open.
  await page.locator(`#bounty-rows tr[data-id="${bounty.bounty_id}"]`, { hasText: "$20.00" }).waitFor();
  await p.shot("admin-dispute");

  await card.locator("[name=pct]").fill("60");
  await card.getByRole("button", { name: "Split" }).click();
  await page.locator("#dispute-list", { hasText: "No dispute is open." }).waitFor();
  await page.locator("#bounty-rows", { hasText: "No bounty is open." }).waitFor();
  const after = await api(base, `/api/bounties/${bounty.bounty_id}`, { token: buyer.token });
  assert.equal(after.status, "resolved");
  const w = await api(base, "/api/balance", { token: worker.token });
  assert.equal(w.frozen_cents, 1080, "60% of $20, less the 10% fee on it");
  const b = await api(base, "/api/balance", { token: buyer.token });
  assert.equal(b.available_cents, start - 2000 + 800, "40% came back");
  p.check();
  await p.close();
  await assertAudit(base);
});
