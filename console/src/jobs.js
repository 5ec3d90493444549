// The job list, kept from org.repvisor1 on the system bus: loaded with Manager.List and each job's
// Properties.GetAll, then kept live by InterfacesAdded/InterfacesRemoved (the Manager's
// ObjectManager) and PropertiesChanged. No polling: after the first load only signals change it.
import cockpit from "./cockpit.js";

const _ = cockpit.gettext;

export const SERVICE = "org.repvisor1";
export const MANAGER_PATH = "/org/repvisor1";
export const MANAGER_IFACE = "org.repvisor1.Manager";
export const JOB_IFACE = "org.repvisor1.Job";

// A job's object path, from its full id (the daemon's rule: /org/repvisor1/job/<id>).
export function jobPath(id) {
  return `${MANAGER_PATH}/job/${id}`;
}

export const STATES = ["pending", "starting", "running", "stopping", "cleaning", "completed", "failed", "cancelled"];
export const ACTIVE_STATES = ["pending", "starting", "running", "stopping"];
export const FINISHED_STATES = ["completed", "failed", "cancelled"];

// {t, v} variants to plain values; ResourceDetails is an array of a{sv}, unwrapped too.
function unwrap(props) {
  const out = {};
  for (const [k, variant] of Object.entries(props)) {
    let v = variant && typeof variant === "object" && "v" in variant ? variant.v : variant;
    if (k === "ResourceDetails" && Array.isArray(v)) v = v.map((d) => unwrap(d));
    out[k] = v;
  }
  return out;
}

// status: "loading" | "ready" | "unreachable"; jobs: Map path -> properties (a new object per
// change, so that only the rows that changed render again).
export class JobStore {
  constructor(onChange) {
    this.onChange = onChange;
    this.client = null;
    this.subscriptions = [];
    this.generation = 0;
    this.deletedHere = new Set(); // paths of jobs this page deleted
    this.state = { status: "loading", jobs: new Map(), problem: "" };
  }

  set(patch) {
    this.state = { ...this.state, ...patch };
    this.onChange(this.state);
  }

  setJob(path, props, replace) {
    const jobs = new Map(this.state.jobs);
    const old = jobs.get(path);
    jobs.set(path, replace || !old ? { path, ...props } : { ...old, ...props });
    this.set({ jobs });
  }

  removeJob(path) {
    if (!this.state.jobs.has(path)) return;
    const jobs = new Map(this.state.jobs);
    jobs.delete(path);
    this.set({ jobs });
  }

  close() {
    this.generation++;
    for (const s of this.subscriptions) s.remove();
    this.subscriptions = [];
    if (this.client) this.client.close();
    this.client = null;
  }

  // Not reachable: the rows go (they would be stale), and the page waits for the daemon's return
  // (org.repvisor1 getting an owner on the bus), which reloads the list by itself.
  unreachable(problem) {
    this.close();
    this.set({ status: "unreachable", problem: problem || "", jobs: new Map() });
    this.watchName();
    if (this.ownerCame) this.connect();
  }

  // NameOwnerChanged for org.repvisor1 on the bus itself (a client for the name closes when the
  // name has no owner, so it cannot wait for one).
  watchName() {
    if (this.nameWatch) return;
    this.busClient = cockpit.dbus(null, { bus: "system" });
    this.nameWatch = this.busClient.subscribe(
      { name: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "NameOwnerChanged", arg0: SERVICE },
      (_p, _i, _s, [name, _old, owner]) => {
        if (name !== SERVICE || !owner) return;
        // During a load that is about to fail, remember it: the failure then loads again.
        if (this.state.status === "loading") this.ownerCame = true;
        else if (this.state.status === "unreachable") this.connect();
      },
    );
  }

  // Called when the page goes away.
  dispose() {
    this.close();
    if (this.nameWatch) this.nameWatch.remove();
    this.nameWatch = null;
  }

