// Delete several selected jobs with one confirmation: it lists every selected job with what
// happens to it (deleted, with its record, log and volumes; or left alone, and why), one "Keep
// replicated data" for all, and after the calls the result of each, refusals in plain words.
import { useState } from "react";
import { Alert, Button, Checkbox, List, ListItem, Modal, ModalVariant } from "@patternfly/react-core";
import { CheckCircleIcon, ExclamationCircleIcon, InfoCircleIcon } from "@patternfly/react-icons";
import cockpit from "./cockpit.js";
import { describeError } from "./jobs.js";
import { whyNotDeletable } from "./actions.js";
import { formatBytes, shortId } from "./format.js";

const _ = cockpit.gettext;

const jobName = (job) => job.Name || shortId(job.Id);
const volumesOf = (job) => (job.ResourceDetails || []).filter((r) => r.created && r.kind !== "nbd-server");

// `jobs`: the selected jobs as they were when the dialog opened; `live(path)`: the job now, or
// undefined once it is gone. onClose(deletedPaths) when the dialog closes.
export function BulkDeleteDialog({ jobs, live, store, toast, onClose }) {
  const [targets] = useState(jobs);
  const current = targets.map((j) => live(j.path) || { ...j, gone: true });
  const doomed = current.filter((j) => !j.gone && !whyNotDeletable(j));
  const anyVolumes = doomed.some((j) => volumesOf(j).length > 0);
  const [keep, setKeep] = useState(anyVolumes);
  const [busy, setBusy] = useState(false);
  // path -> { ok, text } once the calls have answered
  const [results, setResults] = useState(null);

  const confirm = () => {
    if (busy || results || doomed.length === 0) return;
    setBusy(true);
    const sent = doomed.slice();
    Promise.allSettled(sent.map((j) => store.call(j.path, "Delete", { keep_data: ["b", keep] }))).then((outcomes) => {
      const out = new Map();
      outcomes.forEach((o, i) => {
        const err = o.status === "rejected" ? o.reason : null;
        // Deleted by someone else meanwhile: gone all the same, which is what was asked.
        if (!err) out.set(sent[i].path, { ok: true, text: _("deleted") });
        else if (err.name === "org.repvisor1.Error.NoSuchJob") out.set(sent[i].path, { ok: true, text: _("already deleted by someone else") });
        else out.set(sent[i].path, { ok: false, text: describeError(err, "delete") });
      });
      const deleted = [...out].filter(([, r]) => r.ok).map(([p]) => p);
      const refused = out.size - deleted.length;
      setBusy(false);
      if (deleted.length)
        toast("success", cockpit.format(cockpit.ngettext("$0 job deleted", "$0 jobs deleted", deleted.length), deleted.length),
          keep ? _("Their data was kept.") : undefined);
      if (refused) {
        toast("danger", cockpit.format(cockpit.ngettext("$0 job was not deleted", "$0 jobs were not deleted", refused), refused),
          _("The dialog says why for each."));
        setResults(out); // stays open with the result of each
      } else {
        onClose(deleted);
      }
    });
  };

  const fate = (job) => {
    if (results && results.has(job.path)) return results.get(job.path);
    if (job.gone) return { ok: null, text: _("deleted meanwhile") };
    const why = whyNotDeletable(job);
    if (why) return { ok: null, text: cockpit.format(_("not deleted: $0"), why) };
    const volumes = volumesOf(job);
    const parts = [_("record"), cockpit.format(_("log ($0)"), keep ? _("kept") : _("deleted"))];
    if (volumes.length)
      parts.push(cockpit.format(cockpit.ngettext("$0 volume, $1 ($2)", "$0 volumes, $1 ($2)", volumes.length), volumes.length,
        formatBytes(volumes.reduce((n, v) => n + (Number(v.size) || 0), 0)), keep ? _("kept") : _("deleted")));
    return { ok: undefined, text: cockpit.format(_("to delete: $0"), parts.join(", ")) };
  };
  const icon = (ok) => (ok === true ? <CheckCircleIcon className="repvisor-ok" /> : ok === false
    ? <ExclamationCircleIcon className="repvisor-error-text" /> : ok === null ? <InfoCircleIcon className="repvisor-muted" /> : null);
  const skipped = current.length - doomed.length;

  return (
    <Modal
      id="bulk-delete-dialog"
      variant={ModalVariant.medium}
      title={results
        ? _("Delete: the result for each job")
        : cockpit.format(cockpit.ngettext("Delete $0 job?", "Delete $0 jobs?", doomed.length), doomed.length)}
      titleIconVariant={results ? "warning" : "danger"}
      isOpen
      onClose={() => onClose(results ? [...results].filter(([, r]) => r.ok).map(([p]) => p) : [])}
      actions={results ? [
        <Button key="close" id="bulk-delete-close" variant="primary"
          onClick={() => onClose([...results].filter(([, r]) => r.ok).map(([p]) => p))}>
          {_("Close")}
        </Button>,
      ] : [
        <Button key="confirm" id="bulk-delete-confirm" variant="danger" isLoading={busy} isDisabled={busy || doomed.length === 0}
          spinnerAriaValueText={_("Deleting…")} onClick={confirm}>
          {busy ? _("Deleting…") : cockpit.format(cockpit.ngettext("Delete $0 job", "Delete $0 jobs", doomed.length), doomed.length)}
        </Button>,
        <Button key="cancel" id="bulk-delete-cancel" variant="link" onClick={() => onClose([])} isDisabled={busy}>
          {_("Cancel")}
        </Button>,
      ]}
    >
      {!results && (
        <p className="repvisor-space-below">
          {_("Each job's record goes; its audit trail stays.")}
          {skipped > 0 && " " + cockpit.format(cockpit.ngettext("$0 selected job is left alone, as said below.", "$0 selected jobs are left alone, as said below.", skipped), skipped)}
        </p>
      )}
      {results && <Alert isInline variant="warning" className="repvisor-space-below" title={_("Some jobs were not deleted.")} />}
      <List id="bulk-delete-jobs" isPlain>
        {current.map((j) => {
          const f = fate(j);
          return (
            <ListItem key={j.path} data-job-name={j.Name} data-result={f.ok === true ? "ok" : f.ok === false ? "refused" : f.ok === null ? "skipped" : "pending"}
              icon={icon(f.ok)}>
              <strong>{jobName(j)}</strong> — {f.text}
            </ListItem>
          );
        })}
      </List>
      {!results && doomed.length > 0 && (
        <div className="repvisor-space-above">
          <Checkbox
            id="bulk-delete-keep-data"
            label={_("Keep replicated data")}
            description={anyVolumes
              ? _("The volumes these jobs created and their logs stay on disk.")
              : _("The jobs' logs stay on disk.")}
            isChecked={keep}
            onChange={(checked) => setKeep(typeof checked === "boolean" ? checked : checked.target.checked)}
          />
        </div>
      )}
    </Modal>
  );
}
