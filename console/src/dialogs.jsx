// The Stop, Delete, Resume and Retry cleanup confirmation dialogs. Each says what will happen in plain words, shows a
// spinner and "Stopping…"/"Deleting…" while its call runs (the button is disabled meanwhile, so a
// double click sends one request), and on an error keeps what the user typed.
import { useState } from "react";
import {
  Alert, Button, Checkbox, Form, FormGroup, FormSelect, FormSelectOption, HelperText, HelperTextItem,
  List, ListItem, Modal, ModalVariant, Radio, TextArea, TextInput,
} from "@patternfly/react-core";
import cockpit from "./cockpit.js";
import { describeError, isActive } from "./jobs.js";
import { formatBytes, shortId } from "./format.js";

const _ = cockpit.gettext;

const REASONS = [
  ["user_request", () => _("Requested by a user")],
  ["maintenance", () => _("Maintenance")],
  ["migration_window", () => _("Migration window closed")],
  ["other", () => _("Other…")],
];
// The daemon's limits: a reason of 1 to 64 bytes (UTF-8), notes of at most 500 characters.
const REASON_MAX = 64;
const NOTES_MAX = 500;
const utf8Bytes = (s) => new TextEncoder().encode(s).length;
const characters = (s) => [...s].length;

function jobName(job) {
  return job.Name || shortId(job.Id);
}

