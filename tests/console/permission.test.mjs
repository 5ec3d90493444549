// Who may act: a user who may only read sees every action disabled, with the reason, and a call
// forced past the page is refused by the daemon; a member of the admin group may stop; and a user
// whose rights went while the page was open is told so in plain words, then sees the actions off.
import { test } from "node:test";
import assert from "node:assert/strict";
import { World, tooltipOf, waitRow } from "./harness.mjs";

const NOBODY = 65534;

async function openMenu(page, name) {
  await page.click(`tr[data-job-name="${name}"] button[aria-label="Actions"]`);
  await page.waitForSelector(`tr[data-job-name="${name}"] [data-key]`);
}

test("a read-only user sees the actions disabled with the reason, and a forced call is refused", { timeout: 120000 }, async (t) => {
  const w = new World("read-only");
  t.after(() => w.close());
  // cockpit-ws and its bridge as nobody, who is in no admin group: the daemon lets them read.
  const page = await w.start({ uid: NOBODY });
  await w.ctl("submit", "--name", "guarded", "--", "sleep", "1000");
  await waitRow(page, "guarded", { state: "running" });
  // The page asks the daemon (Manager.GetAccess), which names its admin group.
  await page.waitForSelector('#jobs-card[data-may="false"]');
  const why = "You may only read jobs: only root and members of group 'repvisor' may stop jobs.";
  // Running a job from a template: disabled too, with its own reason.
  assert.equal(await page.$eval("#run-job", (e) => e.getAttribute("aria-disabled")), "true");
  assert.ok((await tooltipOf(page, "#run-job")).startsWith("You may not run jobs: only root and members of group 'repvisor' may run jobs from templates."));
  await page.click("#run-job");
  assert.ok(!(await page.$("#run-dialog")), "a disabled Run job opened its dialog");
  await page.mouse.move(0, 0); // its tooltip goes, not to be taken for the next one's
  await page.waitForFunction(() => !document.querySelector(".pf-c-tooltip"), { polling: "mutation" });

  // Shown, not hidden: disabled, with the reason on hover.
  await openMenu(page, "guarded");
  for (const key of ["stop", "stop-delete"])
    assert.equal(await page.$eval(`tr[data-job-name="guarded"] [data-key="${key}"]`, (e) => e.getAttribute("aria-disabled")), "true");
  await page.hover('tr[data-job-name="guarded"] [data-key="stop"]');
  await page.waitForSelector(".pf-c-tooltip");
  await w.screenshot("read-only-menu");
  assert.ok((await tooltipOf(page, 'tr[data-job-name="guarded"] [data-key="stop"]')).startsWith(why));
  await page.click('tr[data-job-name="guarded"] [data-key="stop"]');
  await page.keyboard.press("Escape");
  assert.ok(!(await page.$("#stop-dialog")), "a disabled item opened its dialog");
  await page.click('tr[data-job-name="guarded"] td.pf-c-table__check input');
  await page.waitForFunction(() => document.querySelector("#bulk-stop").textContent === "Stop 1 selected…");
  assert.equal(await page.$eval("#bulk-stop", (e) => e.getAttribute("aria-disabled")), "true");
  assert.ok((await tooltipOf(page, "#bulk-stop")).startsWith(why));

  // The detail page: the same.
  await page.click('tr[data-job-name="guarded"] a.repvisor-job-link');
  await page.waitForSelector('#job-detail[data-may="false"]');
  await page.waitForSelector("#action-stop");
  assert.equal(await page.$eval("#action-stop", (e) => e.getAttribute("aria-disabled")), "true");
  assert.ok((await tooltipOf(page, "#action-stop")).startsWith(why));
  await w.screenshot("read-only-detail");

  // A call made anyway (as a script on the page could): the daemon refuses it and records it.
  const path = await page.$eval("#job-title", (e) => `/org/repvisor1/job/${e.dataset.jobId}`);
  const answer = await page.evaluate(async (p) => {
    try {
      await window.cockpit.dbus("org.repvisor1", { bus: "system" }).call(p, "org.repvisor1.Job", "Stop", [{}], { type: "a{sv}" });
      return "stopped";
    } catch (e) {
      return `${e.name}: ${e.message}`;
    }
  }, path);
  assert.equal(answer, "org.freedesktop.DBus.Error.AccessDenied: uid 65534 may not stop jobs (only root and members of group 'repvisor' may stop jobs)");
  assert.equal(await w.prop("guarded", "State"), "running");
  const denied = JSON.parse(await w.ctl("--json", "events")).filter((e) => e.type === "access-denied");
  assert.equal(denied.length, 1, JSON.stringify(denied));
  assert.equal(denied[0].details.command, "cockpit-bridge");
  assert.deepEqual(w.pageErrors, []);
});

