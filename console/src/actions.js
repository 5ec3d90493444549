// The actions a job's state allows, the same for its row's menu and its detail page: each with the
// dialog that confirms it and the verb a refusal or a read-only tooltip names.
import cockpit from "./cockpit.js";
import { isActive, isFinished } from "./jobs.js";

const _ = cockpit.gettext;

export function cleanupFailed(job) {
  return job.CleanupState === "failed";
}

// [{ key, title, kind (the dialog), force, verb }], in the order they are offered.
// A job whose cleanup failed is neither resumed nor deleted by the daemon (something of it may
// still be attached): it is offered Retry cleanup instead. A job cleaning up is offered nothing.
export function jobActions(job) {
  const out = [];
  if (isActive(job)) {
    if (job.State === "stopping") out.push({ key: "stop", title: _("Stop now…"), kind: "stop", force: true, verb: _("stop") });
    else out.push({ key: "stop", title: _("Stop…"), kind: "stop", force: false, verb: _("stop") });
    out.push({ key: "stop-delete", title: _("Stop and delete…"), kind: "delete", force: true, verb: _("delete") });
  }
  if (isFinished(job) && cleanupFailed(job))
    out.push({ key: "retry-cleanup", title: _("Retry cleanup…"), kind: "cleanup", verb: _("clean up") });
  if ((job.State === "cancelled" || job.State === "failed") && !cleanupFailed(job))
    out.push({ key: "resume", title: _("Resume…"), kind: "resume", verb: _("resume") });
  if (isFinished(job) && !cleanupFailed(job))
    out.push({ key: "delete", title: _("Delete…"), kind: "delete", force: false, verb: _("delete") });
  return out;
}

// Why a job is left out of a Delete of several: null when it can be deleted.
export function whyNotDeletable(job) {
  if (isActive(job)) return _("still running: stop it first, or use “Stop and delete” on it");
  if (job.State === "cleaning") return _("still cleaning up: wait until it has finished");
  if (cleanupFailed(job)) return _("its cleanup failed: retry the cleanup first");
  return null;
}
