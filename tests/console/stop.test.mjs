// The Stop dialog: a graceful stop with reason and notes, and a forced stop (escalation), each
// checked in the daemon's record and audit trail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { World, waitRow } from "./harness.mjs";

async function openMenuItem(page, name, key) {
  await page.click(`tr[data-job-name="${name}"] button[aria-label="Actions"]`);
  await page.click(`tr[data-job-name="${name}"] [data-key="${key}"]`);
}

async function events(w, name) {
  return JSON.parse(await w.ctl("--json", "events", name));
}

test("graceful stop with a reason and notes from the dialog", { timeout: 120000 }, async (t) => {
  const w = new World("stop");
  t.after(() => w.close());
  const page = await w.start();
  const { fifo } = await w.submitControlled("disk0");
  await waitRow(page, "disk0", { state: "running" });
  w.tell(fifo, "PHASE=copy PROGRESS=30 BYTES_DONE=300 BYTES_TOTAL=1000");
  await waitRow(page, "disk0", { progress: 30 });

  await openMenuItem(page, "disk0", "stop");
  await page.waitForSelector("#stop-dialog");
  assert.ok(await page.$eval("#stop-graceful", (e) => e.checked));
  await page.select("#stop-reason", "maintenance");
  const notes = "window closes at 6; resume tomorrow";
  await page.type("#stop-notes", notes);
  await page.waitForFunction((n) => document.querySelector("#stop-notes-count").textContent === `${n} / 500 characters`, {}, notes.length);
  await w.screenshot("stop-dialog");
  await page.click("#stop-confirm");

  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("Stopping “disk0”"));
  await page.waitForSelector("#stop-dialog", { hidden: true });
  await waitRow(page, "disk0", { state: "cancelled", text: "Cancelled" });
  assert.ok(await page.$('tr[data-job-name="disk0"] .pf-c-label.pf-m-orange'));
  await w.screenshot("cancelled");

  assert.equal(await w.prop("disk0", "CancelReason"), "maintenance");
  assert.equal(await w.prop("disk0", "CancelNotes"), notes);
  assert.equal(await w.prop("disk0", "StopMode"), "graceful");
  assert.equal(await w.prop("disk0", "RequestedByUID"), 0);
  const trail = await events(w, "disk0");
  const req = trail.filter((e) => e.type === "stop-requested");
  assert.equal(req.length, 1, JSON.stringify(trail));
  // The request whole: mode, who, reason and the notes, quoted.
  assert.equal(req[0].message, `graceful stop by uid 0, reason maintenance, notes '${notes}'`);
  // Made by the page's bridge, as the logged-in user.
  assert.equal(req[0].details.command, "cockpit-bridge");
  assert.equal(req[0].details.uid, 0);
  assert.ok(trail.some((e) => e.type === "cancelled"));

  // The success toast goes away by itself (after 5 s), driven by the page.
  await page.waitForFunction(() => !document.querySelector("#toasts").textContent.includes("Stopping “disk0”"), { timeout: 15000 });
  assert.deepEqual(w.pageErrors, []);
});

test("force: a job that ignores its stop signal is stopped now, with a reason of one's own", { timeout: 120000 }, async (t) => {
  const w = new World("force");
  t.after(() => w.close());
  const page = await w.start();
  // Ignores SIGTERM: a graceful stop leaves it stopping until its 10-minute timeout.
  const { fifo } = await w.submitControlled("stubborn", ["--stop-timeout", "10min"], true);
  await waitRow(page, "stubborn", { state: "running" });
  w.tell(fifo, "PROGRESS=10");
  await waitRow(page, "stubborn", { progress: 10 });

  await openMenuItem(page, "stubborn", "stop");
  await page.waitForSelector("#stop-dialog");
  await page.click("#stop-confirm");
  await waitRow(page, "stubborn", { state: "stopping", text: "Stopping…" });
  await page.waitForSelector("#stop-dialog", { hidden: true });
  await w.screenshot("stopping");

  // Escalation: the menu now offers "Stop now…", with Immediately chosen.
  await openMenuItem(page, "stubborn", "stop");
  await page.waitForSelector("#stop-dialog");
  assert.ok(await page.$eval("#stop-force", (e) => e.checked));
  await page.select("#stop-reason", "other");
  await page.type("#stop-reason-other", "disk swap on host 3");
  await w.screenshot("stop-now-dialog");
  await page.click("#stop-confirm");
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("“stubborn” stopped"));
  await waitRow(page, "stubborn", { state: "cancelled" });
  assert.equal(await w.prop("stubborn", "StopMode"), "force");
  const trail = await events(w, "stubborn");
  const requests = trail.filter((e) => e.type === "stop-requested").map((e) => e.message);
  assert.deepEqual(requests, ["graceful stop by uid 0, reason user_request", "force stop by uid 0, reason disk swap on host 3"]);
  // The record keeps the first request's reason; the escalation is in the trail.
  assert.equal(await w.prop("stubborn", "CancelReason"), "user_request");
  assert.deepEqual(w.pageErrors, []);
});

