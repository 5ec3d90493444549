// A job's log on its page: the last part of a cut log with the cut shown where it is, each line
// dated, earlier lines on request, new lines as the job writes them (no polling: the job's
// LogBytesWritten), a line without its newline held until the job ends, and the same after a reload.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { World, waitRow } from "./harness.mjs";

// The log as the page shows it: lines [{ text, time }] and cut markers [{ cut }], in order.
function shownLog(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#job-log > div")].map((d) =>
      d.classList.contains("repvisor-log-gap")
        ? { cut: Number(d.dataset.cut) }
        : { text: d.querySelector(".repvisor-log-text").textContent, time: d.querySelector(".repvisor-log-time").textContent },
    ),
  );
}

async function waitLine(page, text, where = "any") {
  await page.waitForFunction(
    (t, w) => {
      const lines = [...document.querySelectorAll("#job-log .repvisor-log-text")].map((e) => e.textContent);
      if (w === "first") return lines[0] === t;
      if (w === "last") return lines[lines.length - 1] === t;
      return lines.includes(t);
    },
    { polling: "mutation" },
    text,
    where,
  );
}

test("log: the tail of a cut log, dated, with the cut shown; earlier lines; followed live; reloaded", { timeout: 120000 }, async (t) => {
  const w = new World("log", { extra: '[logs]\nmax_size = "64KiB"\nkeep = "both"' });
  t.after(() => w.close());
  const page = await w.start();
  const fifo = path.join(w.dir, "log.fifo");
  execFileSync("mkfifo", [fifo]);
  // 20,000 lines of 12 bytes (240,000 bytes: cut to 64 KiB, its first and last part kept), then
  // a line for each line of the FIFO, "partial X" without its newline; "exit" ends it.
  const script =
    'exec 3<>"$1"; seq -f "line %06g" 1 20000; while read -r l <&3; do case "$l" in exit) exit 0;; ' +
    '"partial "*) printf "%s" "${l#partial }";; *) echo "$l";; esac; done';
  await w.ctl("submit", "--name", "chatty", "--", "sh", "-c", script, "job", fifo);
  await waitRow(page, "chatty", { state: "running" });
  await page.click('tr[data-job-name="chatty"] a.repvisor-job-link');
  await page.waitForSelector("#log-card");
  await page.waitForSelector('#log-card[data-written="240000"]');
  await waitLine(page, "line 020000", "last");
  await page.$eval("#log-card", (e) => e.scrollIntoView());
  await w.screenshot("log-tail");
  // The last 64 KiB: all of it after the cut, consecutive lines to the end, each dated by the
  // index of when it was written.
  let log = await shownLog(page);
  assert.ok(log.every((l) => !("cut" in l)));
  for (let i = 1; i < log.length; i++) assert.equal(Number(log[i].text.slice(5)), Number(log[i - 1].text.slice(5)) + 1);
  assert.ok(log.length > 2000 && log.length < 3000, `${log.length} lines`);
  assert.match(log[log.length - 1].time, /^\d\d:\d\d:\d\d$/);
  const cut = Number(await w.prop("chatty", "LogBytesCut"));
  assert.ok(cut > 100000, `cut ${cut}`);
  assert.ok(await page.$eval("#log-cut-note", (e) => e.textContent.includes("were cut to keep it within 64.0 KiB (kept: both)")));

  // Earlier lines: the log's head, from its first byte, and where bytes were cut the marker says
  // how many, between the lines before and after.
  await page.click("#log-earlier");
  await waitLine(page, "line 000001", "first");
  log = await shownLog(page);
  const gaps = log.filter((l) => "cut" in l);
  assert.equal(gaps.length, 1, JSON.stringify(gaps));
  assert.equal(gaps[0].cut, cut);
  const at = log.findIndex((l) => "cut" in l);
  const before = log.slice(0, at);
  const after = log.slice(at + 1);
  for (let i = 0; i < before.length; i++) assert.equal(before[i].text, `line ${String(i + 1).padStart(6, "0")}`);
  // The lines the cut took: what it says, within the two lines it cut short.
  const lost = (Number(after[0].text.slice(5)) - Number(before[before.length - 1].text.slice(5)) - 1) * 12;
  assert.ok(Math.abs(lost - cut) <= 24, `lines lost ${lost} bytes, cut ${cut}`);
  await page.$eval(".repvisor-log-gap", (e) => e.scrollIntoView());
  await w.screenshot("log-cut");

  // Followed: a new line shows when the job writes it.
  w.tell(fifo, "hello from the job");
  await waitLine(page, "hello from the job", "last");
  assert.match((await shownLog(page)).pop().time, /^\d\d:\d\d:\d\d$/);
  // A line without its newline: written (the daemon counted it), not shown while the job may end it.
  w.tell(fifo, "partial no newline yet");
  await page.waitForSelector('#log-card[data-written="240033"]');
  assert.equal((await shownLog(page)).pop().text, "hello from the job");
  await w.screenshot("log-followed");
  // The job ends: its last line, newline or not.
  w.tell(fifo, "exit");
  await waitLine(page, "no newline yet", "last");
  await page.waitForSelector('#log-card[data-following="false"]');

  // Reloaded: the same end again.
  await page.reload();
  await waitLine(page, "no newline yet", "last");
  await waitLine(page, "hello from the job");
  assert.deepEqual(w.pageErrors, []);
});

test("log: a job that wrote nothing, and one not started yet", { timeout: 120000 }, async (t) => {
  const w = new World("log-empty", { daemon: "max_concurrent_jobs = 1" });
  t.after(() => w.close());
  const page = await w.start();
  await w.ctl("submit", "--name", "quiet", "--", "sleep", "1000");
  await w.ctl("submit", "--name", "waiting", "--", "true");
  await waitRow(page, "waiting", { state: "pending" });
  await page.click('tr[data-job-name="quiet"] a.repvisor-job-link');
  await page.waitForFunction(() => document.querySelector("#log-empty")?.textContent === "Nothing written yet.", { polling: "mutation" });
  await page.goto(`${w.url}#/job/waiting`);
  await page.waitForFunction(() => document.querySelector("#log-empty")?.textContent === "The job has not started yet.", { polling: "mutation" });
  assert.deepEqual(w.pageErrors, []);
});
