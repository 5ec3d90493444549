// The job list: live progress, completion, filter and search.
import { test } from "node:test";
import assert from "node:assert/strict";
import { World, rowText, waitRow } from "./harness.mjs";

test("list and live progress: rows appear, progress updates in place, a completed job turns green", { timeout: 120000 }, async (t) => {
  const w = new World("list");
  t.after(() => w.close());
  const page = await w.start();
  await page.waitForSelector("#no-jobs");
  await w.screenshot("empty");

  const { fifo } = await w.submitControlled("disk0-copy");
  await w.ctl("submit", "--name", "sleeper", "--", "sleep", "1000");
  await waitRow(page, "disk0-copy", { state: "running", text: "Running" });
  await waitRow(page, "sleeper", { state: "running" });
  const row = await page.$('tr[data-job-name="disk0-copy"]');

  w.tell(fifo, "PHASE=copy PROGRESS=40 BYTES_DONE=429496730 BYTES_TOTAL=1073741824");
  await waitRow(page, "disk0-copy", { progress: 40, text: "40% · 410 MiB of 1.00 GiB" });
  assert.equal(await page.$eval('tr[data-job-name="disk0-copy"] .repvisor-phase', (e) => e.textContent), "copy");
  w.tell(fifo, "PROGRESS=75 BYTES_DONE=805306368");
  await waitRow(page, "disk0-copy", { progress: 75, text: "75% · 768 MiB of 1.00 GiB" });
  // Updated in place: the very same row element, not a re-created one.
  assert.ok(await page.evaluate((r) => r.isConnected && r === document.querySelector('tr[data-job-name="disk0-copy"]'), row));
  assert.equal(await page.$eval("#job-count", (e) => e.textContent), "2 jobs");
  // Throughput, from BytesDone's changes: shown once they span over a second and a half, as the
  // row's bytes a second. Each report waits for the row to show the one before (no sleeps).
  let done = 805306368;
  for (let i = 1; ; i++) {
    done += 1 << 20;
    w.tell(fifo, `BYTES_DONE=${done}`);
    await page.waitForFunction((n) => document.querySelector('tr[data-job-name="disk0-copy"]').textContent.includes(n), { polling: "mutation" }, `${Math.round(done / 1048576)} MiB of`);
    const rate = await page.$eval('tr[data-job-name="disk0-copy"] [data-progress]', (e) => e.dataset.rate);
    if (rate !== "") {
      assert.ok(Number(rate) > 0, rate);
      break;
    }
    assert.ok(i < 10000, "no throughput shown");
  }
  const label = await rowText(page, "disk0-copy");
  assert.match(label, /MiB of 1\.00 GiB · [0-9.]+ (B|KiB|MiB|GiB)\/s/);
  assert.match(await page.$eval('tr[data-job-name="disk0-copy"] .repvisor-created', (e) => e.textContent), /just now|s ago/);
  // The running badge is blue.
  assert.ok(await page.$('tr[data-job-name="disk0-copy"] .pf-c-label.pf-m-blue'));
  await w.screenshot("running");

  w.tell(fifo, "PROGRESS=100 BYTES_DONE=1073741824");
  w.tell(fifo, "exit 0");
  await waitRow(page, "disk0-copy", { state: "completed", text: "Completed" });
  await waitRow(page, "disk0-copy", { progress: 100, text: "100% · 1.00 GiB of 1.00 GiB" });
  assert.ok(await page.$('tr[data-job-name="disk0-copy"] .pf-c-label.pf-m-green'));
  assert.ok(await page.evaluate((r) => r.isConnected, row));
  // The exact times on hover.
  await page.hover('tr[data-job-name="disk0-copy"] .repvisor-created');
  await page.waitForSelector(".repvisor-times");
  const times = await page.$eval(".repvisor-times", (e) => e.textContent);
  assert.match(times, /^Created \d{4}-\d\d-\d\d \d\d:\d\d:\d\dStarted \d{4}-.*Finished \d{4}-/);
  await w.screenshot("completed");
  assert.deepEqual(w.pageErrors, []);
});

