// Swagger UI in a real browser (Debian's chromium through playwright-core): the page lists the
// operations, "Authorize" takes a development token, and "Try it out" on GET connection shows 200.
// Usage: node e2e/swagger.mjs <base-url> <token> <screenshot.png>
import { chromium } from "playwright-core";

const [base, token, shot] = process.argv.slice(2);
const fail = (msg) => { console.error(`swagger e2e: ${msg}`); process.exit(1); };

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  await page.goto(`${base}/swagger-ui/`, { waitUntil: "networkidle" });
  const op = page.locator("#operations-connection-get_connection");
  await op.waitFor({ timeout: 15000 });
  for (const id of ["put_connection", "delete_connection", "get_history"]) {
    if (await page.locator(`#operations-connection-${id}`).count() !== 1) fail(`operation ${id} not listed`);
  }
  if (await page.locator("#operations-orgs-get_user_orgs").count() !== 1) fail("org listing not listed");

  await page.click("button.authorize");
  const modal = page.locator(".modal-ux");
  await modal.locator("input").first().fill(token);
  await modal.locator(".auth-btn-wrapper button.authorize").click();
  await modal.locator("button", { hasText: "Logout" }).waitFor({ timeout: 5000 })
    .catch(async () => { await page.screenshot({ path: shot }); fail("Authorize did not take the token"); });
  await modal.locator("button", { hasText: "Close" }).click();

  await op.locator(".opblock-summary").first().click();
  await op.locator("button.try-out__btn").click();
  await op.locator('input[placeholder="tenant_id"]').fill("acme-prod");
  await op.locator("button.execute").click();
  const status = op.locator(".live-responses-table tr.response .response-col_status").first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.innerText()).trim();
  await page.screenshot({ path: shot, fullPage: false });
  if (code !== "200") fail(`Try it out answered ${code}, not 200`);
  const body = await op.locator(".live-responses-table tr.response .response-col_description").first().innerText();
  if (!body.includes("C0FFEE00C0FFEE00C0FFEE00@AdobeOrg")) fail("response body lacks the connected org");
  console.log(`swagger e2e: operations listed, token authorized, GET connection answered ${code}; screenshot ${shot}`);
} finally {
  await browser.close();
}
