// Delete several selected jobs with one confirmation: it lists each with what happens to it, the
// running one is left alone and said so, Keep replicated data off removes the volume, and the
// result is checked on disk and in the daemon.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { World, waitRow } from "./harness.mjs";

test("delete three selected jobs at once: two deleted, the running one left alone and said why", { timeout: 120000 }, async (t) => {
  const w = new World("bulk-delete");
  t.after(() => w.close());
  const page = await w.start();
  const volume = path.join(w.volumes, "vol-a.img");
  const spec = path.join(w.dir, "vol-a.toml");
  fs.writeFileSync(
    spec,
    `name = "vol-a"\nargv = ["sh", "-c", "echo replicated > \\"$1\\"", "job", "{volume.target}"]\n` +
      `[[resources]]\nkind = "file"\nname = "target"\npath = "${volume}"\nsize = "1M"\n`,
  );
  await w.ctl("submit", "-F", spec);
  await w.ctl("submit", "--name", "stopped-b", "--", "sleep", "1000");
  await w.ctl("submit", "--name", "busy-c", "--", "sleep", "1000");
  await waitRow(page, "vol-a", { state: "completed" });
  await waitRow(page, "stopped-b", { state: "running" });
  await w.ctl("stop", "stopped-b");
  await waitRow(page, "stopped-b", { state: "cancelled" });
  await waitRow(page, "busy-c", { state: "running" });
  // Loaded whole (ResourceDetails with it): the dialog can say what goes.
  await page.waitForFunction(() => document.querySelectorAll("tr[data-job-name]").length === 3);

  assert.ok(await page.$eval("#bulk-delete", (e) => e.disabled));
  // Only the running job selected: nothing it could delete, so the button stays off.
  await page.click('tr[data-job-name="busy-c"] td.pf-c-table__check input');
  await page.waitForFunction(() => document.querySelector("#bulk-stop").textContent === "Stop 1 selected…");
  assert.ok(await page.$eval("#bulk-delete", (e) => e.disabled));
  await page.click('tr[data-job-name="vol-a"] td.pf-c-table__check input');
  await page.click('tr[data-job-name="stopped-b"] td.pf-c-table__check input');
  await page.waitForFunction(() => document.querySelector("#bulk-delete").textContent === "Delete 3 selected…");
  await page.click("#bulk-delete");
  await page.waitForSelector("#bulk-delete-dialog");
  assert.match(await page.$eval("#bulk-delete-dialog", (e) => e.textContent), /Delete 2 jobs\?/);
  const line = (name) => page.$eval(`#bulk-delete-jobs [data-job-name="${name}"]`, (e) => e.textContent);
  assert.equal(await line("busy-c"), "busy-c — not deleted: still running: stop it first, or use “Stop and delete” on it");
  assert.equal(await line("vol-a"), "vol-a — to delete: record, log (kept), 1 volume, 1.00 MiB (kept)");
  assert.equal(await line("stopped-b"), "stopped-b — to delete: record, log (kept)");
  // Keep replicated data is on by default when a job made volumes; off, each line says so.
  assert.ok(await page.$eval("#bulk-delete-keep-data", (e) => e.checked));
  await page.click("#bulk-delete-keep-data");
  assert.equal(await line("vol-a"), "vol-a — to delete: record, log (deleted), 1 volume, 1.00 MiB (deleted)");
  await w.screenshot("bulk-delete-dialog");
  await page.click("#bulk-delete-confirm");

  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("2 jobs deleted"));
  await page.waitForSelector("#bulk-delete-dialog", { hidden: true });
  await waitRow(page, "vol-a", { absent: true });
  await waitRow(page, "stopped-b", { absent: true });
  await waitRow(page, "busy-c", { state: "running" });
  assert.ok(!fs.existsSync(volume), `${volume} is still there`);
  await assert.rejects(w.prop("stopped-b", "State"), /no job with id or name 'stopped-b'/);
  assert.equal(await w.prop("busy-c", "State"), "running");
  // The job left alone stays selected; the deleted ones are no longer.
  await page.waitForFunction(() => document.querySelector("#bulk-stop").textContent === "Stop 1 selected…");
  const deleted = JSON.parse(await w.ctl("--json", "events")).filter((e) => e.type === "deleted");
  assert.equal(deleted.length, 2, JSON.stringify(deleted));
  await w.screenshot("bulk-deleted");
  assert.deepEqual(w.pageErrors, []);
});
