// "Run job…": a job from one of the daemon's templates, its form built from Manager.ListTemplates:
// each parameter checked against its pattern before anything is sent, the daemon's refusal put on
// the field it is about in plain words with what was typed kept, a secret never shown; and a
// daemon reconfigured without templates says so.
import { test } from "node:test";
import assert from "node:assert/strict";
import { World, waitRow } from "./harness.mjs";

const TEMPLATES = `
[templates.copy]
description = "Copy a disk to the backup store"
argv = ["sh", "-c", "echo copying $0; exec sleep 1000", "{disk}", "{key}"]
[templates.copy.params.disk]
pattern = "vd[b-z]"
default = "vdb"
description = "the disk to copy"
[templates.copy.params.key]
secret = true
pattern = "[A-Za-z0-9]{8,}"
description = "the backup store's access key"
[templates.idle]
description = "Waits"
argv = ["sleep", "1000"]
`;

// The error shown under a field of the Run dialog ("" when none).
function fieldError(page, id) {
  return page.evaluate((i) => {
    const group = document.querySelector(`#${i}`).closest(".pf-c-form__group");
    const err = group.querySelector(".pf-m-error");
    return err ? err.textContent : "";
  }, id);
}

async function setField(page, id, value) {
  await page.click(`#${id}`, { clickCount: 3 });
  await page.keyboard.press("Backspace");
  if (value) await page.type(`#${id}`, value);
}

test("run a job from a template: the form, its checks, the daemon's refusal on its field, a secret kept secret", { timeout: 120000 }, async (t) => {
  const w = new World("run", { extra: TEMPLATES });
  t.after(() => w.close());
  const page = await w.start();
  await page.waitForSelector("#no-jobs #run-job");
  await page.click("#run-job");
  await page.waitForSelector("#run-dialog #run-template");
  // The form: the template's description and command, a field per parameter in the order the
  // command uses them, defaults filled in, the secret one a password field.
  assert.equal(await page.$eval("#run-template", (e) => e.value), "copy");
  assert.ok(await page.$eval("#run-dialog", (e) => e.textContent.includes("Copy a disk to the backup store")));
  assert.ok(await page.$eval("#run-command", (e) => e.textContent.includes("Runs: sh -c echo copying $0; exec sleep 1000 {disk} {key}")));
  assert.deepEqual(await page.$$eval("#run-form input[id^=run-param-]", (l) => l.map((e) => [e.id, e.type, e.value])), [
    ["run-param-disk", "text", "vdb"],
    ["run-param-key", "password", ""],
  ]);
  assert.ok(await page.$eval("#run-form", (e) => e.textContent.includes("the disk to copy · Default: vdb · Pattern: vd[b-z]")));

  // Checked before sending: a required field left empty, a value not in the pattern.
  await page.click("#run-confirm");
  await page.waitForFunction(() => document.querySelector("#run-param-key").closest(".pf-c-form__group").textContent.includes("Required."));
  await setField(page, "run-param-key", "short");
  await setField(page, "run-param-disk", "sda");
  await page.click("#run-name");
  assert.equal(await fieldError(page, "run-param-disk"), "Not in the form this template accepts (pattern vd[b-z]).");
  assert.equal(await fieldError(page, "run-param-key"), "Not in the form this template accepts (pattern [A-Za-z0-9]{8,}).");
  await page.type("#run-name", "bad name");
  await page.click("#run-param-disk");
  assert.equal(await fieldError(page, "run-name"), "Spaces are not allowed: use letters, digits, “_”, “-”, “.” and “@”.");
  await w.screenshot("run-checks");
  await page.click("#run-confirm");
  assert.ok(await page.$("#run-dialog"));
  assert.equal(JSON.parse(await w.ctl("--json", "list")).length, 0, "a form with errors was sent");

  await setField(page, "run-param-disk", "vdc");
  await setField(page, "run-param-key", "s3cretKey99");
  await setField(page, "run-name", "nightly");
  await page.click("#run-confirm");
  await page.waitForSelector("#run-dialog", { hidden: true });
  await page.waitForFunction(() => document.querySelector("#toasts").textContent.includes("“nightly” submitted"), { polling: "mutation" });
  await waitRow(page, "nightly", { state: "running" });
  // The daemon ran what the template says with what was typed; the secret stays its placeholder.
  assert.deepEqual(await w.prop("nightly", "Argv"), ["sh", "-c", "echo copying $0; exec sleep 1000", "vdc", "{key}"]);
  const submitted = JSON.parse(await w.ctl("--json", "events", "nightly")).find((e) => e.type === "submitted");
  assert.ok(!JSON.stringify(submitted).includes("s3cretKey99"), JSON.stringify(submitted));

  // The daemon refuses (the name is taken): said on the name field, in plain words, and the rest
  // of what was typed is still there.
  await page.click("#run-job");
  await page.waitForSelector("#run-dialog #run-template");
  await setField(page, "run-param-key", "an0therKey");
  await setField(page, "run-name", "nightly");
  await page.click("#run-confirm");
  await page.waitForFunction(
    () => document.querySelector("#run-name").closest(".pf-c-form__group").querySelector(".pf-m-error")?.textContent ===
      "A job with this name exists already: choose another name, or leave it empty.",
    { polling: "mutation" },
  );
  assert.equal(await page.$eval("#run-param-key", (e) => e.value), "an0therKey");
  await w.screenshot("run-refused");
  // Left empty, the job has no name; the other template, without parameters.
  await setField(page, "run-name", "");
  await page.select("#run-template", "idle");
  assert.equal(await page.$$eval("#run-form input[id^=run-param-]", (l) => l.length), 0);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#run-dialog", { hidden: true });
  await page.waitForFunction(() => document.querySelectorAll("#jobs tbody tr").length === 2, { polling: "mutation" });
  assert.equal(JSON.parse(await w.ctl("--json", "list")).length, 2);

  // Reconfigured without templates: the dialog says so.
  await w.reload({ extra: "" });
  await page.click("#run-job");
  await page.waitForSelector("#run-no-templates");
  assert.ok(await page.$eval("#run-confirm", (e) => e.disabled));
  await page.keyboard.press("Escape");
  await page.waitForSelector("#run-dialog", { hidden: true });
  assert.deepEqual(w.pageErrors, []);
});
