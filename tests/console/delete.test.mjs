// The Delete dialog: what is deleted, listed; "Keep replicated data" keeps the volumes the job
// created (checked on disk), and without it they are removed.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { World, waitRow } from "./harness.mjs";

// A job that writes into a volume file the daemon creates for it (1 MiB, sparse), then completes.
async function submitWithVolume(w, name) {
  const volume = path.join(w.volumes, `${name}.img`);
  const spec = path.join(w.dir, `${name}.toml`);
  fs.writeFileSync(
    spec,
    `name = "${name}"\nargv = ["sh", "-c", "echo replicated > \\"$1\\"", "job", "{volume.target}"]\n` +
      `[[resources]]\nkind = "file"\nname = "target"\npath = "${volume}"\nsize = "1M"\n`,
  );
  await w.ctl("submit", "-F", spec);
  return volume;
}

async function openDelete(page, name) {
  await page.click(`tr[data-job-name="${name}"] button[aria-label="Actions"]`);
  await page.click(`tr[data-job-name="${name}"] [data-key="delete"]`);
  await page.waitForSelector("#delete-dialog");
}

test("delete keeping the replicated data, then delete without it", { timeout: 120000 }, async (t) => {
  const w = new World("delete");
  t.after(() => w.close());
  const page = await w.start();
  const kept = await submitWithVolume(w, "keep-me");
  const dropped = await submitWithVolume(w, "drop-me");
  await waitRow(page, "keep-me", { state: "completed" });
  await waitRow(page, "drop-me", { state: "completed" });
  assert.equal(fs.readFileSync(kept, "utf8"), "replicated\n");
  const log = await w.prop("keep-me", "LogPath");

  // Keep (the default when the job made volumes): the dialog lists the record, log and volume.
  await openDelete(page, "keep-me");
  assert.ok(await page.$eval("#delete-keep-data", (e) => e.checked));
  const what = await page.$eval("#delete-what", (e) => e.textContent);
  assert.match(what, /The job's record/);
  assert.ok(what.includes(`Its log ${log} — kept`), what);
  assert.ok(what.includes(`Volume “target”: ${kept} (1.00 MiB) — kept`), what);
  await w.screenshot("delete-keep-dialog");
  await page.click("#delete-confirm");
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("“keep-me” deleted"));
  await waitRow(page, "keep-me", { absent: true });
  await page.waitForSelector("#delete-dialog", { hidden: true });
  assert.equal(fs.readFileSync(kept, "utf8"), "replicated\n");
  await assert.rejects(w.prop("keep-me", "State"), /no job with id or name 'keep-me'/);

  // Without keeping: the volume the job created goes.
  await openDelete(page, "drop-me");
  await page.click("#delete-keep-data");
  assert.ok(!(await page.$eval("#delete-keep-data", (e) => e.checked)));
  const what2 = await page.$eval("#delete-what", (e) => e.textContent);
  assert.ok(what2.includes(`${dropped} (1.00 MiB) — deleted`), what2);
  await w.screenshot("delete-drop-dialog");
  await page.click("#delete-confirm");
  await waitRow(page, "drop-me", { absent: true });
  assert.ok(!fs.existsSync(dropped), `${dropped} is still there`);
  await page.waitForSelector("#no-jobs");

  const deletes = JSON.parse(await w.ctl("--json", "events")).filter((e) => e.type === "deleted");
  assert.equal(deletes.length, 2, JSON.stringify(deletes));
  assert.deepEqual(w.pageErrors, []);
});

test("stop and delete a running job in one dialog, keeping its data", { timeout: 120000 }, async (t) => {
  const w = new World("stop-delete");
  t.after(() => w.close());
  const page = await w.start();
  const volume = path.join(w.volumes, "busy.img");
  const spec = path.join(w.dir, "busy.toml");
  fs.writeFileSync(
    spec,
    `name = "busy"\nargv = ["sh", "-c", "echo replicated > \\"$1\\"; exec sleep 1000", "job", "{volume.target}"]\n` +
      `[[resources]]\nkind = "file"\nname = "target"\npath = "${volume}"\nsize = "1M"\n`,
  );
  await w.ctl("submit", "-F", spec);
  await waitRow(page, "busy", { state: "running" });
  assert.equal(await w.prop("busy", "State"), "running");
  await page.click('tr[data-job-name="busy"] button[aria-label="Actions"]');
  await page.click('tr[data-job-name="busy"] [data-key="stop-delete"]');
  await page.waitForSelector("#delete-dialog");
  assert.match(await page.$eval("#delete-active", (e) => e.textContent), /still running/);
  assert.ok(await page.$eval("#delete-keep-data", (e) => e.checked));
  assert.equal(await page.$eval("#delete-confirm", (e) => e.textContent), "Stop and delete");
  await w.screenshot("stop-delete-dialog");
  await page.click("#delete-confirm");
  await waitRow(page, "busy", { absent: true });
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("“busy” deleted"));
  assert.ok(fs.existsSync(volume), "the kept volume is gone");
  const trail = JSON.parse(await w.ctl("--json", "events")).map((e) => e.type);
  assert.ok(trail.includes("delete-requested") && trail.includes("cancelled") && trail.includes("deleted"), trail.join(" "));
  assert.deepEqual(w.pageErrors, []);
});
