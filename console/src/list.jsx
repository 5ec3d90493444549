// The job list (the landing view): one row per job, live from the daemon's signals, with a filter
// by state, a search by name or id, sorting, a per-row menu of the actions the job's state allows,
// and Stop or Delete on the selected rows. Each name links to the job's detail page.
import { memo, useCallback, useState } from "react";
import {
  Button, EmptyState, EmptyStateBody, EmptyStateIcon, EmptyStatePrimary, EmptyStateVariant, Pagination, SearchInput, Select,
  SelectOption, SelectVariant, Title, Toolbar, ToolbarContent, ToolbarItem, Tooltip,
} from "@patternfly/react-core";
import { ActionsColumn, TableComposable, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table";
import { CubesIcon, SearchIcon } from "@patternfly/react-icons";
import cockpit from "./cockpit.js";
import { STATES, isActive } from "./jobs.js";
import { jobActions, whyNotDeletable } from "./actions.js";
import { deniedReason, submitDeniedReason } from "./access.js";
import { StateLabel, stateText } from "./state-label.jsx";
import { formatAgo, formatExact, shortId } from "./format.js";
import { JobProgress, Loading, Unreachable } from "./views.jsx";

const _ = cockpit.gettext;

// One row; memoized so that a progress tick of one job renders only that job's row.
const JobRow = memo(function JobRow({ job, now, onAction, rowIndex, isSelected, onSelect, access }) {
  const name = job.Name || shortId(job.Id);
  const readOnly = access.may === false;
  const items = jobActions(job).map((a) => ({
    title: a.title,
    itemKey: a.key,
    onClick: () => onAction(a.kind, job, a.force),
    // Shown, not hidden, to a user who may only read: disabled, with the reason on hover/focus.
    ...(readOnly ? { isAriaDisabled: true, tooltip: deniedReason(access, a.verb) } : {}),
  }));
  return (
    <Tr data-job-id={job.Id} data-job-name={job.Name} data-state={job.State}>
      <Td select={{ rowIndex, onSelect: (_e, selected) => onSelect(job.path, selected), isSelected }} />
      <Td dataLabel={_("Name")}>
        <div>
          <a href={`#/job/${job.Id}`} className="repvisor-job-link">
            {name}
          </a>
        </div>
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

// A toolbar button acting on the selection: disabled when nothing selected fits, and for a user
// who may only read, disabled with the reason in a tooltip (aria-disabled keeps it focusable).
function BulkButton({ id, count, label, none, verb, access, onClick }) {
  const readOnly = access.may === false && count > 0;
  const button = (
    <Button
      id={id}
      variant="secondary"
      isDisabled={count === 0}
      isAriaDisabled={readOnly}
      onClick={onClick}
    >
      {count ? cockpit.format(label, count) : none}
    </Button>
  );
  return readOnly ? <Tooltip content={deniedReason(access, verb)}>{button}</Tooltip> : button;
}

// "Run job…": for those who may submit from templates; shown disabled, with why, to the others.
function RunButton({ access, onRun, variant = "primary" }) {
  const denied = access.maySubmit === false;
  const button = (
    <Button id="run-job" variant={variant} isAriaDisabled={denied} onClick={() => !denied && onRun()}>
      {_("Run job…")}
    </Button>
  );
  return denied ? <Tooltip content={submitDeniedReason(access)}>{button}</Tooltip> : button;
}

// Fixed widths: a progress tick never moves the columns (nor the menu under the pointer).
const COLUMNS = [
  { key: "name", width: 20, title: () => _("Name"), sort: (j) => (j.Name || j.Id || "").toLowerCase() },
  { key: "state", width: 15, title: () => _("State"), sort: (j) => STATES.indexOf(j.State) },
  { key: "phase", width: 10, title: () => _("Phase") },
  { key: "progress", width: 35, title: () => _("Progress"), sort: (j) => (typeof j.Progress === "number" ? j.Progress : -1) },
  { key: "created", width: 15, title: () => _("Created"), sort: (j) => j.CreatedUSec || 0 },
];

export const INITIAL_VIEW = { states: [], search: "", sort: { index: 4, direction: "desc" }, selected: new Set(), page: 1, perPage: 50 };

// Pages of rows: a table of 1,000 rows is slow to lay out again for each progress report (the
// bench in bench/console-responsiveness.mjs), and nobody reads 1,000 rows at once; filter, search
// and sort still cover every job.
const PER_PAGE = [20, 50, 100, 500].map((n) => ({ title: String(n), value: n }));

// `view` (filter, search, sort, selection) lives in the page, so it is kept while a job's detail
// page is open and is there again on the way back.
export function JobList({ model, store, now, access, view, setView, onAction, onBulk, onRun }) {
  const { states, search, sort, selected, perPage } = view;
  const patch = (p) => setView((v) => ({ ...v, ...p }));
  // Stable, so that the memoized rows do not render again for it.
  const onSelect = useCallback(
    (path, isSelected) =>
      setView((v) => {
        const next = new Set(v.selected);
        if (isSelected) next.add(path);
        else next.delete(path);
        return { ...v, selected: next };
      }),
    [setView],
  );

  if (model.status === "loading") return <Loading />;
  if (model.status === "unreachable") return <Unreachable problem={model.problem} onRetry={() => store.connect()} />;
  const all = [...model.jobs.values()];
  if (all.length === 0)
    return (
      <EmptyState variant={EmptyStateVariant.large} id="no-jobs">
        <EmptyStateIcon icon={CubesIcon} />
        <Title headingLevel="h2" size="lg">
          {_("No replication jobs")}
        </Title>
        <EmptyStateBody>{_("Jobs submitted to repvisor (from a template here, with repvisorctl submit, or by any D-Bus client) appear here as they start.")}</EmptyStateBody>
        <EmptyStatePrimary>
          <RunButton access={access} onRun={onRun} />
        </EmptyStatePrimary>
      </EmptyState>
    );

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
      return x < y ? -dir : x > y ? dir : a.Id < b.Id ? -1 : 1;
    });
  }
  const pages = Math.max(1, Math.ceil(shown.length / perPage));
  const page = Math.min(view.page, pages);
  const visible = shown.length > perPage ? shown.slice((page - 1) * perPage, page * perPage) : shown;
  const chosen = shown.filter((j) => selected.has(j.path));
  const chosenActive = chosen.filter((j) => isActive(j));
  const chosenDeletable = chosen.filter((j) => !whyNotDeletable(j));
  const allChosen = shown.length > 0 && chosen.length === shown.length;
  const clear = () => patch({ states: [], search: "", page: 1 });
  const paging = (variant) =>
    shown.length > PER_PAGE[0].value && (
      <Pagination id={`jobs-pages-${variant}`} variant={variant} itemCount={shown.length} perPage={perPage} page={page}
        perPageOptions={PER_PAGE} isCompact={variant === "top"} onSetPage={(_e, p) => patch({ page: p })}
        onPerPageSelect={(_e, n) => patch({ perPage: n, page: 1 })} titles={{ paginationTitle: _("Pages of jobs") }} />
    );

  return (
    <>
      <Toolbar id="jobs-toolbar" clearAllFilters={clear}>
        <ToolbarContent>
          <ToolbarItem variant="search-filter">
            <SearchInput
              id="job-search"
              aria-label={_("Search by name or id")}
              placeholder={_("Search by name or id")}
              value={search}
              onChange={(value) => patch({ search: typeof value === "string" ? value : value.target.value, page: 1 })}
              onClear={() => patch({ search: "", page: 1 })}
            />
          </ToolbarItem>
          <ToolbarItem>
            <StateFilter selected={states} onChange={(s) => patch({ states: s, page: 1 })} />
          </ToolbarItem>
          <ToolbarItem>
            <RunButton access={access} onRun={onRun} />
          </ToolbarItem>
          <ToolbarItem>
            <BulkButton id="bulk-stop" count={chosenActive.length} label={_("Stop $0 selected…")} none={_("Stop selected…")}
              verb={_("stop")} access={access} onClick={() => onBulk("bulk-stop", chosenActive.map((j) => j.path))} />
          </ToolbarItem>
          <ToolbarItem>
            <BulkButton id="bulk-delete" count={chosenDeletable.length ? chosen.length : 0} label={_("Delete $0 selected…")}
              none={_("Delete selected…")} verb={_("delete")} access={access}
              onClick={() => onBulk("bulk-delete", chosen.map((j) => j.path))} />
          </ToolbarItem>
          <ToolbarItem variant="pagination" id="job-count">
            {shown.length === all.length
              ? cockpit.format(cockpit.ngettext("$0 job", "$0 jobs", all.length), all.length)
              : cockpit.format(_("$0 of $1 jobs"), shown.length, all.length)}
          </ToolbarItem>
          {shown.length > PER_PAGE[0].value && <ToolbarItem variant="pagination">{paging("top")}</ToolbarItem>}
        </ToolbarContent>
      </Toolbar>
      {shown.length === 0 ? (
        <EmptyState variant={EmptyStateVariant.small} id="no-match">
          <EmptyStateIcon icon={SearchIcon} />
          <Title headingLevel="h2" size="lg">
            {_("No job matches")}
          </Title>
          <EmptyStatePrimary>
            <Button variant="link" onClick={clear}>
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
                  onSelect: (_e, on) => patch({ selected: on ? new Set(shown.map((j) => j.path)) : new Set() }),
                  isSelected: allChosen,
                }}
                aria-label={_("Select all")}
              />
              {COLUMNS.map((c, i) => (
                <Th
                  key={c.key}
                  width={c.width}
                  sort={c.sort ? { sortBy: { index: sort.index + 1, direction: sort.direction }, onSort: (_e, index, direction) => patch({ sort: { index: index - 1, direction } }), columnIndex: i + 1 } : undefined}
                >
                  {c.title()}
                </Th>
              ))}
              <Th aria-label={_("Actions")} />
            </Tr>
          </Thead>
          <Tbody>
            {visible.map((j, i) => (
              <JobRow key={j.path} job={j} now={now} onAction={onAction} rowIndex={i} isSelected={selected.has(j.path)}
                onSelect={onSelect} access={access} />
            ))}
          </Tbody>
        </TableComposable>
      )}
      {paging("bottom")}
    </>
  );
}
