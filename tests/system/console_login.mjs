// Drives the console for test_console.py: headless Chromium logs in through Cockpit's real login
// page (PAM) at http://127.0.0.1:9090 and acts on the repvisor page. Run inside the container's
// network namespace (nsenter -n), so that 127.0.0.1 is the container's loopback.
//   node console_login.mjs stop USER PASSWORD JOB REASON SCREENSHOT   stops JOB from the Stop dialog
//   node console_login.mjs read-only USER PASSWORD JOB SCREENSHOT     finds the actions disabled
// Prints one JSON line with what the page showed; exits non-zero on any failure.
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const puppeteer = createRequire(path.join(ROOT, "console/package.json"))("puppeteer-core");
const BASE = "http://127.0.0.1:9090";

async function row(page, job, state) {
  await page.waitForFunction(
    (n, s) => document.querySelector(`tr[data-job-name="${n}"]`)?.dataset.state === s,
    { polling: "mutation", timeout: 30000 },
    job,
    state,
  );
}

async function main() {
  const [verb, user, password, job, ...rest] = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"],
    defaultViewport: { width: 1280, height: 800 },
  });
  const errors = [];
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(30000);
    page.on("pageerror", (e) => errors.push(String(e)));
    // The login page, as a person sees it: name, password, the button; PAM decides.
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#login-user-input");
    await page.type("#login-user-input", user);
    await page.type("#login-password-input", password);
    // Logged in once the login form is gone (Cockpit reloads into the shell); a refusal is
    // shown on the form instead, and named here.
    await page.click("#login-button");
    try {
      await page.waitForSelector("#login-user-input", { hidden: true, timeout: 90000 });
    } catch (e) {
      const said = await page.$eval("#login-error-message", (el) => el.textContent).catch(() => "");
      throw new Error(`login as ${user} did not complete: ${said || e.message}`);
    }
    // Logged in: the session cookie opens the repvisor page (the shell shows it in a frame).
    await page.goto(`${BASE}/cockpit/@localhost/repvisor/index.html`);
    await row(page, job, "running");
    const out = { errors };
    if (verb === "stop") {
      const [reason, shot] = rest;
      await page.waitForSelector('#jobs-card[data-may="true"]');
      await page.click(`tr[data-job-name="${job}"] button[aria-label="Actions"]`);
      await page.click(`tr[data-job-name="${job}"] [data-key="stop"]`);
      await page.waitForSelector("#stop-dialog");
      await page.select("#stop-reason", reason);
      await page.type("#stop-notes", `stopped from the console by ${user}`);
      await page.click("#stop-confirm");
      await page.waitForSelector("#stop-dialog", { hidden: true });
      await row(page, job, "cancelled");
      await page.screenshot({ path: shot });
      out.row = await page.$eval(`tr[data-job-name="${job}"]`, (e) => e.textContent);
    } else if (verb === "read-only") {
      // The page learns from the daemon that this user may only read, and shows the actions
      // disabled (docs/console.md); a click on one opens nothing.
      const [shot] = rest;
      await page.waitForSelector('#jobs-card[data-may="false"]');
      await page.click(`tr[data-job-name="${job}"] button[aria-label="Actions"]`);
      await page.waitForSelector(`tr[data-job-name="${job}"] [data-key="stop"]`);
      out.disabled = {};
      for (const key of ["stop", "stop-delete"])
        out.disabled[key] = await page.$eval(`tr[data-job-name="${job}"] [data-key="${key}"]`, (e) => e.getAttribute("aria-disabled"));
      await page.hover(`tr[data-job-name="${job}"] [data-key="stop"]`);
      await page.waitForSelector(".pf-c-tooltip");
      out.tooltip = await page.$eval(".pf-c-tooltip", (e) => e.textContent);
      await page.screenshot({ path: shot });
      await page.click(`tr[data-job-name="${job}"] [data-key="stop"]`);
      out.dialog = Boolean(await page.$("#stop-dialog"));
      out.state = await page.$eval(`tr[data-job-name="${job}"]`, (e) => e.dataset.state);
    } else {
      throw new Error(`unknown verb ${verb}`);
    }
    console.log(JSON.stringify(out));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