test("an admin-group member may stop; once out of the group, told so in plain words, then read-only", { timeout: 120000 }, async (t) => {
  // nobody's primary group is nogroup: with it as the admin group, nobody may stop jobs.
  const w = new World("admin-group", { bus: 'admin_group = "nogroup"' });
  t.after(() => w.close());
  const page = await w.start({ uid: NOBODY });
  await w.ctl("submit", "--name", "first", "--", "sleep", "1000");
  await w.ctl("submit", "--name", "second", "--", "sleep", "1000");
  await waitRow(page, "first", { state: "running" });
  await waitRow(page, "second", { state: "running" });
  await page.waitForSelector('#jobs-card[data-may="true"]');

  await openMenu(page, "first");
  assert.equal(await page.$eval('tr[data-job-name="first"] [data-key="stop"]', (e) => e.getAttribute("aria-disabled")), "false");
  await page.click('tr[data-job-name="first"] [data-key="stop"]');
  await page.waitForSelector("#stop-dialog");
  await page.click("#stop-confirm");
  await waitRow(page, "first", { state: "cancelled" });
  assert.equal(await w.prop("first", "RequestedByUID"), NOBODY);
  // Who stopped it, by name, on its page.
  await page.click('tr[data-job-name="first"] a.repvisor-job-link');
  await page.waitForFunction(() => document.querySelector('[data-prop="RequestedByUID"]')?.textContent === "nobody (uid 65534)", { polling: "raf" });
  await page.click("#breadcrumb-list");
  await waitRow(page, "second", { state: "running" });

  // The admin group changes under the open page: the page cannot know until the daemon says so.
  await w.reload({ bus: 'admin_group = "daemon"' });
  await openMenu(page, "second");
  await page.click('tr[data-job-name="second"] [data-key="stop"]');
  await page.waitForSelector("#stop-dialog");
  await page.type("#stop-notes", "tried after the change");
  await page.click("#stop-confirm");
  const words = "You are not allowed to stop jobs. Ask an administrator to add you to group 'daemon'.";
  await page.waitForFunction((s) => document.querySelector("#toasts").textContent.includes(s), {}, words);
  await page.waitForFunction((s) => document.querySelector("#stop-error")?.textContent.includes(s), {}, words);
  assert.equal(await page.$eval("#stop-notes", (e) => e.value), "tried after the change");
  await w.screenshot("access-denied");
  await page.click("#stop-cancel");
  await page.waitForSelector("#stop-dialog", { hidden: true });

  // From then on the actions are off, and the reason names the group the daemon named.
  await page.waitForSelector('#jobs-card[data-may="false"]');
  await openMenu(page, "second");
  assert.equal(await page.$eval('tr[data-job-name="second"] [data-key="stop"]', (e) => e.getAttribute("aria-disabled")), "true");
  assert.ok((await tooltipOf(page, 'tr[data-job-name="second"] [data-key="stop"]')).startsWith("You may only read jobs: only root and members of group 'daemon' may stop jobs."));
  assert.equal(await w.prop("second", "State"), "running");
  assert.deepEqual(w.pageErrors, []);
});
