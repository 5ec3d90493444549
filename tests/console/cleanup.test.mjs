// Retry cleanup: a job whose loop device someone else holds open cannot be detached, so its cleanup
// fails; the page shows why, offers Retry cleanup instead of Resume and Delete, says in plain
// words when the retry fails again, and succeeds once the device is free.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { World, waitRow } from "./harness.mjs";

test("retry cleanup from the banner: refused while the device is held, done once it is free", { timeout: 180000 }, async (t) => {
  // A short detach timeout: a held device is reported at once rather than after the default wait.
  const w = new World("cleanup", { volumes: 'detach_timeout = "300ms"' });
  let holder = null;
  t.after(async () => {
    if (holder !== null) fs.closeSync(holder);
    await w.close();
  });
  const page = await w.start();
  const spec = path.join(w.dir, "held.toml");
  fs.writeFileSync(
    spec,
    `name = "held"\nargv = ["sleep", "1000"]\n` +
      `[[resources]]\nkind = "loop"\nname = "dst"\npath = "${w.volumes}/held.img"\nsize = "16M"\non_stop = "keep"\n`,
  );
  await w.ctl("submit", "-F", spec);
  await waitRow(page, "held", { state: "running" });
  const [loop] = await w.resources("held");
  assert.match(loop.device, /^\/dev\/loop\d+$/);
  // Someone else holds the device open: the detach can only be deferred, and the cleanup fails.
  holder = fs.openSync(loop.device, "r");
  await w.ctl("stop", "held", "--force");
  await waitRow(page, "held", { state: "cancelled" });
  assert.equal(await w.prop("held", "CleanupState"), "failed");

  // The row offers Retry cleanup, neither Resume nor Delete (the daemon refuses both now).
  await page.click('tr[data-job-name="held"] button[aria-label="Actions"]');
  const keys = await page.$$eval('tr[data-job-name="held"] [data-key]', (items) => items.map((e) => e.dataset.key));
  assert.deepEqual(keys, ["retry-cleanup"]);
  await page.keyboard.press("Escape");

  await page.click('tr[data-job-name="held"] a.repvisor-job-link');
  await page.waitForSelector("#banner-cleanup");
  assert.match(await page.$eval("#banner-cleanup", (e) => e.textContent), /The cleanup of this job failed: .*still attached/);
  assert.ok(!(await page.$("#banner-cancelled")));
  assert.ok(!(await page.$("#action-delete")) && !(await page.$("#action-resume")));
  assert.match(await page.$eval('[data-resource="dst"]', (e) => e.textContent), /failed/);
  await w.screenshot("cleanup-failed");

  // Retried while the device is still held: refused, in plain words; the dialog stays.
  await page.click("#banner-retry-cleanup");
  await page.waitForSelector("#cleanup-dialog");
  assert.match(await page.$eval("#cleanup-dialog", (e) => e.textContent), /The last cleanup failed: .*still attached/);
  await w.screenshot("cleanup-dialog");
  await page.click("#cleanup-confirm");
  await page.waitForSelector("#cleanup-error");
  assert.match(await page.$eval("#cleanup-error", (e) => e.textContent), /The cleanup failed again: .*still attached/);
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("Could not clean up “held”"));
  assert.equal(await page.$eval("#cleanup-confirm", (e) => e.textContent), "Retry cleanup");

  // Freed: the retry succeeds, the page shows the job as a cancelled one again.
  fs.closeSync(holder);
  holder = null;
  await page.click("#cleanup-confirm");
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("The cleanup of “held” succeeded"));
  await page.waitForSelector("#cleanup-dialog", { hidden: true });
  await page.waitForSelector("#banner-cancelled");
  await page.waitForSelector("#banner-cleanup", { hidden: true });
  assert.equal(await w.prop("held", "CleanupState"), "done");
  await page.waitForSelector("#action-delete");
  await page.waitForSelector('#trail tr[data-type="cleanup-retry"]');
  await w.screenshot("cleanup-done");
  assert.deepEqual(w.pageErrors, []);
});
