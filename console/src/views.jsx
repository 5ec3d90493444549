// Pieces the list and the detail page share: a job's progress bar, the loading skeleton, the
// "not reachable" state, and the clock that "3 min ago" texts follow.
import { useEffect, useState } from "react";
import {
  Button, EmptyState, EmptyStateBody, EmptyStateIcon, EmptyStatePrimary, EmptyStateVariant, Progress,
  ProgressMeasureLocation, ProgressVariant, Skeleton, Title,
} from "@patternfly/react-core";
import { ExclamationCircleIcon } from "@patternfly/react-icons";
import cockpit from "./cockpit.js";
import { formatBytes } from "./format.js";

const _ = cockpit.gettext;

// Re-renders every `ms` (the daemon is not asked); `active` false stops the timer.
export function useNow(ms = 10000, active = true) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return undefined;
    setNow(Date.now());
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms, active]);
  return now;
}

export function JobProgress({ job, size = "sm" }) {
  const done = Number(job.BytesDone) || 0;
  const total = Number(job.BytesTotal) || 0;
  const known = typeof job.Progress === "number" && job.Progress >= 0;
  let value = known ? job.Progress : 0;
  if (job.State === "completed") value = 100;
  let bytes = "";
  if (total > 0) bytes = cockpit.format(_("$0 of $1"), formatBytes(done), formatBytes(total));
  else if (done > 0) bytes = formatBytes(done);
  const percent = known || job.State === "completed" ? `${Math.round(value)}%` : _("unknown");
  // Throughput while it runs, from BytesDone's changes (jobs.js, rateOf).
  const rate = typeof job.rate === "number" ? cockpit.format(_("$0/s"), formatBytes(Math.max(0, Math.round(job.rate)))) : "";
  const label = [percent, bytes, rate].filter(Boolean).join(" · ");
  let variant;
  if (job.State === "completed") variant = ProgressVariant.success;
  else if (job.State === "failed") variant = ProgressVariant.danger;
  else if (job.State === "cancelled" || job.State === "stopping") variant = ProgressVariant.warning;
  return (
    <Progress
      className="repvisor-progress"
      value={value}
      label={label}
      valueText={label}
      measureLocation={ProgressMeasureLocation.outside}
      variant={variant}
      size={size}
      aria-label={cockpit.format(_("Progress of $0"), job.Name || job.Id)}
      data-progress={value}
      data-rate={typeof job.rate === "number" ? Math.round(job.rate) : ""}
    />
  );
}


export function Unreachable({ problem, onRetry }) {
  return (
    <EmptyState variant={EmptyStateVariant.large} id="unreachable">
      <EmptyStateIcon icon={ExclamationCircleIcon} />
      <Title headingLevel="h2" size="lg">
        {_("repvisor is not running or not reachable")}
      </Title>
      <EmptyStateBody>
        {_("The page could not reach the repvisor daemon (org.repvisor1 on the system bus). Start it with “systemctl start repvisord”, then retry.")}
        {problem && <div className="repvisor-muted">{problem}</div>}
      </EmptyStateBody>
      <EmptyStatePrimary>
        <Button variant="primary" onClick={onRetry} id="retry">
          {_("Retry")}
        </Button>
      </EmptyStatePrimary>
    </EmptyState>
  );
}

export function Loading({ what }) {
  const text = what || _("Loading jobs…");
  return (
    <div id="loading" aria-busy="true">
      <span className="pf-screen-reader">{text}</span>
      {[0, 1, 2, 3].map((i) => (
        <Skeleton key={i} height="2.5rem" className="repvisor-skeleton-row" screenreaderText={text} />
      ))}
    </div>
  );
}
