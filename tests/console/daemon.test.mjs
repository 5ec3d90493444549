// The daemon away and back under an open page, and a user who may not stop jobs.
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

test("a user who may not stop jobs is told so in plain words, and the dialog keeps what was typed", { timeout: 120000 }, async (t) => {
  const w = new World("denied");
  t.after(() => w.close());
  // cockpit-ws and its bridge as nobody: the daemon lets them read, not stop.
  const page = await w.start({ uid: 65534 });
  await w.ctl("submit", "--name", "guarded", "--", "sleep", "1000");
  await waitRow(page, "guarded", { state: "running" });
  await page.click('tr[data-job-name="guarded"] button[aria-label="Actions"]');
  await page.click('tr[data-job-name="guarded"] [data-key="stop"]');
  await page.waitForSelector("#stop-dialog");
  await page.type("#stop-notes", "tried by nobody");
  await page.click("#stop-confirm");
  const words = "You are not allowed to stop jobs. Ask an administrator to add you to group 'repvisor'.";
  await page.waitForFunction((t) => document.querySelector("#toasts").textContent.includes(t), {}, words);
  await page.waitForFunction((t) => document.querySelector("#stop-error")?.textContent.includes(t), {}, words);
  assert.equal(await page.$eval("#stop-notes", (e) => e.value), "tried by nobody");
  assert.equal(await page.$eval("#stop-confirm", (e) => e.textContent), "Stop");
  await w.screenshot("access-denied");
  assert.equal(await w.prop("guarded", "State"), "running");
  // The denial is in the audit trail, made by the page's bridge as nobody.
  const denied = JSON.parse(await w.ctl("--json", "events")).filter((e) => e.type === "access-denied");
  assert.equal(denied.length, 1, JSON.stringify(denied));
  assert.match(denied[0].message, /^uid 65534 may not stop jobs/);
  assert.equal(denied[0].details.command, "cockpit-bridge");
  assert.deepEqual(w.pageErrors, []);
});