// One job (`job`), or several at once (`jobs`, the selected rows): one confirmation for all.
export function StopDialog({ job: live, jobs: many, force: escalate, store, toast, onClose }) {
  const bulk = Array.isArray(many);
  // The job(s) as they were when the dialog opened, should one vanish meanwhile.
  const [snapshot] = useState(live);
  const [targets] = useState(many);
  const job = bulk ? { State: "", StopTimeoutUSec: 0 } : live || snapshot;
  const gone = !bulk && !live;
  const [reason, setReason] = useState("user_request");
  const [other, setOther] = useState("");
  const [notes, setNotes] = useState("");
  const [mode, setMode] = useState(escalate ? "force" : "graceful");
  // The graceful stop's timeout in seconds, defaulting to the job's own stop timeout.
  const ownTimeout = job.StopTimeoutUSec ? Math.round(job.StopTimeoutUSec / 1e6) : 0;
  const [timeout, setTimeoutText] = useState(ownTimeout ? String(ownTimeout) : "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  const reasonText = reason === "other" ? other.trim() : reason;
  const reasonBytes = utf8Bytes(reasonText);
  const notesLength = characters(notes);
  const timeoutValid = mode === "force" || timeout === "" || /^[1-9][0-9]{0,6}$/.test(timeout);
  const valid = reasonBytes >= 1 && reasonBytes <= REASON_MAX && notesLength <= NOTES_MAX && timeoutValid && !gone;
  const name = bulk ? "" : jobName(job);
  const stopping = job.State === "stopping";

  const stopMany = (options) => {
    Promise.allSettled(targets.map((j) => store.call(j.path, "Stop", options))).then((results) => {
      const failed = results
        .map((r, i) => (r.status === "rejected" ? `${jobName(targets[i])}: ${describeError(r.reason, "stop")}` : null))
        .filter(Boolean);
      const done = results.length - failed.length;
      if (done) toast("success", cockpit.format(cockpit.ngettext("Stopping $0 job", "Stopping $0 jobs", done), done));
      if (failed.length) {
        const text = failed.join("\n");
        toast("danger", cockpit.format(cockpit.ngettext("Could not stop $0 job", "Could not stop $0 jobs", failed.length), failed.length), text);
        setBusy(false);
        setError(text);
        if (done === 0) return;
      }
      onClose(true);
    });
  };

  const confirm = () => {
    if (!valid || busy) return;
    setBusy(true);
    setError("");
    const options = { reason: ["s", reasonText] };
    if (notes) options.notes = ["s", notes];
    if (mode === "force") options.force = ["b", true];
    else if (timeout !== "" && Number(timeout) !== ownTimeout) options.timeout_usec = ["t", Number(timeout) * 1e6];
    if (bulk) {
      stopMany(options);
      return;
    }
    store
      .call(job.path, "Stop", options)
      .then((reply) => {
        if (reply.already) toast("info", cockpit.format(_("“$0” was already $1"), name, reply.state === "stopping" ? _("being stopped") : reply.state));
        else if (mode === "force") toast("success", cockpit.format(_("“$0” stopped"), name));
        else toast("success", cockpit.format(_("Stopping “$0”"), name), _("It finishes its current step, then ends cancelled."));
        onClose(true);
      })
      .catch((err) => {
        const text = describeError(err, "stop");
        setBusy(false);
        setError(text);
        toast("danger", cockpit.format(_("Could not stop “$0”"), name), text);
      });
  };

  return (
    <Modal
      id="stop-dialog"
      variant={ModalVariant.small}
      title={bulk
        ? cockpit.format(cockpit.ngettext("Stop $0 job?", "Stop $0 jobs?", targets.length), targets.length)
        : stopping ? cockpit.format(_("Stop “$0” now?"), name) : cockpit.format(_("Stop “$0”?"), name)}
      titleIconVariant="warning"
      isOpen
      onClose={() => onClose(false)}
      actions={[
        <Button
          key="confirm"
          id="stop-confirm"
          variant={mode === "force" ? "danger" : "primary"}
          isLoading={busy}
          isDisabled={!valid || busy}
          spinnerAriaValueText={_("Stopping…")}
          onClick={confirm}
        >
          {busy ? _("Stopping…") : mode === "force" ? _("Stop immediately") : _("Stop")}
        </Button>,
        <Button key="cancel" id="stop-cancel" variant="link" onClick={() => onClose(false)} isDisabled={busy}>
          {_("Cancel")}
        </Button>,
      ]}
    >
      <Form
        id="stop-form"
        onSubmit={(e) => {
          e.preventDefault();
          confirm();
        }}
      >
        {gone && <Alert isInline variant="info" title={_("This job was deleted meanwhile.")} />}
        {error && <Alert isInline variant="danger" title={error} id="stop-error" />}
        {bulk && (
          <List id="stop-targets">
            {targets.map((j) => (
              <ListItem key={j.path}>{jobName(j)}</ListItem>
            ))}
          </List>
        )}
        <FormGroup label={_("How")} isRequired fieldId="stop-graceful" role="radiogroup" isStack>
          <Radio
            id="stop-graceful"
            name="stop-mode"
            label={_("Graceful")}
            description={stopping
              ? _("The job is already being stopped gracefully.")
              : _("The job gets its stop signal and finishes its current step. If it has not ended when its stop timeout expires, all of its processes are killed.")}
            isChecked={mode === "graceful"}
            isDisabled={stopping}
            onChange={() => setMode("graceful")}
          />
          <Radio
            id="stop-force"
            name="stop-mode"
            label={_("Immediately")}
            description={_("Every process of the job is killed at once (SIGKILL). Work in progress is lost; the last checkpoint stays.")}
            isChecked={mode === "force"}
            onChange={() => setMode("force")}
          />
        </FormGroup>
        {mode === "graceful" && !stopping && (
          <FormGroup
            label={_("Timeout")}
            fieldId="stop-timeout"
            helperText={ownTimeout
              ? cockpit.format(_("Seconds before all of its processes are killed (the job's own: $0 s)"), ownTimeout)
              : bulk
                ? _("Seconds before all of a job's processes are killed (empty: each job's own)")
                : _("Seconds before all of its processes are killed")}
            helperTextInvalid={_("A whole number of seconds, at least 1")}
            validated={timeoutValid ? "default" : "error"}
          >
            <TextInput
              id="stop-timeout"
              type="number"
              min={1}
              value={timeout}
              onChange={(v) => setTimeoutText(typeof v === "string" ? v : v.target.value)}
              validated={timeoutValid ? "default" : "error"}
            />
          </FormGroup>
        )}
        <FormGroup label={_("Reason")} isRequired fieldId="stop-reason">
          <FormSelect id="stop-reason" value={reason} onChange={(v) => setReason(typeof v === "string" ? v : v.target.value)} aria-label={_("Reason")}>
            {REASONS.map(([value, label]) => (
              <FormSelectOption key={value} value={value} label={label()} />
            ))}
          </FormSelect>
        </FormGroup>
        {reason === "other" && (
          <FormGroup
            label={_("Other reason")}
            isRequired
            fieldId="stop-reason-other"
            helperText={cockpit.format(_("$0 / $1 bytes"), utf8Bytes(other.trim()), REASON_MAX)}
            helperTextInvalid={cockpit.format(_("$0 / $1 bytes: make it shorter"), utf8Bytes(other.trim()), REASON_MAX)}
            validated={reasonBytes > REASON_MAX ? "error" : "default"}
          >
            <TextInput
              id="stop-reason-other"
              value={other}
              maxLength={REASON_MAX}
              onChange={(v) => setOther(typeof v === "string" ? v : v.target.value)}
              validated={reasonBytes > REASON_MAX ? "error" : "default"}
            />
          </FormGroup>
        )}
        <FormGroup label={_("Notes")} fieldId="stop-notes">
          <TextArea
            id="stop-notes"
            value={notes}
            maxLength={NOTES_MAX}
            resizeOrientation="vertical"
            onChange={(v) => setNotes(typeof v === "string" ? v : v.target.value)}
          />
          <HelperText>
            <HelperTextItem id="stop-notes-count" variant={notesLength >= NOTES_MAX ? "warning" : "default"}>
              {cockpit.format(_("$0 / $1 characters"), notesLength, NOTES_MAX)}
            </HelperTextItem>
          </HelperText>
        </FormGroup>
      </Form>
    </Modal>
  );
}

// Delete a finished job; with `force` (Stop and delete) an active one, which the daemon stops at
// once (SIGKILL), cleans up and then deletes, in one call.
export function DeleteDialog({ job: live, force, store, toast, onClose }) {
  const [snapshot] = useState(live);
  const job = live || snapshot;
  const gone = !live;
  const active = isActive(job);
  const volumes = (job.ResourceDetails || []).filter((r) => r.created && r.kind !== "nbd-server");
  const [keep, setKeep] = useState(volumes.length > 0);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const name = jobName(job);

  const confirm = () => {
    if (busy || gone) return;
    setBusy(true);
    setError("");
    store
      .call(job.path, "Delete", force ? { keep_data: ["b", keep], force: ["b", true] } : { keep_data: ["b", keep] })
      .then(() => {
        toast("success", cockpit.format(_("“$0” deleted"), name), keep ? _("Its data was kept.") : undefined);
        onClose(true);
      })
      .catch((err) => {
        const text = describeError(err, "delete");
        setBusy(false);
        setError(text);
        toast("danger", cockpit.format(_("Could not delete “$0”"), name), text);
      });
  };

  const fate = (what) => (keep ? cockpit.format(_("$0 — kept"), what) : cockpit.format(_("$0 — deleted"), what));
  return (
    <Modal
      id="delete-dialog"
      variant={ModalVariant.small}
      title={force && active ? cockpit.format(_("Stop and delete “$0”?"), name) : cockpit.format(_("Delete “$0”?"), name)}
      titleIconVariant="danger"
      isOpen
      onClose={() => onClose(false)}
      actions={[
        <Button key="confirm" id="delete-confirm" variant="danger" isLoading={busy} isDisabled={busy || gone}
          spinnerAriaValueText={_("Deleting…")} onClick={confirm}>
          {busy ? _("Deleting…") : force && active ? _("Stop and delete") : _("Delete")}
        </Button>,
        <Button key="cancel" id="delete-cancel" variant="link" onClick={() => onClose(false)} isDisabled={busy}>
          {_("Cancel")}
        </Button>,
      ]}
    >
      {gone && <Alert isInline variant="info" title={_("This job was deleted meanwhile.")} />}
      {error && <Alert isInline variant="danger" title={error} id="delete-error" />}
      {force && active && (
        <Alert isInline variant="warning" id="delete-active" className="repvisor-space-below"
          title={_("This job is still running. It will be stopped immediately (every process killed), its resources torn down, then deleted.")} />
      )}
      <p className="repvisor-space-below">{_("This removes the job from repvisor. Its audit trail stays.")}</p>
      <List id="delete-what">
        <ListItem>{_("The job's record: its settings, state and progress — deleted")}</ListItem>
        <ListItem>{fate(cockpit.format(_("Its log $0"), job.LogPath || ""))}</ListItem>
        {volumes.map((v) => (
          <ListItem key={v.name} data-volume={v.path}>
            {fate(cockpit.format(_("Volume “$0”: $1$2"), v.name, v.device || v.path,
              v.size ? ` (${formatBytes(v.size)})` : ""))}
          </ListItem>
        ))}
      </List>
      <div className="repvisor-space-above">
      <Checkbox
        id="delete-keep-data"
        label={_("Keep replicated data")}
        description={volumes.length
          ? _("The volumes this job created and its log stay on disk.")
          : _("The job's log stays on disk.")}
        isChecked={keep}
        onChange={(checked) => setKeep(typeof checked === "boolean" ? checked : checked.target.checked)}
      />
      </div>
    </Modal>
  );
}

// Resume a cancelled or failed job: the same job runs again from its last checkpoint, on its kept
// volumes. The daemon refuses (NotResumable) when a volume was discarded or has gone.
export function ResumeDialog({ job: live, store, toast, onClose }) {
  const [snapshot] = useState(live);
  const job = live || snapshot;
  const gone = !live;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const name = jobName(job);

  const confirm = () => {
    if (busy || gone) return;
    setBusy(true);
    setError("");
    store
      .resume(job.path)
      .then(() => {
        toast("success", cockpit.format(_("“$0” resumed"), name));
        onClose(true);
      })
      .catch((err) => {
        const text = describeError(err, "resume");
        setBusy(false);
        setError(text);
        toast("danger", cockpit.format(_("Could not resume “$0”"), name), text);
      });
  };

  return (
    <Modal
      id="resume-dialog"
      variant={ModalVariant.small}
      title={cockpit.format(_("Resume “$0”?"), name)}
      isOpen
      onClose={() => onClose(false)}
      actions={[
        <Button key="confirm" id="resume-confirm" variant="primary" isLoading={busy} isDisabled={busy || gone}
          spinnerAriaValueText={_("Resuming…")} onClick={confirm}>
          {busy ? _("Resuming…") : _("Resume")}
        </Button>,
        <Button key="cancel" id="resume-cancel" variant="link" onClick={() => onClose(false)} isDisabled={busy}>
          {_("Cancel")}
        </Button>,
      ]}
    >
      {gone && <Alert isInline variant="info" title={_("This job was deleted meanwhile.")} />}
      {error && <Alert isInline variant="danger" title={error} id="resume-error" />}
      <p className="repvisor-space-below">
        {cockpit.format(_("The job runs again with the same id (run $0), on the volumes it kept."), (job.Runs || 1) + 1)}
      </p>
      <p id="resume-checkpoint">
        {job.Checkpoint
          ? cockpit.format(_("It continues from its last checkpoint: $0"), job.Checkpoint)
          : _("It reported no checkpoint: it starts from the beginning.")}
      </p>
    </Modal>
  );
}

// Retry cleanup of a finished job whose teardown failed: the daemon runs it again and answers once
// it has run; CleanupFailed (with the reason) when it failed again, and the dialog stays open.
export function RetryCleanupDialog({ job: live, store, toast, onClose }) {
  const [snapshot] = useState(live);
  const job = live || snapshot;
  const gone = !live;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const name = jobName(job);
  const left = (job.ResourceDetails || []).filter((r) => r.state === "failed" || r.error);

  const confirm = () => {
    if (busy || gone) return;
    setBusy(true);
    setError("");
    store
      .retryCleanup(job.path)
      .then(() => {
        toast("success", cockpit.format(_("The cleanup of “$0” succeeded"), name), _("It can be resumed or deleted now."));
        onClose(true);
      })
      .catch((err) => {
        const text = err && err.name === "org.repvisor1.Error.CleanupFailed"
          ? cockpit.format(_("The cleanup failed again: $0"), (err.message || "").replace(/^job [0-9a-f]+: cleanup failed: /, ""))
          : describeError(err, "clean up");
        setBusy(false);
        setError(text);
        toast("danger", cockpit.format(_("Could not clean up “$0”"), name), text);
      });
  };

  return (
    <Modal
      id="cleanup-dialog"
      variant={ModalVariant.small}
      title={cockpit.format(_("Retry the cleanup of “$0”?"), name)}
      isOpen
      onClose={() => onClose(false)}
      actions={[
        <Button key="confirm" id="cleanup-confirm" variant="primary" isLoading={busy} isDisabled={busy || gone}
          spinnerAriaValueText={_("Cleaning up…")} onClick={confirm}>
          {busy ? _("Cleaning up…") : _("Retry cleanup")}
        </Button>,
        <Button key="cancel" id="cleanup-cancel" variant="link" onClick={() => onClose(false)} isDisabled={busy}>
          {_("Cancel")}
        </Button>,
      ]}
    >
      {gone && <Alert isInline variant="info" title={_("This job was deleted meanwhile.")} />}
      {error && <Alert isInline variant="danger" title={error} id="cleanup-error" className="repvisor-space-below" />}
      <p className="repvisor-space-below">
        {_("repvisor tears down what is left of the job's resources again: it stops their servers, detaches their devices and removes its cgroup. Volumes are kept or discarded as each one says; nothing else is deleted.")}
      </p>
      <p className="repvisor-space-below">{cockpit.format(_("The last cleanup failed: $0"), job.CleanupError || _("no reason was given"))}</p>
      {left.length > 0 && (
        <List id="cleanup-left">
          {left.map((r) => (
            <ListItem key={r.name}>
              {cockpit.format(_("“$0” ($1): $2"), r.name, r.device || r.path, r.error || r.state)}
            </ListItem>
          ))}
        </List>
      )}
    </Modal>
  );
}
