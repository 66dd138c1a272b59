// Deposits from the buyers' page: "Add $5" opens Stripe Checkout (a stand-in here), and back on
// the page after paying, the deposit is followed until Stripe's webhook credits it.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { scenario, relax, startServer, startFakeStripe, launch, open, api, assertAudit } from "./harness.mjs";

const SECRET = "whsec_browser_test";
let server, stripe, browser;

before(async () => {
  stripe = await startFakeStripe();
  server = await startServer({
    STRIPE_SECRET_KEY: "sk_test_browser",
    STRIPE_WEBHOOK_SECRET: SECRET,
    STRIPE_API_BASE: stripe.base,
    CLAWJOBS_PUBLIC_URL: "http://clawjobs.test",
  });
  browser = await launch();
  await relax(server.base);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  stripe?.stop();
});

// Stripe's webhook for a paid Checkout Session, signed as Stripe signs it.
async function paid(deposit) {
  const body = JSON.stringify({
    id: "evt_browser_1", object: "event", api_version: "2025-03-31.basil", created: Math.floor(Date.now() / 1000),
    livemode: false, pending_webhooks: 1, type: "checkout.session.completed",
    data: { object: {
      id: deposit.session_id, object: "checkout.session", client_reference_id: deposit.deposit_id,
      metadata: { deposit_id: deposit.deposit_id }, amount_total: deposit.amount_cents, currency: "usd",
      payment_status: "paid", status: "complete",
    } },
  });
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac("sha256", SECRET).update(`${t}.${body}`).digest("hex");
  const res = await fetch(server.base + "/api/deposit/webhook", {
    method: "POST", headers: { "content-type": "application/json", "stripe-signature": `t=${t},v1=${v1}` }, body,
  });
  assert.equal(res.status, 200, await res.text());
}

scenario("a buyer deposits through Checkout and sees the money arrive", async () => {
  const p = await open(browser, server.base, { phone: true });
  const { page } = p;
  // Stripe's hosted page is not reachable from here: the stand-in answers for it.
  await p.context.route("https://checkout.stripe.test/**", (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>Checkout</title><h1>Pay $5.00</h1>" }));
  await p.goto("/");
  await page.fill("#auth-form [name=email]", "dot@example.com");
  await page.fill("#auth-form [name=password]", "a long password");
  await page.click("#auth-submit");
  await page.locator("#deposit-note", { hasText: "first deposit gets 20% extra" }).waitFor();
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem("clawjobs.buyer")).token);
  await page.getByRole("button", { name: "Add $5.00" }).click();
  await page.waitForURL("https://checkout.stripe.test/**");
  assert.match(await page.locator("h1").innerText(), /Pay \$5\.00/);

  const [deposit] = (await api(server.base, "/api/deposits", { token })).data;
  assert.equal(deposit.status, "pending");
  // Stripe sends the buyer back, and its webhook arrives a moment later.
  await page.goto(`${server.base}/deposit/success?deposit_id=${deposit.deposit_id}`);
  await page.locator("#page-notice", { hasText: "your payment went through" }).waitFor();
  await paid(deposit);
  await page.locator("#toast", { hasText: "Your deposit is in your balance" }).waitFor({ timeout: 20000 });
  // 50¢ signup credit + $5.00 + the 20% first-deposit bonus.
  await page.locator("#balance-pill", { hasText: "$6.50" }).waitFor();
  await page.locator("#deposits .badge.completed").waitFor({ state: "attached" });
  await page.locator("#page-notice", { hasText: "Your deposit of $5.00 is in your balance" }).waitFor();
  // The bonus was for the first deposit only.
  await page.locator("#deposit-note", { hasText: /^Pay with Stripe Checkout\.$/ }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/", "the page leaves the return address behind");
  await p.shot("buyer-deposit-credited-phone");
  p.check();
  await p.close();
  await assertAudit(server.base);
});
