// A job's detail page (#/job/<id>, so it can be linked and reloaded): every property grouped, live
// from PropertiesChanged; banners for a stop under way (with the SIGKILL countdown), a failure,
// processes that survived SIGKILL, a cancellation and a failed cleanup; the actions its state
// allows; its progress over time; its log, followed while it runs; and its audit trail. A deleted job says so, with its trail.
import { useEffect, useRef } from "react";
import {
  Alert, AlertActionLink, Breadcrumb, BreadcrumbItem, Button, Card, CardBody, CardTitle, DescriptionList,
  DescriptionListDescription, DescriptionListGroup, DescriptionListTerm, EmptyState, EmptyStateBody,
  EmptyStateIcon, EmptyStatePrimary, Flex, FlexItem, Gallery, PageSection, PageSectionVariants, Title, Tooltip,
} from "@patternfly/react-core";
import { TableComposable, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table";
import { TrashIcon } from "@patternfly/react-icons";
import cockpit from "./cockpit.js";
import { isFinished, jobPath } from "./jobs.js";
import { jobActions } from "./actions.js";
import { deniedReason } from "./access.js";
import { StateLabel } from "./state-label.jsx";
import {
  NOBODY_ASKED, formatAgo, formatArgv, formatBytes, formatClock, formatDuration, formatExact, shortId, signalName,
} from "./format.js";
import { JobProgress, Loading, Unreachable, useNow } from "./views.jsx";
import { TrailTable, UserName, useTrail } from "./trail.jsx";
import { ProgressChart } from "./chart.jsx";
import { LogPanel } from "./log.jsx";

const _ = cockpit.gettext;

const SUBSTATE_WORDS = {
  queued: () => _("waiting for a free slot"),
  setup: () => _("setting up its resources"),
  "stop-sigterm": () => _("stop signal sent, waiting for it to end"),
  "stop-sigkill": () => _("SIGKILL sent, waiting for its processes to go"),
  "final-sigkill": () => _("its main process ended; SIGKILL sent to the processes it left"),
  unkillable: () => _("processes survived SIGKILL"),
  cleanup: () => _("tearing down its resources"),
  dead: () => _("ended"),
};

const CLEANUP_WORDS = {
  "": () => _("not yet"),
  running: () => _("running"),
  done: () => _("done"),
  failed: () => _("failed"),
};

function Field({ label, prop, children }) {
  return (
    <DescriptionListGroup>
      <DescriptionListTerm>{label}</DescriptionListTerm>
      <DescriptionListDescription data-prop={prop}>{children}</DescriptionListDescription>
    </DescriptionListGroup>
  );
}

function Group({ title, id, children }) {
  return (
    <Card id={id} isFlat>
      <CardTitle>{title}</CardTitle>
      <CardBody>
        <DescriptionList isCompact>{children}</DescriptionList>
      </CardBody>
    </Card>
  );
}

const none = () => <span className="repvisor-muted">—</span>;

function Time({ usec, now }) {
  if (!usec) return none();
  return (
    <span title={formatExact(usec)}>
      {formatExact(usec)} <span className="repvisor-muted">({formatAgo(usec, now)})</span>
    </span>
  );
}

function exitText(job) {
  if (job.ExitSignal > 0) return cockpit.format(_("killed by $0"), signalName(job.ExitSignal));
  if (job.ExitCode >= 0 && job.FinishedUSec) return cockpit.format(_("exit status $0"), job.ExitCode);
  if (job.FinishedUSec) return _("did not exit normally");
  return null;
}

// While the stop signal's time runs: when it went out, and when SIGKILL follows (ticking).
function StopBanner({ job }) {
  const counting = job.SubState === "stop-sigterm" && job.StopDeadlineUSec > 0;
  const now = useNow(1000, counting);
  if (job.State !== "stopping" || job.SubState === "unkillable") return null;
  const signal = signalName(job.StopSignal || 15);
  let title;
  let left = 0;
  if (job.SubState === "stop-sigterm") {
    const sent = job.StopRequestedUSec ? formatClock(job.StopRequestedUSec) : "";
    left = job.StopDeadlineUSec ? job.StopDeadlineUSec - now * 1000 : 0;
    const kill = !job.StopDeadlineUSec
      ? ""
      : left > 0
        ? cockpit.format(_("SIGKILL follows in $0 (at $1) unless the job ends first."), formatDuration(left), formatClock(job.StopDeadlineUSec))
        : _("SIGKILL is due now.");
    title = cockpit.format(_("Stopping: $0 was sent at $1. $2"), signal, sent, kill);
  } else {
    title = _("Stopping: SIGKILL was sent; waiting for the job's processes to go.");
  }
  return (
    <Alert isInline variant="warning" title={title} id="banner-stopping" data-seconds-left={Math.max(0, Math.round(left / 1e6))}>
      {job.StatusText && <div>{cockpit.format(_("The job says: $0"), job.StatusText)}</div>}
    </Alert>
  );
}

function Banners({ job, onAction, readOnly, access }) {
  const out = [<StopBanner key="stop" job={job} />];
  if (job.SubState === "unkillable")
    out.push(
      <Alert key="unkillable" isInline variant="danger" id="banner-unkillable"
        title={cockpit.format(_("Processes of this job survived SIGKILL: PIDs $0"), (job.StuckPIDs || []).join(", "))}>
        {_("They are most likely stuck in the kernel (waiting on a device or a network file system). repvisor keeps the job until they are gone; the machine may need attention.")}
      </Alert>,
    );
  if (job.State === "failed")
    out.push(
      <Alert key="failed" isInline variant="danger" id="banner-failed"
        title={cockpit.format(_("This job failed: $0"), job.FailReason || job.StatusText || _("no reason was given"))}>
        {job.StatusText && job.FailReason && <div>{cockpit.format(_("It said last: $0"), job.StatusText)}</div>}
      </Alert>,
    );
  if (job.CleanupState === "failed") {
    const retry = (
      <AlertActionLink id="banner-retry-cleanup" isAriaDisabled={readOnly} onClick={() => !readOnly && onAction("cleanup", job)}>
        {_("Retry cleanup…")}
      </AlertActionLink>
    );
    out.push(
      <Alert key="cleanup" isInline variant="danger" id="banner-cleanup"
        title={cockpit.format(_("The cleanup of this job failed: $0"), job.CleanupError || _("no reason was given"))}
        actionLinks={readOnly ? <Tooltip content={deniedReason(access, _("clean up"))}>{retry}</Tooltip> : retry}>
        {_("Something of it may still be attached (a device, a server, its cgroup). It can be resumed or deleted once a cleanup succeeds.")}
      </Alert>,
    );
  } else if (job.State === "cancelled") {
    out.push(
      <Alert key="cancelled" isInline variant="info" id="banner-cancelled"
        title={_("This job was cancelled. You can resume it or delete it to free storage.")}>
        {job.CancelReason && cockpit.format(_("Reason: $0"), job.CancelReason)}
      </Alert>,
    );
  }
  return <div className="repvisor-banners">{out}</div>;
}

function Actions({ job, access, onAction }) {
  const readOnly = access.may === false;
  return (
    <Flex id="job-actions">
      {jobActions(job).map((a) => {
        const button = (
          <Button
            id={`action-${a.key}`}
            variant={a.kind === "delete" ? "danger" : "secondary"}
            isAriaDisabled={readOnly}
            onClick={() => onAction(a.kind, job, a.force)}
          >
            {a.title}
          </Button>
        );
        return (
          <FlexItem key={a.key}>
            {readOnly ? <Tooltip content={deniedReason(access, a.verb)}>{button}</Tooltip> : button}
          </FlexItem>
        );
      })}
    </Flex>
  );
}

function Resources({ job }) {
  const details = job.ResourceDetails || [];
  if (details.length === 0) return <div className="repvisor-muted">{_("This job has no resources.")}</div>;
  return (
    <TableComposable aria-label={_("Resources")} variant="compact" id="resources">
      <Thead>
        <Tr>
          <Th>{_("Name")}</Th>
          <Th>{_("Kind")}</Th>
          <Th>{_("Path or device")}</Th>
          <Th>{_("Size")}</Th>
          <Th>{_("State")}</Th>
          <Th>{_("When stopped")}</Th>
        </Tr>
      </Thead>
      <Tbody>
        {details.map((r) => (
          <Tr key={r.name} data-resource={r.name}>
            <Td dataLabel={_("Name")}>{r.name}</Td>
            <Td dataLabel={_("Kind")}>
              {r.kind}
              {r.created && <span className="repvisor-muted"> · {_("created by the job")}</span>}
            </Td>
            <Td dataLabel={_("Path or device")} className="repvisor-wrap">
              <div>{r.path}</div>
              {r.device && r.device !== r.path && <div className="repvisor-muted">{r.device}</div>}
              {r.endpoint && r.endpoint !== r.device && r.endpoint !== r.path && <div className="repvisor-muted">{r.endpoint}</div>}
              {r.server_pid > 0 && <div className="repvisor-muted">{cockpit.format(_("server PID $0"), r.server_pid)}</div>}
            </Td>
            <Td dataLabel={_("Size")}>{r.size ? formatBytes(r.size) : "—"}</Td>
            <Td dataLabel={_("State")} data-resource-state={r.state}>
              {r.state}
              {r.error && <div className="repvisor-error-text">{r.error}</div>}
            </Td>
            <Td dataLabel={_("When stopped")}>{r.on_stop || "—"}</Td>
          </Tr>
        ))}
      </Tbody>
    </TableComposable>
  );
}

function Properties({ job, now }) {
  const exit = exitText(job);
  return (
    <Gallery hasGutter minWidths={{ default: "100%", lg: "28rem" }} className="repvisor-space-below">
      <Group title={_("State")} id="group-state">
        <Field label={_("State")} prop="State"><StateLabel job={job} /></Field>
        <Field label={_("Sub-state")} prop="SubState">
          {job.SubState}
          {SUBSTATE_WORDS[job.SubState] && <span className="repvisor-muted"> — {SUBSTATE_WORDS[job.SubState]()}</span>}
        </Field>
        <Field label={_("Phase")} prop="Phase">{job.Phase || none()}</Field>
        <Field label={_("Status")} prop="StatusText">{job.StatusText || none()}</Field>
        {job.FailReason && <Field label={_("Why it failed")} prop="FailReason">{job.FailReason}</Field>}
        {(job.StuckPIDs || []).length > 0 && <Field label={_("Stuck processes")} prop="StuckPIDs">{job.StuckPIDs.join(", ")}</Field>}
        <Field label={_("Progress reported by")} prop="ProgressSource">
          {job.ProgressSource === "nbdcopy" ? _("nbdcopy's progress lines") : _("the job (notify protocol)")}
        </Field>
      </Group>
      <Group title={_("Command")} id="group-command">
        <Field label={_("Command")} prop="Argv"><code className="repvisor-wrap">{formatArgv(job.Argv)}</code></Field>
        {/* A finished job runs nothing, whatever MainPID last said: the daemon does not signal
            MainPID's change to 0 when the main process exits (only a new read would show it). */}
        <Field label={_("Main PID")} prop="MainPID">
          {job.MainPID > 0 && !isFinished(job) ? job.MainPID : <span className="repvisor-muted">{_("not running")}</span>}
        </Field>
        <Field label={_("Runs")} prop="Runs">{job.Runs}</Field>
        <Field label={_("Id")} prop="Id"><span className="repvisor-id">{job.Id}</span></Field>
      </Group>
      <Group title={_("Times")} id="group-times">
        <Field label={_("Created")} prop="CreatedUSec"><Time usec={job.CreatedUSec} now={now} /></Field>
        <Field label={_("Started")} prop="StartedUSec"><Time usec={job.StartedUSec} now={now} /></Field>
        <Field label={_("Stop requested")} prop="StopRequestedUSec"><Time usec={job.StopRequestedUSec} now={now} /></Field>
        {job.StopDeadlineUSec > 0 && <Field label={_("SIGKILL due")} prop="StopDeadlineUSec"><Time usec={job.StopDeadlineUSec} now={now} /></Field>}
        <Field label={_("Finished")} prop="FinishedUSec"><Time usec={job.FinishedUSec} now={now} /></Field>
      </Group>
      <Group title={_("Stop policy")} id="group-stop-policy">
        <Field label={_("Stop signal")} prop="StopSignal">{signalName(job.StopSignal)}</Field>
        <Field label={_("Stop timeout")} prop="StopTimeoutUSec">{formatDuration(job.StopTimeoutUSec)}</Field>
        <Field label={_("Kill mode")} prop="KillMode">
          {job.KillMode}
          <span className="repvisor-muted">
            {" — "}
            {job.KillMode === "control-group" ? _("the stop signal goes to every process") : _("the stop signal goes to the main process")}
          </span>
        </Field>
      </Group>
      <Group title={_("Cancellation")} id="group-cancellation">
        <Field label={_("Cancelled")} prop="CancelledUSec"><Time usec={job.CancelledUSec} now={now} /></Field>
        <Field label={_("Reason")} prop="CancelReason">{job.CancelReason || none()}</Field>
        <Field label={_("Notes")} prop="CancelNotes"><span className="repvisor-wrap">{job.CancelNotes || none()}</span></Field>
        <Field label={_("Mode")} prop="StopMode">
          {job.StopMode === "force" ? _("immediately (force)") : job.StopMode === "graceful" ? _("graceful") : none()}
        </Field>
        <Field label={_("Requested by")} prop="RequestedByUID">
          {!job.StopMode ? none() : job.RequestedByUID === NOBODY_ASKED
            ? _("repvisord itself (its shutdown, or its recovery after a restart)")
            : <UserName uid={job.RequestedByUID} />}
        </Field>
      </Group>
      <Group title={_("Exit and checkpoint")} id="group-exit">
        <Field label={_("Exit")} prop="ExitCode">{exit || none()}</Field>
        <Field label={_("Checkpoint")} prop="Checkpoint">
          {job.Checkpoint ? <code className="repvisor-wrap">{job.Checkpoint}</code> : <span className="repvisor-muted">{_("none reported")}</span>}
        </Field>
      </Group>
      <Group title={_("Cleanup and log")} id="group-cleanup">
        <Field label={_("Cleanup")} prop="CleanupState">
          {(CLEANUP_WORDS[job.CleanupState] || (() => job.CleanupState))()}
          {job.CleanupError && <div className="repvisor-error-text">{job.CleanupError}</div>}
        </Field>
        <Field label={_("Log")} prop="LogPath">
          <code className="repvisor-wrap">{job.LogPath}</code>
          <div className="repvisor-muted">{cockpit.format(_("Shown below; also: repvisorctl logs $0"), shortId(job.Id))}</div>
        </Field>
        {job.LogBytesCut > 0 && (
          <Field label={_("Log cut")} prop="LogBytesCut">
            {cockpit.format(_("$0 removed to keep it within $1 (kept: $2)"), formatBytes(job.LogBytesCut), formatBytes(job.LogLimit), job.LogKeep)}
          </Field>
        )}
      </Group>
    </Gallery>
  );
}

// The job is not (or no longer) there: what its trail says of it.
function Gone({ id, trail }) {
  const deleted = trail.rows && trail.rows.find((e) => e.type === "deleted");
  const known = trail.rows && trail.rows.length > 0;
  if (trail.rows === null) return <Loading what={_("Looking the job up in the audit trail…")} />;
  return (
    <>
      <EmptyState id="job-gone" variant="large">
        <EmptyStateIcon icon={TrashIcon} />
        <Title headingLevel="h2" size="lg">
          {known ? _("This job was deleted") : _("There is no such job")}
        </Title>
        <EmptyStateBody>
          {deleted
            ? cockpit.format(_("Deleted $0: $1"), formatExact(deleted.ts), deleted.message)
            : known
              ? _("Its audit trail stays.")
              : cockpit.format(_("repvisor knows no job with id $0, and its audit trail has no entry for it."), id)}
        </EmptyStateBody>
        <EmptyStatePrimary>
          <Button variant="primary" component="a" href="#/" id="back-to-list">
            {_("Back to the job list")}
          </Button>
        </EmptyStatePrimary>
      </EmptyState>
      {known && (
        <Card id="trail-card">
          <CardTitle>{_("Audit trail")}</CardTitle>
          <CardBody>
            <TrailTable trail={trail} />
          </CardBody>
        </Card>
      )}
    </>
  );
}

export function JobDetail({ id, model, store, access, onAction, toast, busy, trailTick }) {
  const job = model.status === "ready" ? model.jobs.get(jobPath(id)) : undefined;
  const now = useNow();
  const trail = useTrail(store, id, model.status === "ready" ? job : null, `${trailTick}-${model.status}`);
  // Deleted by someone else while open (not by a dialog of this page): say so once.
  const seen = useRef(null);
  useEffect(() => {
    if (job) seen.current = job.Name || shortId(job.Id);
    else if (seen.current && model.status === "ready") {
      if (!busy && !store.deletedHere.has(jobPath(id))) toast("info", cockpit.format(_("“$0” was deleted meanwhile"), seen.current));
      seen.current = null;
    }
  }, [job, model.status, busy, toast, store, id]);

  const title = job ? job.Name || shortId(job.Id) : shortId(id);
  let body;
  if (model.status === "loading") body = <Loading what={_("Loading the job…")} />;
  else if (model.status === "unreachable") body = <Unreachable problem={model.problem} onRetry={() => store.connect()} />;
  else if (!job) body = <Gone id={id} trail={trail} />;
  else if (job.partial) body = <Loading what={_("Loading the job…")} />;
  else
    body = (
      <>
        <Banners job={job} onAction={onAction} readOnly={access.may === false} access={access} />
        <Card id="progress-card" className="repvisor-space-below" isFlat>
          <CardTitle>{_("Progress")}</CardTitle>
          <CardBody>
            <JobProgress job={job} size="md" />
            <ProgressChart job={job} />
          </CardBody>
        </Card>
        <Properties job={job} now={now} />
        <Card id="resources-card" className="repvisor-space-below" isFlat>
          <CardTitle>{_("Resources")}</CardTitle>
          <CardBody>
            <Resources job={job} />
          </CardBody>
        </Card>
        <LogPanel job={job} store={store} />
        <Card id="trail-card" isFlat>
          <CardTitle>{_("Audit trail")}</CardTitle>
          <CardBody>
            <TrailTable trail={trail} />
          </CardBody>
        </Card>
      </>
    );

  return (
    <>
      <PageSection variant={PageSectionVariants.light}>
        <Breadcrumb className="repvisor-space-below">
          <BreadcrumbItem to="#/" id="breadcrumb-list">{_("Replication jobs")}</BreadcrumbItem>
          <BreadcrumbItem isActive>{title}</BreadcrumbItem>
        </Breadcrumb>
        <Flex alignItems={{ default: "alignItemsCenter" }} className="repvisor-space-below">
          <FlexItem>
            <Title headingLevel="h1" id="job-title" data-job-id={job ? job.Id : id}>
              {title}
            </Title>
          </FlexItem>
          {job && <FlexItem id="job-state" data-state={job.State}><StateLabel job={job} /></FlexItem>}
          {job && job.Runs > 1 && <FlexItem className="repvisor-muted">{cockpit.format(_("run $0"), job.Runs)}</FlexItem>}
        </Flex>
        {/* Under the title, not at the right: toasts appear at the top right and would cover them. */}
        {job && !job.partial && <Actions job={job} access={access} onAction={onAction} />}
      </PageSection>
      <PageSection id="job-detail" data-may={String(access.may)}>{body}</PageSection>
    </>
  );
}
