// The page: the job list, or one job's detail page (cockpit.location #/job/<id>, so it can be
// linked and reloaded); the dialogs of the actions, the toasts, and whether the user may act.
import { useCallback, useEffect, useMemo, useState } from "react";
import { Alert, AlertActionCloseButton, AlertGroup, Card, CardBody, Page, PageSection, PageSectionVariants, Title } from "@patternfly/react-core";
import cockpit from "./cockpit.js";
import { JobStore } from "./jobs.js";
import { Access } from "./access.js";
import { JobList, INITIAL_VIEW } from "./list.jsx";
import { JobDetail } from "./detail.jsx";
import { DeleteDialog, ResumeDialog, RetryCleanupDialog, StopDialog } from "./dialogs.jsx";
import { BulkDeleteDialog } from "./bulk-delete.jsx";
import { RunJobDialog } from "./submit.jsx";
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
  const [access, setAccess] = useState({ may: null, maySubmit: null, group: "", level: "" });
  const guard = useMemo(() => new Access(setAccess), []);
  useEffect(() => {
    store.onAccess = (err) => guard.learn(err);
    store.connect();
    guard.start(() => store.getAccess());
    return () => {
      store.dispose();
      guard.dispose();
    };
  }, [store, guard]);
  // The daemon is asked each time the list is (re)loaded: a daemon that came back may have been
  // reconfigured meanwhile.
  useEffect(() => {
    if (model.status === "ready") guard.refresh();
  }, [model.status, guard]);

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
  const onRun = useCallback(() => setDialog({ kind: "run" }), []);
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
                  onAction={onAction} onBulk={onBulk} onRun={onRun} />
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
      {dialog && dialog.kind === "run" && <RunJobDialog store={store} toast={toast} onClose={() => close(false)} />}
      {dialog && dialog.kind === "resume" && <ResumeDialog job={dialogJob} store={store} toast={toast} onClose={close} />}
      {dialog && dialog.kind === "cleanup" && <RetryCleanupDialog job={dialogJob} store={store} toast={toast} onClose={close} />}
      {dialog && dialog.kind === "delete" && (
        <DeleteDialog job={dialogJob} force={dialog.force} store={store} toast={toast} onClose={close} />
      )}
    </Page>
  );
}
