// The job list: one row per job, live from the daemon's signals, with a filter by state, a search
// by name or id, sorting, a per-row menu of the actions the job's state allows, and toasts.
import { memo, useCallback, useEffect, useMemo, useState } from "react";
import {
  Alert, AlertActionCloseButton, AlertGroup, Button, Card, CardBody, EmptyState, EmptyStateBody, EmptyStateIcon,
  EmptyStatePrimary, EmptyStateVariant, Page, PageSection, PageSectionVariants, Progress,
  ProgressMeasureLocation, ProgressVariant, SearchInput, Select, SelectOption, SelectVariant, Skeleton,
  Title, Toolbar, ToolbarContent, ToolbarItem, Tooltip,
} from "@patternfly/react-core";
import { ActionsColumn, TableComposable, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table";
import { CubesIcon, ExclamationCircleIcon, SearchIcon } from "@patternfly/react-icons";
import cockpit from "./cockpit.js";
import { JobStore, STATES, isActive, isFinished } from "./jobs.js";
import { StateLabel, stateText } from "./state-label.jsx";
import { formatAgo, formatBytes, formatExact, shortId } from "./format.js";
import { DeleteDialog, ResumeDialog, StopDialog } from "./dialogs.jsx";

const _ = cockpit.gettext;

// The clock the "3 min ago" texts follow; re-renders them every 10 s (the daemon is not asked).
function useNow() {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 10000);
    return () => clearInterval(t);
  }, []);
  return now;
}

function JobProgress({ job }) {
  const done = Number(job.BytesDone) || 0;
  const total = Number(job.BytesTotal) || 0;
  const known = typeof job.Progress === "number" && job.Progress >= 0;
  let value = known ? job.Progress : 0;
  if (job.State === "completed") value = 100;
  let bytes = "";
  if (total > 0) bytes = cockpit.format(_("$0 of $1"), formatBytes(done), formatBytes(total));
  else if (done > 0) bytes = formatBytes(done);
  const percent = known || job.State === "completed" ? `${Math.round(value)}%` : _("unknown");
  const label = bytes ? `${percent} · ${bytes}` : percent;
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
      size="sm"
      aria-label={cockpit.format(_("Progress of $0"), job.Name || job.Id)}
      data-progress={value}
    />
  );
}

// One row; memoized so that a progress tick of one job renders only that job's row.
const JobRow = memo(function JobRow({ job, now, onAction, rowIndex, isSelected, onSelect }) {
  const name = job.Name || shortId(job.Id);
  const items = [];
  if (isActive(job)) {
    if (job.State === "stopping")
      items.push({ title: _("Stop now…"), itemKey: "stop", onClick: () => onAction("stop", job, true) });
    else items.push({ title: _("Stop…"), itemKey: "stop", onClick: () => onAction("stop", job, false) });
    items.push({ title: _("Stop and delete…"), itemKey: "stop-delete", onClick: () => onAction("delete", job, true) });
  }
  if (job.State === "cancelled" || job.State === "failed")
    items.push({ title: _("Resume…"), itemKey: "resume", onClick: () => onAction("resume", job) });
  if (isFinished(job)) items.push({ title: _("Delete…"), itemKey: "delete", onClick: () => onAction("delete", job) });
  return (
    <Tr data-job-id={job.Id} data-job-name={job.Name} data-state={job.State}>
      <Td select={{ rowIndex, onSelect: (_e, selected) => onSelect(job.path, selected), isSelected }} />
      <Td dataLabel={_("Name")}>
        <div>{name}</div>
        <div className="repvisor-id repvisor-muted">
          {shortId(job.Id)}
          {job.Runs > 1 && <span className="repvisor-runs">{cockpit.format(_("run $0"), job.Runs)}</span>}
        </div>
      </Td>
      <Td dataLabel={_("State")}>
        <StateLabel job={job} />
      </Td>
      <Td dataLabel={_("Phase")} className="repvisor-phase">
        {job.Phase || <span className="repvisor-muted">{job.StatusText || "—"}</span>}
      </Td>
      <Td dataLabel={_("Progress")}>
        <JobProgress job={job} />
      </Td>
      <Td dataLabel={_("Created")}>
        <Tooltip
          content={
            <div className="repvisor-times">
              <div>{cockpit.format(_("Created $0"), formatExact(job.CreatedUSec))}</div>
              {job.StartedUSec > 0 && <div>{cockpit.format(_("Started $0"), formatExact(job.StartedUSec))}</div>}
              {job.FinishedUSec > 0 && <div>{cockpit.format(_("Finished $0"), formatExact(job.FinishedUSec))}</div>}
            </div>
          }
        >
          <span tabIndex={0} className="repvisor-created">
            {formatAgo(job.CreatedUSec, now)}
          </span>
        </Tooltip>
      </Td>
      <Td isActionCell>
        <ActionsColumn
          items={items.length ? items : [{ title: _("No actions while cleaning up"), itemKey: "none", isDisabled: true }]}
        />
      </Td>
    </Tr>
  );
});

