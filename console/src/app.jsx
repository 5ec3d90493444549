// The page: the job list, or one job's detail page (cockpit.location #/job/<id>, so it can be
// linked and reloaded); the dialogs of the actions, the toasts, and whether the user may act.
import { useCallback, useEffect, useMemo, useState } from "react";
import { Alert, AlertActionCloseButton, AlertGroup, Card, CardBody, Page, PageSection, PageSectionVariants, Title } from "@patternfly/react-core";
import cockpit from "./cockpit.js";
import { JobStore } from "./jobs.js";
import { Access, mayFromTrail } from "./access.js";
import { JobList, INITIAL_VIEW } from "./list.jsx";
import { JobDetail } from "./detail.jsx";
import { DeleteDialog, ResumeDialog, RetryCleanupDialog, StopDialog } from "./dialogs.jsx";
import { BulkDeleteDialog } from "./bulk-delete.jsx";
import { useNow } from "./views.jsx";

const _ = cockpit.gettext;

// ["job", id] for a detail page, [] for the list.
function useLocation() {
  const [path, setPath] = useState(() => cockpit.location.path);
  useEffect(() => {
    const changed = () => setPath(cockpit.location.path);
    cockpit.addEventListener("locationchanged", changed);
    return () => cockpit.removeEventListener("locationchanged", changed);
  }, []);
  return path;
}

// A detail page's job: by full id (its object path), else by name or unique id prefix (4+).
function findJob(model, key) {
  for (const j of model.jobs.values()) if (j.Id === key) return j.Id;
  const hits = [...model.jobs.values()].filter((j) => j.Name === key || (key.length >= 4 && (j.Id || "").startsWith(key)));
  return hits.length === 1 ? hits[0].Id : key;
}

export function App() {
  const [model, setModel] = useState({ status: "loading", jobs: new Map(), problem: "" });
  const store = useMemo(() => new JobStore(setModel), []);
  const [access, setAccess] = useState({ may: null, group: "", source: "" });
  const guard = useMemo(() => new Access(setAccess), []);
  useEffect(() => {
    store.onAccess = (err) => guard.learn(err);
    store.connect();
    // The daemon's own decision, read from the trail (see access.js): the newest entries first,
    // then, failing a submitted entry among them, the newest job's whole trail.
    guard.start(() =>
      store.events({ limit: 1000 }).then((rows) => {
        const may = mayFromTrail(rows);
        if (may !== null) return may;
        const newest = [...store.state.jobs.values()].sort((a, b) => (b.CreatedUSec || 0) - (a.CreatedUSec || 0))[0];
        return newest ? store.events({ job: newest.Id }).then(mayFromTrail) : null;
      }),
    );
    return () => {
      store.dispose();
      guard.dispose();
    };
  }, [store, guard]);
  // Asked again when the list (re)loads, and when jobs come while nothing is known yet.
  const unknownWithJobs = access.may === null ? model.jobs.size : -1;
  useEffect(() => {
    if (model.status === "ready") guard.recheck();
  }, [model.status, unknownWithJobs, guard]);

  const location = useLocation();
  const now = useNow();
  const [view, setView] = useState(INITIAL_VIEW);
  const [dialog, setDialog] = useState(null);
  const [toasts, setToasts] = useState([]);
  // Bumped whenever a dialog closes: the detail page reads its trail again (a refused request
  // leaves an entry without changing the job).
  const [trailTick, setTrailTick] = useState(0);

  const toast = useCallback((variant, title, body) => {
    const key = `${Date.now()}-${Math.random()}`;
    setToasts((t) => [...t, { key, variant, title, body }]);
  }, []);
  const dismiss = (key) => setToasts((t) => t.filter((x) => x.key !== key));
  const onAction = useCallback((kind, job, force) => setDialog({ kind, path: job.path, force }), []);
  const onBulk = useCallback((kind, paths) => setDialog({ kind, paths }), []);
  const close = (done) => {
    setDialog(null);
    setTrailTick((n) => n + 1);
    // A job deleted from its own page: back to the list (the toast says it went). Remembered, so
    // that the page does not take it for a deletion by someone else when the signal comes later.
    if (done && dialog && dialog.kind === "delete") {
      store.deletedHere.add(dialog.path);
      if (location[0] === "job") cockpit.location.go([]);
    }
  };

  const onDetail = location[0] === "job" && location[1];
  const dialogJob = dialog && dialog.path && model.jobs.get(dialog.path);
  const deselect = (paths) =>
    setView((v) => {
      const selected = new Set(v.selected);
      for (const p of paths) selected.delete(p);
      return { ...v, selected };
    });

  return (
    <Page>
      {onDetail ? (
        <JobDetail id={findJob(model, location[1])} model={model} store={store} access={access} onAction={onAction}
          toast={toast} busy={!!dialog} trailTick={trailTick} />
      ) : (
        <>
          <PageSection variant={PageSectionVariants.light}>
            <Title headingLevel="h1">{_("Replication jobs")}</Title>
          </PageSection>
          <PageSection>
            <Card id="jobs-card" data-may={String(access.may)}>
              <CardBody>
                <JobList model={model} store={store} now={now} access={access} view={view} setView={setView}
                  onAction={onAction} onBulk={onBulk} />
              </CardBody>
            </Card>
          </PageSection>
        </>
      )}
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
        <StopDialog job={dialogJob} force={dialog.force} store={store} toast={toast} onClose={close} />
      )}
      {dialog && dialog.kind === "bulk-stop" && (
        <StopDialog
          jobs={dialog.paths.map((p) => model.jobs.get(p)).filter(Boolean)}
          store={store}
          toast={toast}
          onClose={(done) => {
            if (done) deselect(dialog.paths);
            close(false);
          }}
        />
      )}
      {dialog && dialog.kind === "bulk-delete" && (
        <BulkDeleteDialog
          jobs={dialog.paths.map((p) => model.jobs.get(p)).filter(Boolean)}
          live={(p) => model.jobs.get(p)}
          store={store}
          toast={toast}
          onClose={(deleted) => {
            deselect(deleted);
            close(false);
          }}
        />
      )}
      {dialog && dialog.kind === "resume" && <ResumeDialog job={dialogJob} store={store} toast={toast} onClose={close} />}
      {dialog && dialog.kind === "cleanup" && <RetryCleanupDialog job={dialogJob} store={store} toast={toast} onClose={close} />}
      {dialog && dialog.kind === "delete" && (
        <DeleteDialog job={dialogJob} force={dialog.force} store={store} toast={toast} onClose={close} />
      )}
    </Page>
  );
}
