// The job detail page (#/job/<id>): reached from the list and by its URL, every property group,
// updated live, the audit trail growing live, the stop banner with its SIGKILL countdown, actions
// from the page, banners for cancelled and failed jobs, and a deleted job saying so.
import { test } from "node:test";
import assert from "node:assert/strict";
import { World, waitRow } from "./harness.mjs";

const prop = (page, name) => page.$eval(`[data-prop="${name}"]`, (e) => e.textContent);

// Checked at each frame: a text that changes in place is no mutation puppeteer's observer sees.
async function waitProp(page, name, text) {
  await page.waitForFunction(
    (n, t) => document.querySelector(`[data-prop="${n}"]`)?.textContent.includes(t),
    { polling: "raf" },
    name,
    text,
  );
}

async function waitTrail(page, type) {
  await page.waitForSelector(`#trail tr[data-type="${type}"]`);
}

test("detail page: reached from the list and by its URL, every group, live, with its trail and the stop countdown", { timeout: 180000 }, async (t) => {
  const w = new World("detail");
  t.after(() => w.close());
  const page = await w.start();
  // Ignores SIGTERM, with a 10-minute stop timeout: a graceful stop leaves it counting down.
  const { fifo } = await w.submitControlled("disk0", ["--stop-timeout", "10min"], true);
  await waitRow(page, "disk0", { state: "running" });
  w.tell(fifo, "PHASE=copy PROGRESS=20 BYTES_DONE=209715200 BYTES_TOTAL=1048576000 CHECKPOINT=block-200");
  await waitRow(page, "disk0", { progress: 20 });
  const id = await w.prop("disk0", "Id");

  // From the list: the name is a link to the job's own URL.
  await page.click('tr[data-job-name="disk0"] a.repvisor-job-link');
  await page.waitForSelector("#job-detail #group-state");
  assert.equal(await page.evaluate(() => window.location.hash), `#/job/${id}`);
  assert.equal(await page.$eval("#job-title", (e) => e.textContent), "disk0");
  assert.match(await prop(page, "State"), /Running/);
  assert.match(await prop(page, "SubState"), /^running/);
  assert.equal(await prop(page, "Phase"), "copy");
  assert.match(await prop(page, "Argv"), /^sh -c /);
  assert.equal(await prop(page, "MainPID"), String(await w.prop("disk0", "MainPID")));
  assert.equal(await prop(page, "Runs"), "1");
  assert.equal(await prop(page, "Id"), id);
  assert.equal(await prop(page, "StopSignal"), "SIGTERM (15)");
  assert.equal(await prop(page, "StopTimeoutUSec"), "10 min");
  assert.match(await prop(page, "KillMode"), /^mixed/);
  assert.equal(await prop(page, "Checkpoint"), "block-200");
  assert.equal(await prop(page, "CleanupState"), "not yet");
  assert.match(await prop(page, "LogPath"), new RegExp(await w.prop("disk0", "LogPath")));
  assert.match(await prop(page, "CreatedUSec"), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
  await waitTrail(page, "submitted");
  await waitTrail(page, "started");
  // Progress live, on the page and in its chart (bytes over time since the page opened).
  w.tell(fifo, "PROGRESS=60 BYTES_DONE=629145600");
  await page.waitForFunction(() => document.querySelector("#progress-card [data-progress]")?.dataset.progress === "60", { polling: "mutation" });
  await page.waitForFunction(() => Number(document.querySelector("#progress-chart").dataset.samples) >= 2 && document.querySelector("#progress-chart svg"), { polling: "mutation" });
  assert.match(await page.$eval("#progress-card", (e) => e.textContent), /60% · 600 MiB of 1000 MiB/);
  await w.screenshot("detail-running");

  // Reloaded, the same page comes back: the URL is the page.
  await page.reload();
  await page.waitForSelector("#job-detail #group-state");
  assert.equal(await page.$eval("#job-title", (e) => e.textContent), "disk0");
  assert.equal(await prop(page, "Checkpoint"), "block-200");

  // A graceful stop from the page: the banner says when SIGTERM went and counts down to SIGKILL.
  await page.click("#action-stop");
  await page.waitForSelector("#stop-dialog");
  await page.select("#stop-reason", "maintenance");
  await page.type("#stop-notes", "host 3 goes down");
  await page.click("#stop-confirm");
  await page.waitForSelector("#banner-stopping");
  await page.waitForFunction(() => document.querySelector("#banner-stopping").textContent.includes("SIGKILL follows in 9 min"), { polling: "raf" });
  const banner = await page.$eval("#banner-stopping", (e) => e.textContent);
  assert.match(banner, /Stopping: SIGTERM \(15\) was sent at \d\d:\d\d:\d\d\. SIGKILL follows in 9 min \d+ s \(at \d\d:\d\d:\d\d\)/);
  // The countdown moves by itself (the page's clock; the daemon sends nothing meanwhile).
  const left = await page.$eval("#banner-stopping", (e) => Number(e.dataset.secondsLeft));
  assert.ok(left > 500 && left <= 600, String(left));
  await page.waitForFunction((old) => Number(document.querySelector("#banner-stopping").dataset.secondsLeft) < old, { polling: "mutation" }, left);
  assert.notEqual(await page.$eval("#banner-stopping", (e) => e.textContent), banner);
  await waitTrail(page, "stop-requested");
  assert.match(await page.$eval('#trail tr[data-type="stop-requested"]', (e) => e.textContent), /graceful stop by uid 0, reason maintenance, notes 'host 3 goes down'root \(uid 0\)/);
  // Newest first: the daemon's trail (oldest first), reversed.
  await page.waitForSelector('#trail tr[data-type="signal"]');
  const shown = await page.$$eval("#trail tbody tr", (rows) => rows.map((e) => e.dataset.type));
  const recorded = JSON.parse(await w.ctl("--json", "events", "disk0")).map((e) => e.type);
  assert.deepEqual(shown, recorded.reverse());
  await waitProp(page, "CancelReason", "maintenance");
  assert.equal(await prop(page, "CancelNotes"), "host 3 goes down");
  assert.equal(await prop(page, "StopMode"), "graceful");
  await waitProp(page, "RequestedByUID", "root (uid 0)");
  assert.match(await prop(page, "StopDeadlineUSec"), /^\d{4}-/);
  await w.screenshot("detail-stopping");

  // Escalation from the page: Stop now, then the cancelled banner.
  assert.equal(await page.$eval("#action-stop", (e) => e.textContent), "Stop now…");
  await page.click("#action-stop");
  await page.waitForSelector("#stop-dialog");
  assert.ok(await page.$eval("#stop-force", (e) => e.checked));
  await page.click("#stop-confirm");
  await page.waitForSelector("#banner-cancelled");
  assert.match(await page.$eval("#banner-cancelled", (e) => e.textContent), /This job was cancelled\. You can resume it or delete it to free storage\.Reason: maintenance/);
  await page.waitForSelector("#banner-stopping", { hidden: true });
  await waitProp(page, "ExitCode", "killed by SIGKILL (9)");
  await waitTrail(page, "cancelled");
  assert.equal(await page.$eval("#job-state", (e) => e.dataset.state), "cancelled");
  assert.equal(await prop(page, "MainPID"), "not running");
  // What a cancelled job allows: resume and delete, no stop.
  assert.ok(await page.$("#action-resume"));
  assert.ok(!(await page.$("#action-stop")));
  await w.screenshot("detail-cancelled");

  // Deleted from its page: back to the list, with the toast.
  await page.click("#action-delete");
  await page.waitForSelector("#delete-dialog");
  await page.click("#delete-confirm");
  await page.waitForSelector("#no-jobs");
  assert.equal(await page.evaluate(() => window.location.hash), "#/");
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("“disk0” deleted"));
  assert.ok(!(await page.evaluate(() => document.querySelector("#toasts").textContent.includes("deleted meanwhile"))));

  // Its URL afterwards: "This job was deleted", with the trail that outlives it.
  await page.goto(`${w.url}#/job/${id}`);
  await page.waitForSelector("#job-gone");
  assert.match(await page.$eval("#job-gone", (e) => e.textContent), /This job was deleted/);
  await waitTrail(page, "deleted");
  await w.screenshot("detail-deleted");
  assert.deepEqual(w.pageErrors, []);
});

