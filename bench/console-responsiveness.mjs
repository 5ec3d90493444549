// The web console with many jobs: how long the job list takes to show, and how fast a click is
// answered while every job reports progress once a second, with 1,000 jobs against 10 jobs in the
// same run (the machines are shared: only the ratio is read as a target). Not part of CI.
//
//   node bench/console-responsiveness.mjs      # JOBS=1000 FEW=10 CLICKS=20 BUSY_SECONDS=10
//
// Everything is real, as in the console tests (tests/console/harness.mjs): a private system bus,
// repvisord, cockpit-ws and its bridge, Debian's Chromium through puppeteer-core. Each job is a
// tiny C program (compiled here) that sends BYTES_DONE/PROGRESS to the daemon's notify socket once
// a second, at a phase of its own, so the reports are spread over the second as real copies' are.
//
// Measured, for FEW and for JOBS jobs:
//  - first render: from the page's navigation to the first page of rows (50) with the count of
//    every job (the page's clock);
//  - menu and dialog: from a click's pointerdown (the event's own time stamp) to the frame after
//    the row's menu, then the Stop dialog, is in the DOM; CLICKS times each, the median and the
//    worst reported;
//  - main thread: the share of BUSY_SECONDS taken by long tasks (over 50 ms) while only the
//    progress reports come in, and the longest one.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { World } from "../tests/console/harness.mjs";

const JOBS = Number(process.env.JOBS || 1000);
const FEW = Number(process.env.FEW || 10);
const CLICKS = Number(process.env.CLICKS || 20);
const BUSY_SECONDS = Number(process.env.BUSY_SECONDS || 10);