test("filter by state and search by name or id, live", { timeout: 120000 }, async (t) => {
  const w = new World("filter");
  t.after(() => w.close());
  const page = await w.start();
  await page.waitForSelector("#no-jobs");
  await w.ctl("submit", "--name", "alpha", "--", "sleep", "1000");
  await w.ctl("submit", "--name", "beta", "--", "true");
  const { fifo } = await w.submitControlled("gamma");
  await waitRow(page, "alpha", { state: "running" });
  await waitRow(page, "beta", { state: "completed" });
  await waitRow(page, "gamma", { state: "running" });

  await page.type("#job-search input", "alp");
  await page.waitForFunction(() => document.querySelector("#job-count").textContent === "1 of 3 jobs");
  await waitRow(page, "beta", { absent: true });
  await waitRow(page, "alpha", { state: "running" });
  await w.screenshot("search-name");

  // By id prefix.
  const betaId = await w.prop("beta", "Id");
  await page.click('#job-search button[aria-label="Reset"]');
  await page.waitForFunction(() => document.querySelector("#job-count").textContent === "3 jobs");
  await page.type("#job-search input", betaId.slice(0, 6));
  await waitRow(page, "beta", { state: "completed" });
  await waitRow(page, "alpha", { absent: true });
  await page.click('#job-search button[aria-label="Reset"]');

  // Filter: completed only; gamma joins it live when it completes.
  await page.click("#state-filter");
  await page.click("#state-filter-completed");
  await page.waitForFunction(() => document.querySelector("#job-count").textContent === "1 of 3 jobs");
  await waitRow(page, "alpha", { absent: true });
  await waitRow(page, "gamma", { absent: true });
  w.tell(fifo, "exit 0");
  await waitRow(page, "gamma", { state: "completed" });
  await page.waitForFunction(() => document.querySelector("#job-count").textContent === "2 of 3 jobs");
  await w.screenshot("filter-completed");
  // Nothing matches: the page says so and offers to clear the filters.
  await page.type("#job-search input", "nothing-like-this");
  await page.waitForSelector("#no-match");
  await page.click("#no-match button");
  await page.waitForFunction(() => document.querySelector("#job-count").textContent === "3 jobs");
  assert.deepEqual(w.pageErrors, []);
});

test("pages of rows: past 20 jobs, pages of the chosen size; search and filter over every job", { timeout: 120000 }, async (t) => {
  const w = new World("pages");
  t.after(() => w.close());
  const page = await w.start();
  await page.waitForSelector("#no-jobs");
  for (let i = 0; i < 25; i += 5)
    await Promise.all([0, 1, 2, 3, 4].map((k) => w.ctl("submit", "--name", `batch-${String(i + k).padStart(2, "0")}`, "--", "true")));
  await page.waitForFunction(() => document.querySelector("#job-count")?.textContent === "25 jobs", { polling: "mutation" });
  // 50 a page by default: all 25 on one, with the pages' controls since there are more than 20.
  await page.waitForFunction(() => document.querySelectorAll("#jobs tbody tr").length === 25, { polling: "mutation" });
  assert.ok(await page.$("#jobs-pages-bottom"));
  // 20 a page: the newest 20 first, then the other 5.
  await page.click('#jobs-pages-bottom button[aria-label="Items per page"]');
  await page.waitForSelector('[data-action="per-page-20"]');
  await page.click('[data-action="per-page-20"]');
  await page.waitForFunction(() => document.querySelectorAll("#jobs tbody tr").length === 20, { polling: "mutation" });
  const first = await page.$$eval("#jobs tbody tr", (l) => l.map((r) => r.dataset.jobName));
  await page.click('#jobs-pages-bottom [data-action="next"]');
  await page.waitForFunction(() => document.querySelectorAll("#jobs tbody tr").length === 5, { polling: "mutation" });
  const second = await page.$$eval("#jobs tbody tr", (l) => l.map((r) => r.dataset.jobName));
  assert.deepEqual([...first, ...second].sort(), Array.from({ length: 25 }, (_v, i) => `batch-${String(i).padStart(2, "0")}`));
  await w.screenshot("second-page");
  // A search covers every job, whatever page was shown; a result that fits one page has no pages.
  await page.type("#job-search input", "batch-0");
  await page.waitForFunction(() => document.querySelector("#job-count").textContent === "10 of 25 jobs", { polling: "mutation" });
  await page.waitForFunction(() => document.querySelectorAll("#jobs tbody tr").length === 10 && !document.querySelector("#jobs-pages-bottom"), { polling: "mutation" });
  assert.deepEqual(w.pageErrors, []);
});