  // (Re)connects and loads every job; also what Retry does.
  connect() {
    this.close();
    const gen = this.generation;
    const current = () => gen === this.generation;
    this.ownerCame = false;
    this.set({ status: "loading", problem: "", jobs: new Map() });
    this.watchName();
    // superuser "try": with Cockpit's administrative access on, calls are made as root.
    const client = cockpit.dbus(SERVICE, { bus: "system", superuser: "try" });
    this.client = client;

    let loaded = false;
    client.addEventListener("owner", (_ev, owner) => {
      if (!current()) return;
      // The daemon left the bus (stopped, crashed): say so at once rather than show stale rows.
      if (owner === null && loaded) this.unreachable(_("repvisord left the system bus."));
    });
    client.addEventListener("close", (_ev, options) => {
      if (!current()) return;
      const problem = options && options.problem === "not-found"
        ? _("org.repvisor1 has no owner on the system bus.")
        : (options && (options.message || options.problem)) || "";
      this.unreachable(problem);
    });

    // Subscribed before List is called: a job added or changed meanwhile is seen either way.
    this.subscriptions.push(
      client.subscribe({ path: MANAGER_PATH, interface: "org.freedesktop.DBus.ObjectManager" }, (_p, _i, signal, args) => {
        if (!current()) return;
        if (signal === "InterfacesAdded") {
          const [path, ifaces] = args;
          if (ifaces[JOB_IFACE]) this.setJob(path, unwrap(ifaces[JOB_IFACE]), true);
        } else if (signal === "InterfacesRemoved") {
          const [path, ifaces] = args;
          if (ifaces.includes(JOB_IFACE)) this.removeJob(path);
        }
      }),
    );
    this.subscriptions.push(
      client.subscribe(
        { path_namespace: MANAGER_PATH, interface: "org.freedesktop.DBus.Properties", member: "PropertiesChanged" },
        (path, _i, _signal, args) => {
          if (!current()) return;
          const [iface, changed] = args;
          if (iface === JOB_IFACE && this.state.jobs.has(path)) this.setJob(path, unwrap(changed), false);
        },
      ),
    );

    client
      .call(MANAGER_PATH, MANAGER_IFACE, "List", [{}], { type: "a{sv}" })
      .then(([rows]) => {
        if (!current()) return;
        const jobs = new Map();
        for (const [id, name, state, phase, progress, created, finished, path] of rows)
          jobs.set(path, {
            path, Id: id, Name: name, State: state, Phase: phase, Progress: progress,
            CreatedUSec: created, FinishedUSec: finished, partial: true,
          });
        loaded = true;
        this.set({ status: "ready", jobs });
        for (const path of jobs.keys())
          client
            .call(path, "org.freedesktop.DBus.Properties", "GetAll", [JOB_IFACE])
            .then(([props]) => {
              // A job deleted meanwhile stays deleted (its InterfacesRemoved came first).
              if (current() && this.state.jobs.has(path)) this.setJob(path, { ...unwrap(props), partial: false }, false);
            })
            .catch(() => {});
      })
      .catch((err) => {
        if (current()) this.unreachable(err.message || String(err));
      });
  }

  // An action's outcome also tells whether this user may act: the daemon's AccessDenied says no
  // (and names its admin group), a success says yes. `onAccess` (set by the page) learns from it.
  // A native promise: cockpit's own do not turn a handler's throw into a rejection.
  learn(promise) {
    return Promise.resolve(promise).then(
      (value) => {
        if (this.onAccess) this.onAccess(null);
        return value;
      },
      (err) => {
        if (this.onAccess && isAccessDenied(err)) this.onAccess(err);
        throw err;
      },
    );
  }

  call(path, method, options) {
    const args = {};
    for (const [k, [t, v]] of Object.entries(options)) args[k] = { t, v };
    if (!this.client) return Promise.reject(new Error("not connected"));
    return this.learn(this.client.call(path, JOB_IFACE, method, [args], { type: "a{sv}" })).then(([reply]) => unwrap(reply));
  }

  // Job.Resume (a{sv}) -> o: the job's path, which stays the same.
  resume(path) {
    if (!this.client) return Promise.reject(new Error("not connected"));
    return this.learn(this.client.call(path, JOB_IFACE, "Resume", [{}], { type: "a{sv}" })).then(([object]) => object);
  }

  // Job.RetryCleanup(): answered once the teardown has run; CleanupFailed with the reason.
  retryCleanup(path) {
    if (!this.client) return Promise.reject(new Error("not connected"));
    return this.learn(this.client.call(path, JOB_IFACE, "RetryCleanup", []));
  }

  // Manager.ListEvents: the audit trail, oldest first. `job` may be the full id of a deleted job.
  events({ job, limit } = {}) {
    if (!this.client) return Promise.reject(new Error("not connected"));
    const filter = {};
    if (job) filter.job = { t: "s", v: job };
    if (limit) filter.limit = { t: "t", v: limit };
    return this.client
      .call(MANAGER_PATH, MANAGER_IFACE, "ListEvents", [filter], { type: "a{sv}" })
      .then(([rows]) => rows.map(([ts, jobId, type, message, details]) => ({ ts, job: jobId, type, message, details: unwrap(details) })));
  }
}

export function isAccessDenied(err) {
  return !!err && (err.name === "org.freedesktop.DBus.Error.AccessDenied" || err.problem === "access-denied");
}

export function isActive(job) {
  return ACTIVE_STATES.includes(job.State);
}

export function isFinished(job) {
  return FINISHED_STATES.includes(job.State);
}

// The daemon's errors in plain words; `verb` is what was attempted ("stop", "delete").
export function describeError(err, verb) {
  const name = (err && err.name) || "";
  const message = (err && err.message) || String(err);
  if (isAccessDenied(err)) {
    const m = /group '([^']+)'/.exec(message);
    return cockpit.format(
      _("You are not allowed to $0 jobs. Ask an administrator to add you to group '$1'."),
      verb,
      m ? m[1] : "repvisor",
    );
  }
  if (name === "org.repvisor1.Error.NoSuchJob") return _("This job no longer exists: it was deleted meanwhile.");
  if (name === "org.repvisor1.Error.JobActive") return _("The job is still active: stop it before deleting it.");
  if (name === "org.repvisor1.Error.CleanupFailed")
    return cockpit.format(_("The job's cleanup failed, so something of it may still be attached: $0"), message);
  if (name === "org.repvisor1.Error.NotResumable") return cockpit.format(_("This job cannot be resumed: $0"), message);
  if (name === "org.freedesktop.DBus.Error.ServiceUnknown" || name === "org.freedesktop.DBus.Error.NameHasNoOwner")
    return _("repvisor is not running or not reachable.");
  return message;
}