test("detail page: a failed job's banner, a job deleted meanwhile, and an id nobody knows", { timeout: 120000 }, async (t) => {
  const w = new World("detail-gone");
  t.after(() => w.close());
  const page = await w.start();
  await w.ctl("submit", "--name", "broken", "--", "sh", "-c", "echo 'source unreachable' >&2; exit 3");
  await waitRow(page, "broken", { state: "failed" });
  const id = await w.prop("broken", "Id");
  await page.click('tr[data-job-name="broken"] a.repvisor-job-link');
  await page.waitForSelector("#banner-failed");
  assert.equal(await page.$eval("#banner-failed .pf-c-alert__title", (e) => e.textContent.replace(/^Danger alert:/, "")), "This job failed: exited with status 3");
  assert.equal(await prop(page, "ExitCode"), "exit status 3");
  assert.equal(await prop(page, "FailReason"), "exited with status 3");
  await waitTrail(page, "exited");
  await w.screenshot("detail-failed");

  // Deleted by someone else while its page is open: the page says so, and a toast.
  await w.ctl("delete", "broken", "--yes");
  await page.waitForSelector("#job-gone");
  assert.match(await page.$eval("#job-gone", (e) => e.textContent), /This job was deleted/);
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("“broken” was deleted meanwhile"));
  await waitTrail(page, "deleted");
  assert.match(await page.$eval('#trail tr[data-type="deleted"]', (e) => e.textContent), /root \(uid 0\)/);
  await page.click("#back-to-list");
  await page.waitForSelector("#no-jobs");

  // An id nobody knows: said so, not a blank page.
  await page.goto(`${w.url}#/job/${"0".repeat(id.length)}`);
  await page.waitForSelector("#job-gone");
  assert.match(await page.$eval("#job-gone", (e) => e.textContent), /There is no such job/);
  assert.deepEqual(w.pageErrors, []);
});