const TICKER = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
int main(void) {
  const char* where = getenv("NOTIFY_SOCKET");
  if (!where) return 1;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, where, sizeof a.sun_path - 1);
  if (a.sun_path[0] == '@') a.sun_path[0] = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  srand((unsigned)getpid());
  long phase = rand() % 1000;  /* ms into each second */
  const unsigned long long total = 10ULL << 30;
  unsigned long long done = 0;
  for (;;) {
    struct timespec next = {.tv_sec = ts.tv_sec + 1, .tv_nsec = phase * 1000000L};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    ts = next;
    ts.tv_nsec = 0;
    done = done + (50ULL << 20) > total ? 0 : done + (50ULL << 20);
    char msg[200];
    int n = snprintf(msg, sizeof msg, "PROGRESS=%.1f\nBYTES_DONE=%llu\nBYTES_TOTAL=%llu\nPHASE=copy",
                     100.0 * (double)done / (double)total, done, total);
    sendto(fd, msg, (size_t)n, 0, (struct sockaddr*)&a, sizeof a);
  }
}
`;

function quantile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function submitAll(w, ticker, count) {
  const batch = 16;
  for (let i = 0; i < count; i += batch) {
    const jobs = [];
    for (let k = i; k < Math.min(count, i + batch); k++)
      jobs.push(w.ctl("submit", "--name", `copy-${String(k).padStart(4, "0")}`, "--", ticker));
    await Promise.all(jobs);
  }
  // Until every one runs (a benchmark's set-up, not a measure: a look every 200 ms).
  for (;;) {
    const list = JSON.parse(await w.ctl("--json", "list"));
    if (list.filter((j) => j.state === "running").length === count) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

// In the page: from a click's pointerdown to the frame after `selector` appears.
async function timeClick(page, target, selector) {
  await page.evaluate((sel) => {
    window.__clickAnswer = new Promise((resolve) => {
      let down = null;
      const onDown = (e) => {
        down = e.timeStamp;
        document.removeEventListener("pointerdown", onDown, true);
      };
      document.addEventListener("pointerdown", onDown, true);
      const seen = () => {
        if (down === null || !document.querySelector(sel)) return false;
        requestAnimationFrame(() => requestAnimationFrame((t) => resolve(t - down)));
        return true;
      };
      const mo = new MutationObserver(() => seen() && mo.disconnect());
      mo.observe(document.body, { childList: true, subtree: true });
    });
  }, selector);
  await page.click(target);
  return page.evaluate(() => window.__clickAnswer);
}

async function measure(count, ticker) {
  const w = new World(`bench-${count}`, { daemon: `max_concurrent_jobs = ${count + 10}` });
  try {
    w.startBus();
    await w.startDaemon();
    await submitAll(w, ticker, count);
    await w.startCockpit();
    const page = await w.openPage();
    // First render: a fresh load, the page's own clock from its navigation.
    await page.reload();
    // The rows of the first page, and the count of every job.
    const words = count === 1 ? "1 job" : `${count} jobs`;
    await page.waitForFunction((n, t) => document.querySelectorAll("#jobs tbody tr").length === Math.min(n, 50) &&
      document.querySelector("#job-count")?.textContent === t, { polling: "raf", timeout: 120000 }, count, words);
    const firstRender = await page.evaluate(() => performance.now());
    // Where the time went: the page's own marks around its one load call.
    const [asked, answered] = await page.evaluate(() =>
      ["repvisor-load-asked", "repvisor-load-answered"].map((n) => performance.getEntriesByName(n).pop()?.startTime ?? 0));

    // While only progress comes in: long tasks.
    await page.evaluate(() => {
      window.__long = [];
      new PerformanceObserver((l) => window.__long.push(...l.getEntries().map((e) => e.duration))).observe({ type: "longtask" });
    });
    await new Promise((r) => setTimeout(r, BUSY_SECONDS * 1000));
    const long = await page.evaluate(() => window.__long);
    const busy = long.reduce((a, b) => a + b, 0) / (BUSY_SECONDS * 10); // percent
    const longest = long.length ? Math.max(...long) : 0;

    // Clicks, while the reports go on: a row's menu, then its Stop dialog, closed with Escape.
    const menu = [];
    const dialog = [];
    const name = await page.$eval("#jobs tbody tr:nth-child(4)", (e) => e.dataset.jobName);
    const row = `tr[data-job-name="${name}"]`;
    for (let i = 0; i < CLICKS; i++) {
      menu.push(await timeClick(page, `${row} button[aria-label="Actions"]`, `${row} [data-key="stop"]`));
      dialog.push(await timeClick(page, `${row} [data-key="stop"]`, "#stop-dialog"));
      await page.keyboard.press("Escape");
      await page.waitForSelector("#stop-dialog", { hidden: true });
    }
    return {
      count,
      firstRender,
      asked,
      answered,
      busy,
      longest,
      menu: { median: quantile(menu, 0.5), worst: Math.max(...menu) },
      dialog: { median: quantile(dialog, 0.5), worst: Math.max(...dialog) },
      errors: w.pageErrors.length,
    };
  } finally {
    await w.close();
  }
}

const dir = fs.mkdtempSync("/tmp/repvisor-bench-console-");
const ticker = path.join(dir, "ticker");
fs.writeFileSync(`${ticker}.c`, TICKER);
execFileSync("cc", ["-O2", "-o", ticker, `${ticker}.c`]);
fs.chmodSync(dir, 0o755);

const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
const few = await measure(FEW, ticker);
const many = await measure(JOBS, ticker);
fs.rmSync(dir, { recursive: true, force: true });

const ms = (v) => `${v.toFixed(0)} ms`;
const ratio = (a, b) => (b > 0 ? (a / b).toFixed(2) : "—");
console.log(`console responsiveness, commit ${commit}, ${new Date().toISOString().slice(0, 10)}, every job reporting once a second`);
console.log(`| measure | ${FEW} jobs | ${JOBS} jobs | ratio |`);
console.log("|---|---|---|---|");
console.log(`| first render (navigation to the first 50 rows and the count) | ${ms(few.firstRender)} | ${ms(many.firstRender)} | ${ratio(many.firstRender, few.firstRender)} |`);
console.log(`| of which: navigation to the load asked; the load's answer (GetManagedObjects) | ${ms(few.asked)}; ${ms(few.answered - few.asked)} | ${ms(many.asked)}; ${ms(many.answered - many.asked)} | ${ratio(many.answered - many.asked, few.answered - few.asked)} |`);
console.log(`| click to menu, median (worst of ${CLICKS}) | ${ms(few.menu.median)} (${ms(few.menu.worst)}) | ${ms(many.menu.median)} (${ms(many.menu.worst)}) | ${ratio(many.menu.median, few.menu.median)} |`);
console.log(`| click to Stop dialog, median (worst of ${CLICKS}) | ${ms(few.dialog.median)} (${ms(few.dialog.worst)}) | ${ms(many.dialog.median)} (${ms(many.dialog.worst)}) | ${ratio(many.dialog.median, few.dialog.median)} |`);
console.log(`| main thread in long tasks, ${BUSY_SECONDS} s of reports (longest) | ${few.busy.toFixed(1)} % (${ms(few.longest)}) | ${many.busy.toFixed(1)} % (${ms(many.longest)}) | |`);
console.log(JSON.stringify({ commit, few, many }));
if (few.errors || many.errors) {
  console.error("the page threw errors");
  process.exit(1);
}