function StateFilter({ selected, onChange }) {
  const [open, setOpen] = useState(false);
  return (
    <Select
      variant={SelectVariant.checkbox}
      aria-label={_("Filter by state")}
      toggleId="state-filter"
      placeholderText={_("State")}
      isOpen={open}
      onToggle={setOpen}
      selections={selected}
      onSelect={(_ev, value) =>
        onChange(selected.includes(value) ? selected.filter((s) => s !== value) : [...selected, value])
      }
    >
      {STATES.map((s) => (
        <SelectOption key={s} value={s} inputId={`state-filter-${s}`}>
          {stateText(s)}
        </SelectOption>
      ))}
    </Select>
  );
}

function Unreachable({ problem, onRetry }) {
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

function Loading() {
  return (
    <div id="loading" aria-busy="true">
      <span className="pf-screen-reader">{_("Loading jobs…")}</span>
      {[0, 1, 2, 3].map((i) => (
        <Skeleton key={i} height="2.5rem" className="repvisor-skeleton-row" screenreaderText={_("Loading jobs…")} />
      ))}
    </div>
  );
}

// Fixed widths: a progress tick never moves the columns (nor the menu under the pointer).
const COLUMNS = [
  { key: "name", width: 20, title: () => _("Name"), sort: (j) => (j.Name || j.Id || "").toLowerCase() },
  { key: "state", width: 15, title: () => _("State"), sort: (j) => STATES.indexOf(j.State) },
  { key: "phase", width: 10, title: () => _("Phase") },
  { key: "progress", width: 35, title: () => _("Progress"), sort: (j) => (typeof j.Progress === "number" ? j.Progress : -1) },
  { key: "created", width: 15, title: () => _("Created"), sort: (j) => j.CreatedUSec || 0 },
];

export function App() {
  const [model, setModel] = useState({ status: "loading", jobs: new Map(), problem: "" });
  const store = useMemo(() => new JobStore(setModel), []);
  useEffect(() => {
    store.connect();
    return () => store.dispose();
  }, [store]);

  const now = useNow();
  const [states, setStates] = useState([]);
  const [search, setSearch] = useState("");
  const [sort, setSort] = useState({ index: 4, direction: "desc" });
  const [dialog, setDialog] = useState(null);
  const [toasts, setToasts] = useState([]);

  const toast = useCallback((variant, title, body) => {
    const key = `${Date.now()}-${Math.random()}`;
    setToasts((t) => [...t, { key, variant, title, body }]);
  }, []);
  const dismiss = (key) => setToasts((t) => t.filter((x) => x.key !== key));
  const onAction = useCallback((kind, job, force) => setDialog({ kind, path: job.path, force }), []);
  // Selected rows (object paths), for Stop on several jobs at once.
  const [selected, setSelected] = useState(() => new Set());
  const onSelect = useCallback((path, isSelected) => setSelected((old) => {
    const next = new Set(old);
    if (isSelected) next.add(path);
    else next.delete(path);
    return next;
  }), []);

  const all = [...model.jobs.values()];
  const needle = search.trim().toLowerCase();
  const shown = all.filter(
    (j) =>
      (states.length === 0 || states.includes(j.State)) &&
      (!needle || (j.Name || "").toLowerCase().includes(needle) || (j.Id || "").toLowerCase().startsWith(needle)),
  );
  const col = COLUMNS[sort.index];
  if (col && col.sort) {
    const dir = sort.direction === "asc" ? 1 : -1;
    shown.sort((a, b) => {
      const x = col.sort(a);
      const y = col.sort(b);
      return x < y ? -dir : x > y ? dir : (a.Id < b.Id ? -1 : 1);
    });
  }
  const dialogJob = dialog && model.jobs.get(dialog.path);
  const chosen = shown.filter((j) => selected.has(j.path));
  const chosenActive = chosen.filter((j) => isActive(j));
  const allChosen = shown.length > 0 && chosen.length === shown.length;

  let body;
  if (model.status === "loading") body = <Loading />;
  else if (model.status === "unreachable") body = <Unreachable problem={model.problem} onRetry={() => store.connect()} />;
  else if (all.length === 0)
    body = (
      <EmptyState variant={EmptyStateVariant.large} id="no-jobs">
        <EmptyStateIcon icon={CubesIcon} />
        <Title headingLevel="h2" size="lg">
          {_("No replication jobs")}
        </Title>
        <EmptyStateBody>{_("Jobs submitted to repvisor (repvisorctl submit, or any D-Bus client) appear here as they start.")}</EmptyStateBody>
      </EmptyState>
    );
  else
    body = (
      <>
        <Toolbar id="jobs-toolbar" clearAllFilters={() => { setStates([]); setSearch(""); }}>
          <ToolbarContent>
            <ToolbarItem variant="search-filter">
              <SearchInput
                id="job-search"
                aria-label={_("Search by name or id")}
                placeholder={_("Search by name or id")}
                value={search}
                onChange={(value) => setSearch(typeof value === "string" ? value : value.target.value)}
                onClear={() => setSearch("")}
              />
            </ToolbarItem>
            <ToolbarItem>
              <StateFilter selected={states} onChange={setStates} />
            </ToolbarItem>
            <ToolbarItem>
              <Button
                id="bulk-stop"
                variant="secondary"
                isDisabled={chosenActive.length === 0}
                onClick={() => setDialog({ kind: "bulk-stop", paths: chosenActive.map((j) => j.path) })}
              >
                {chosenActive.length ? cockpit.format(_("Stop $0 selected…"), chosenActive.length) : _("Stop selected…")}
              </Button>
            </ToolbarItem>
            <ToolbarItem variant="pagination" id="job-count">
              {shown.length === all.length
                ? cockpit.format(cockpit.ngettext("$0 job", "$0 jobs", all.length), all.length)
                : cockpit.format(_("$0 of $1 jobs"), shown.length, all.length)}
            </ToolbarItem>
          </ToolbarContent>
        </Toolbar>
        {shown.length === 0 ? (
          <EmptyState variant={EmptyStateVariant.small} id="no-match">
            <EmptyStateIcon icon={SearchIcon} />
            <Title headingLevel="h2" size="lg">
              {_("No job matches")}
            </Title>
            <EmptyStatePrimary>
              <Button variant="link" onClick={() => { setStates([]); setSearch(""); }}>
                {_("Clear all filters")}
              </Button>
            </EmptyStatePrimary>
          </EmptyState>
        ) : (
          <TableComposable aria-label={_("Replication jobs")} variant="compact" id="jobs">
            <Thead>
              <Tr>
                <Th
                  select={{
                    onSelect: (_e, all) => setSelected(all ? new Set(shown.map((j) => j.path)) : new Set()),
                    isSelected: allChosen,
                  }}
                  aria-label={_("Select all")}
                />
                {COLUMNS.map((c, i) => (
                  <Th
                    key={c.key}
                    width={c.width}
                    sort={c.sort ? { sortBy: { index: sort.index + 1, direction: sort.direction }, onSort: (_e, index, direction) => setSort({ index: index - 1, direction }), columnIndex: i + 1 } : undefined}
                  >
                    {c.title()}
                  </Th>
                ))}
                <Th aria-label={_("Actions")} />
              </Tr>
            </Thead>
            <Tbody>
              {shown.map((j, i) => (
                <JobRow key={j.path} job={j} now={now} onAction={onAction} rowIndex={i} isSelected={selected.has(j.path)} onSelect={onSelect} />
              ))}
            </Tbody>
          </TableComposable>
        )}
      </>
    );

  return (
    <Page>
      <PageSection variant={PageSectionVariants.light}>
        <Title headingLevel="h1">{_("Replication jobs")}</Title>
      </PageSection>
      <PageSection>
        <Card id="jobs-card">
          <CardBody>{body}</CardBody>
        </Card>
      </PageSection>
      <AlertGroup isToast isLiveRegion id="toasts">
        {toasts.map((t) => (
          <Alert
            key={t.key}
            variant={t.variant}
            title={t.title}
            timeout={t.variant === "danger" ? false : 5000}
            onTimeout={() => dismiss(t.key)}
            actionClose={<AlertActionCloseButton onClose={() => dismiss(t.key)} />}
          >
            {t.body}
          </Alert>
        ))}
      </AlertGroup>
      {dialog && dialog.kind === "stop" && (
        <StopDialog job={dialogJob} force={dialog.force} store={store} toast={toast} onClose={() => setDialog(null)} />
      )}
      {dialog && dialog.kind === "bulk-stop" && (
        <StopDialog
          jobs={dialog.paths.map((p) => model.jobs.get(p)).filter(Boolean)}
          store={store}
          toast={toast}
          onClose={(done) => {
            if (done) setSelected(new Set());
            setDialog(null);
          }}
        />
      )}
      {dialog && dialog.kind === "resume" && (
        <ResumeDialog job={dialogJob} store={store} toast={toast} onClose={() => setDialog(null)} />
      )}
      {dialog && dialog.kind === "delete" && (
        <DeleteDialog job={dialogJob} force={dialog.force} store={store} toast={toast} onClose={() => setDialog(null)} />
      )}
    </Page>
  );
}
