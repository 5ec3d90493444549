// The daemon away and back under an open page.
import { test } from "node:test";
import assert from "node:assert/strict";
import { World, waitRow } from "./harness.mjs";

test("repvisor not running: the page says so, Retry tries again, and it recovers when the daemon comes", { timeout: 120000 }, async (t) => {
  const w = new World("unreachable");
  t.after(() => w.close());
  const page = await w.start({ daemon: false });
  await page.waitForSelector("#unreachable");
  assert.match(await page.$eval("#unreachable", (e) => e.textContent), /repvisor is not running or not reachable/);
  await w.screenshot("not-running");

  // Retry makes a real new attempt: a new "not reachable" state replaces the old one.
  await page.$eval("#unreachable", (e) => e.setAttribute("data-old", "1"));
  await page.click("#retry");
  await page.waitForFunction(() => {
    const e = document.querySelector("#unreachable");
    return e && !e.hasAttribute("data-old");
  });

  // The daemon takes its name on the bus: the page loads the list by itself.
  await w.startDaemon();
  await page.waitForSelector("#no-jobs");
  await w.ctl("submit", "--name", "survivor", "--", "sleep", "1000");
  await waitRow(page, "survivor", { state: "running" });

  // Stopped under the open page (it stops its jobs): no stale rows, the page says it is gone.
  await w.stopDaemon();
  await page.waitForSelector("#unreachable");
  await waitRow(page, "survivor", { absent: true });
  await w.screenshot("daemon-gone");
  // Back: the list again, with the job as the daemon left it.
  await w.startDaemon();
  await waitRow(page, "survivor", { state: "cancelled" });
  assert.equal(await w.prop("survivor", "RequestedByUID"), 4294967295);
  await w.screenshot("daemon-back");
  assert.deepEqual(w.pageErrors, []);
});