test("a job deleted meanwhile: the open dialog says so and keeps what was typed", { timeout: 120000 }, async (t) => {
  const w = new World("deleted-meanwhile");
  t.after(() => w.close());
  const page = await w.start();
  const { fifo } = await w.submitControlled("racer");
  await waitRow(page, "racer", { state: "running" });
  await openMenuItem(page, "racer", "stop");
  await page.waitForSelector("#stop-dialog");
  await page.type("#stop-notes", "typed before the job went away");
  // Deleted meanwhile by someone else: the dialog says so and keeps the text.
  w.tell(fifo, "exit 0");
  await waitRow(page, "racer", { state: "completed" });
  await w.ctl("delete", "racer", "--yes");
  await page.waitForFunction(() => document.querySelector("#stop-dialog").textContent.includes("This job was deleted meanwhile."));
  assert.ok(await page.$eval("#stop-confirm", (e) => e.disabled));
  assert.equal(await page.$eval("#stop-notes", (e) => e.value), "typed before the job went away");
  await page.click("#stop-cancel");
  await page.waitForSelector("#stop-dialog", { hidden: true });
  await page.waitForSelector("#no-jobs");
  assert.deepEqual(w.pageErrors, []);
});

test("a graceful stop with a timeout shorter than the job's own: SIGKILL when it expires", { timeout: 120000 }, async (t) => {
  const w = new World("timeout");
  t.after(() => w.close());
  const page = await w.start();
  const { fifo } = await w.submitControlled("slowpoke", ["--stop-timeout", "10min"], true);
  await waitRow(page, "slowpoke", { state: "running" });
  w.tell(fifo, "PROGRESS=5");
  await waitRow(page, "slowpoke", { progress: 5 }); // the job's properties are loaded
  await openMenuItem(page, "slowpoke", "stop");
  await page.waitForSelector("#stop-dialog");
  assert.equal(await page.$eval("#stop-timeout", (e) => e.value), "600");
  await page.click("#stop-timeout", { clickCount: 3 });
  await page.type("#stop-timeout", "2");
  await w.screenshot("timeout-dialog");
  await page.click("#stop-confirm");
  await waitRow(page, "slowpoke", { state: "stopping" });
  await waitRow(page, "slowpoke", { state: "cancelled" });
  const trail = await events(w, "slowpoke");
  const asked = trail.find((e) => e.type === "stop-requested");
  const killed = trail.find((e) => e.type === "signal" && e.message.startsWith("SIGKILL"));
  assert.ok(asked && killed, JSON.stringify(trail));
  const after = (killed.ts_usec - asked.ts_usec) / 1e6;
  assert.ok(after >= 2 && after < 60, `SIGKILL ${after} s after the request`);
  assert.equal(await w.prop("slowpoke", "StopMode"), "graceful");
  assert.deepEqual(w.pageErrors, []);
});

test("resume a cancelled job from its checkpoint", { timeout: 120000 }, async (t) => {
  const w = new World("resume");
  t.after(() => w.close());
  const page = await w.start();
  const { fifo } = await w.submitControlled("disk9");
  await waitRow(page, "disk9", { state: "running" });
  w.tell(fifo, "PROGRESS=42 CHECKPOINT=block-4200");
  await waitRow(page, "disk9", { progress: 42 });
  await w.ctl("stop", "disk9", "--reason", "maintenance");
  await waitRow(page, "disk9", { state: "cancelled" });

  await openMenuItem(page, "disk9", "resume");
  await page.waitForSelector("#resume-dialog");
  assert.equal(await page.$eval("#resume-checkpoint", (e) => e.textContent), "It continues from its last checkpoint: block-4200");
  await w.screenshot("resume-dialog");
  await page.click("#resume-confirm");
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("“disk9” resumed"));
  await waitRow(page, "disk9", { state: "running", text: "run 2" });
  assert.equal(await w.prop("disk9", "Runs"), 2);
  // The same job, its FIFO read again: it reports and completes.
  w.tell(fifo, "PROGRESS=100");
  w.tell(fifo, "exit 0");
  await waitRow(page, "disk9", { state: "completed" });
  assert.deepEqual(w.pageErrors, []);
});

test("stop several selected jobs with one confirmation", { timeout: 120000 }, async (t) => {
  const w = new World("bulk");
  t.after(() => w.close());
  const page = await w.start();
  for (const name of ["bulk-a", "bulk-b", "bulk-c"]) await w.ctl("submit", "--name", name, "--", "sleep", "1000");
  for (const name of ["bulk-a", "bulk-b", "bulk-c"]) await waitRow(page, name, { state: "running" });
  assert.ok(await page.$eval("#bulk-stop", (e) => e.disabled));
  await page.click('tr[data-job-name="bulk-a"] td.pf-c-table__check input');
  await page.click('tr[data-job-name="bulk-c"] td.pf-c-table__check input');
  await page.waitForFunction(() => document.querySelector("#bulk-stop").textContent === "Stop 2 selected…");
  await page.click("#bulk-stop");
  await page.waitForSelector("#stop-dialog");
  const listed = await page.$$eval("#stop-targets li", (items) => items.map((e) => e.textContent).sort());
  assert.deepEqual(listed, ["bulk-a", "bulk-c"]);
  await page.select("#stop-reason", "migration_window");
  await page.type("#stop-notes", "both at once");
  await w.screenshot("bulk-dialog");
  await page.click("#stop-confirm");
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("Stopping 2 jobs"));
  await waitRow(page, "bulk-a", { state: "cancelled" });
  await waitRow(page, "bulk-c", { state: "cancelled" });
  await w.screenshot("bulk-stopped");
  assert.equal(await w.prop("bulk-b", "State"), "running");
  for (const name of ["bulk-a", "bulk-c"]) {
    assert.equal(await w.prop(name, "CancelReason"), "migration_window");
    assert.equal(await w.prop(name, "CancelNotes"), "both at once");
  }
  // The selection is cleared once done.
  await page.waitForFunction(() => document.querySelector("#bulk-stop").disabled);
  assert.deepEqual(w.pageErrors, []);
});
