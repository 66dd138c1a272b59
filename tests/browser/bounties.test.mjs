// Bounties on the buyers' and workers' pages, two browsers side by side: a buyer posts a bounty
// (the reward goes into escrow), a worker finds it and submits, the buyer sees the submission
// arrive live and rejects it with a reason, the worker is told live and disputes; an admin's
// resolution reaches both pages.
import assert from "node:assert/strict";
import { scenario, suite, open, api, connectWorker, claim, submit, relax, putConfig, assertAudit, ADMIN } from "./harness.mjs";

const s = suite();

scenario("a buyer posts a bounty, a worker submits and disputes the rejection, both told live", async () => {
  const base = s.server.base;
  const email = "bounty-poster@example.com";
  const password = "a long password";
  const buyer = await api(base, "/api/auth/register", { method: "POST", body: { email, password } });
  await api(base, "/api/admin/credit", { method: "POST", token: ADMIN, body: { user_id: buyer.user_id, amount_cents: 5000, reason: "test" } });
  const start = (await api(base, "/api/balance", { token: buyer.token })).available_cents;

  // The buyer logs in and posts through the form.
  const b = await open(s.browser, base);
  await b.goto("/");
  await b.page.click('.tab[data-tab="login"]');
  await b.page.fill("#auth-form [name=email]", email);
  await b.page.fill("#auth-form [name=password]", password);
  await b.page.click("#auth-submit");
  await b.page.locator("#bounties").waitFor();
  await b.page.locator("#bounty-rows", { hasText: "You have not posted a bounty yet." }).waitFor();
  await b.page.click("#bounty-new summary");
  await b.page.fill("#bounty-form [name=title]", "Summarise the RFC");
  await b.page.fill("#bounty-form [name=description]", "One page, plain words.");
  await b.page.fill("#bounty-form [name=criteria]", "Covers every section");
  await b.page.fill("#bounty-form [name=reward]", "20");
  // Two days from now, in the browser's own time zone, as a datetime-local field wants it.
  const deadline = await b.page.evaluate(() => {
    const d = new Date(Date.now() + 48 * 3600 * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  });
  await b.page.fill("#bounty-form [name=deadline]", deadline);
  await b.page.click("#bounty-form button[type=submit]");
  const mine = b.page.locator("#bounty-rows tr", { hasText: "Summarise the RFC" });
  await mine.waitFor();
  assert.match(await mine.innerText(), /\$20\.00/);
  const bountyId = await mine.getAttribute("data-id");
  await b.page.locator("#bounty-detail", { hasText: "escrow $20.00" }).waitFor();
  // The balance pill follows the money into escrow.
  await b.page.locator("#balance-pill", { hasText: cents(start - 2000) }).waitFor();
  const posted = await api(base, `/api/bounties/${bountyId}`, { token: buyer.token });
  assert.equal(posted.escrow_cents, 2000);
  assert.equal(posted.criteria, "Covers every section");
  assert.equal(posted.review, "manual");
  await b.shot("bounty-buyer-posted");

  // A worker finds it among the open bounties and submits.
  const worker = await connectWorker(base);
  const w = await open(s.browser, base);
  await w.goto("/worker");
  await w.page.fill("#signin-form [name=token]", worker.token);
  await w.page.click("#signin-form button[type=submit]");
  await w.page.locator(`#bounty-rows tr[data-id="${bountyId}"]`).click();
  await w.page.locator("#bounty-detail", { hasText: "Criteria: Covers every section" }).waitFor();
  await w.page.fill("#bounty-submit [name=text]", "The RFC says three things.");
  await w.page.click("#bounty-submit button[type=submit]");
  const own = w.page.locator("article.submission.mine");
  await own.and(w.page.locator('[data-status="pending"]')).waitFor();
  assert.match(await own.innerText(), /Your submission #1/);

  // The buyer's open bounty shows the submission as it arrives, and a notification says so.
  const sub = b.page.locator('article.submission[data-status="pending"]');
  await sub.waitFor();
  assert.match(await sub.innerText(), /The RFC says three things\./);
  await b.page.locator("#bounty-notes", { hasText: "New submission #1 to “Summarise the RFC”." }).waitFor();
  await b.shot("bounty-buyer-review");
  await sub.locator("[name=reason]").fill("misses section 4");
  await sub.getByRole("button", { name: "Reject" }).click();
  await b.page.locator('article.submission[data-status="rejected"]', { hasText: "Rejected: misses section 4" }).waitFor();

  // The worker is told live, with the reason, and disputes it within the window.
  await w.page.locator("#bounty-notes", { hasText: "was rejected: misses section 4" }).waitFor();
  await own.and(w.page.locator('[data-status="rejected"]')).waitFor();
  await w.shot("bounty-worker-rejected");
  await own.locator(".dispute-form [name=reason]").fill("section 4 is the second paragraph");
  await own.locator(".dispute-form button[type=submit]").click();
  await own.and(w.page.locator('[data-status="disputed"]')).waitFor();
  assert.match(await own.innerText(), /an admin decides/);
  await b.page.locator("#bounty-notes", { hasText: "A worker disputes your rejection: section 4 is the second paragraph" }).waitFor();
  await b.page.locator('article.submission[data-status="disputed"]').waitFor();

  // An admin sides with the worker: both pages hear it.
  const [dispute] = (await api(base, "/api/admin/disputes?status=open", { token: ADMIN })).data;
  assert.equal(dispute.submission_id, await own.getAttribute("data-id"));
  await api(base, `/api/admin/disputes/${dispute.dispute_id}/resolve`, { method: "POST", token: ADMIN, body: { outcome: "worker" } });
  await w.page.locator("#bounty-notes", { hasText: "A dispute was resolved (worker): $18.00 to the worker, 0¢ back to the buyer." }).waitFor();
  await own.and(w.page.locator('[data-status="resolved"]')).waitFor();
  assert.match(await own.innerText(), /Paid \$18\.00/);
  await b.page.locator("#bounty-rows tr", { hasText: "resolved" }).waitFor();
  // The worker's earnings follow at once, and the bounty stays among those it submitted to.
  await w.page.locator("#e-frozen", { hasText: "$18.00" }).waitFor();
  await w.page.locator("#bounty-rows", { hasText: "No bounty is open right now." }).waitFor();
  await w.page.click('#bounty-tabs .tab[data-bview="mine"]');
  await w.page.locator(`#bounty-rows tr[data-id="${bountyId}"]`, { hasText: "resolved" }).waitFor();
  await w.shot("bounty-worker-resolved");

  // Marking the notifications read empties the list, and it stays empty after a reload.
  await w.page.click("#bounty-notes-read");
  await w.page.locator("#bounty-notes").waitFor({ state: "hidden" });
  await w.page.reload();
  await w.page.locator("#bounty-rows tr").first().waitFor();
  assert.equal(await w.page.locator("#bounty-notes").isHidden(), true);
  const unread = await api(base, "/api/notifications?unread=true", { token: worker.token });
  assert.equal(unread.data.length, 0);

  const paid = await api(base, "/api/balance", { token: worker.token });
  assert.equal(paid.frozen_cents, 1800, "the reward less the 10% fee, frozen until the dispute window ends");
  b.check();
  w.check();
  await assertAudit(base);
});

scenario("a validator judges a consensus bounty's submission from the workers' page", async () => {
  const base = s.server.base;
  await relax(base);
  // One completed task makes a worker proven, proven may validate, and one vote decides.
  await putConfig(base, "tiers", (t) => {
    t.levels.proven.min_tasks = 1;
    t.levels.proven.min_completion = 0.5;
  });
  await putConfig(base, "bounty", (b) => {
    b.validator_min_tier = "proven";
    b.validators = 1;
  });
  const buyer = await api(base, "/api/auth/register", { method: "POST", body: { email: "consensus@example.com", password: "a long password" } });
  await api(base, "/api/admin/credit", { method: "POST", token: ADMIN, body: { user_id: buyer.user_id, amount_cents: 5000, reason: "test" } });
  const validator = await connectWorker(base);
  await api(base, "/api/task", { method: "POST", token: buyer.token, body: { type: "chat", input: { messages: [{ role: "user", content: "hi" }] } } });
  const task = await claim(base, validator.token);
  const done = await submit(base, validator.token, task.task_id, { text: "hello" });
  assert.equal(done.tier, "proven");

  const v = await open(s.browser, base);
  await v.goto("/worker");
  await v.page.fill("#signin-form [name=token]", validator.token);
  await v.page.click("#signin-form button[type=submit]");
  await v.page.locator("#bounties").waitFor();
  assert.equal(await v.page.locator("#votes").isHidden(), true);

  // A consensus bounty gets a submission: the validator is asked live and reads what to judge.
  const deadline = new Date(Date.now() + 48 * 3600 * 1000).toISOString();
  const bounty = await api(base, "/api/bounties", { method: "POST", token: buyer.token, body: {
    title: "Name the release", description: "Three names.", criteria: "Short and pronounceable",
    reward_cents: 2000, deadline, review: "consensus" } });
  const submitter = await connectWorker(base);
  const sub = await api(base, `/api/bounties/${bounty.bounty_id}/submissions`, { method: "POST", token: submitter.token,
    body: { content: { text: "Otter, Fjord, Quill" } } });
  const card = v.page.locator(`#vote-list article[data-id="${sub.submission_id}"]`);
  await card.waitFor();
  assert.match(await card.innerText(), /Criteria: Short and pronounceable/);
  assert.match(await card.innerText(), /Otter, Fjord, Quill/);
  assert.doesNotMatch(await card.innerText(), new RegExp(submitter.worker_id));
  await v.page.locator("#bounty-notes", { hasText: "You are asked to judge submission #1 to “Name the release”" }).waitFor();
  await v.shot("bounty-validator-asked");

  // Its vote decides (one validator): the submitter is paid, the validator too.
  await card.getByRole("button", { name: "It meets them" }).click();
  await v.page.locator("#votes").waitFor({ state: "hidden" });
  await v.page.locator("#bounty-notes", { hasText: "you were paid 25¢" }).waitFor();
  const after = await api(base, `/api/bounties/${bounty.bounty_id}`, { token: buyer.token });
  assert.equal(after.status, "completed");
  assert.equal((await api(base, "/api/balance", { token: submitter.token })).frozen_cents, 1800);
  v.check();
  await assertAudit(base);
});

function cents(n) {
  return n < 100 ? n + "¢" : "$" + Math.floor(n / 100).toLocaleString("en-US") + "." + String(n % 100).padStart(2, "0");
}
