// The job list, kept from org.repvisor1 on the system bus: loaded with the Manager's
// ObjectManager.GetManagedObjects (every job with its properties), then kept live by
// InterfacesAdded/InterfacesRemoved and PropertiesChanged. No polling: after the first load only
// signals change it.
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

// Throughput from BytesDone's changes: bytes a second over the last RATE_WINDOW ms of samples
// (the daemon keeps no history of progress; a row shows it once two samples are that far apart).
const RATE_WINDOW = 10000;
const RATE_MIN_SPAN = 1500;
const FLUSH_EVERY = 100;

// One job's BytesDone samples, oldest first: [t (ms), bytes]. Returns the rate, or null.
export function rateOf(samples, now, bytes) {
  const last = samples[samples.length - 1];
  if (!last || last[1] !== bytes) samples.push([now, bytes]);
  while (samples.length > 2 && samples[1][0] <= now - RATE_WINDOW) samples.shift();
  const first = samples[0];
  const newest = samples[samples.length - 1];
  if (newest[1] < first[1]) {
    samples.splice(0, samples.length - 1); // a resume started over: a new series
    return null;
  }
  const span = newest[0] - first[0];
  return span >= RATE_MIN_SPAN ? ((newest[1] - first[1]) * 1000) / span : null;
}

// status: "loading" | "ready" | "unreachable"; jobs: Map path -> properties (a new object per
// change, so that only the rows that changed render again).
//
// Signals come in bursts (1,000 jobs reporting progress are 1,000 PropertiesChanged a second):
// each is applied to the store at once, but the page is told at most every FLUSH_EVERY ms (at the
// next frame after that), with one new Map, so that a burst costs one render and the main thread
// stays free for clicks in between. The daemon sends a job's progress at most ten times a second:
// a page that shows it as often misses nothing.
export class JobStore {
  constructor(onChange) {
    this.onChange = onChange;
    this.client = null;
    this.subscriptions = [];
    this.generation = 0;
    this.deletedHere = new Set(); // paths of jobs this page deleted
    this.jobs = new Map(); // the live map; state.jobs is a copy made once per frame
    this.samples = new Map(); // path -> BytesDone samples (rateOf)
    this.frame = null;
    this.state = { status: "loading", jobs: new Map(), problem: "" };
  }

  set(patch) {
    if ("jobs" in patch) this.jobs = new Map(patch.jobs);
    this.state = { ...this.state, ...patch };
    this.cancelFrame();
    this.onChange(this.state);
  }

  // The page learns of job changes at the next frame (or at once when hidden: no frames come).
  touch() {
    if (this.frame !== null) return;
    const flush = () => {
      this.frame = null;
      this.flushed = performance.now();
      this.state = { ...this.state, jobs: new Map(this.jobs) };
      this.onChange(this.state);
    };
    const wait = Math.max(0, (this.flushed || 0) + FLUSH_EVERY - performance.now());
    if (document.hidden) {
      this.frame = setTimeout(flush, Math.max(wait, 250));
      this.frameKind = "timeout";
    } else if (wait > 0) {
      this.frame = setTimeout(() => {
        this.frame = requestAnimationFrame(flush);
        this.frameKind = "raf";
      }, wait);
      this.frameKind = "timeout";
    } else {
      this.frame = requestAnimationFrame(flush);
      this.frameKind = "raf";
    }
  }

  cancelFrame() {
    if (this.frame === null) return;
    if (this.frameKind === "raf") cancelAnimationFrame(this.frame);
    else clearTimeout(this.frame);
    this.frame = null;
  }

  setJob(path, props, replace) {
    const old = this.jobs.get(path);
    const job = replace || !old ? { path, ...props } : { ...old, ...props };
    if ("BytesDone" in props) {
      if (!this.samples.has(path)) this.samples.set(path, []);
      job.rate = ACTIVE_STATES.includes(job.State) ? rateOf(this.samples.get(path), Date.now(), Number(job.BytesDone) || 0) : null;
    } else if (old && !ACTIVE_STATES.includes(job.State)) {
      job.rate = null;
    }
    this.jobs.set(path, job);
    this.touch();
  }

  removeJob(path) {
    if (!this.jobs.has(path)) return;
    this.jobs.delete(path);
    this.samples.delete(path);
    this.touch();
  }

  // The job as it is now (the page's copy may be a frame behind).
  job(path) {
    return this.jobs.get(path);
  }

  close() {
    this.generation++;
    this.cancelFrame();
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

    // Subscribed before the load: a job added or changed meanwhile is seen either way.
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
          if (iface === JOB_IFACE && this.jobs.has(path)) this.setJob(path, unwrap(changed), false);
        },
      ),
    );

    // Every job with every property in one reply (the ObjectManager's): one message and one render
    // for 1,000 jobs, rather than a List and a GetAll per job.
    // The marks time the load from the page (bench/console-responsiveness.mjs reads them).
    performance.mark("repvisor-load-asked");
    client
      .call(MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", [])
      .then(([objects]) => {
        performance.mark("repvisor-load-answered");
        if (!current()) return;
        const jobs = new Map();
        for (const [path, ifaces] of Object.entries(objects))
          if (ifaces[JOB_IFACE]) jobs.set(path, { path, ...unwrap(ifaces[JOB_IFACE]) });
        loaded = true;
        this.set({ status: "ready", jobs });
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

  // Manager.GetAccess: what this page's user may do, as the daemon decides it (the calls go as
  // the same user: with Cockpit's administrative access on, as root).
  getAccess() {
    if (!this.client) return Promise.reject(new Error("not connected"));
    return this.client.call(MANAGER_PATH, MANAGER_IFACE, "GetAccess", []).then(([a]) => unwrap(a));
  }

  // Manager.ListTemplates: [{ name, description, argv, progress, stop_timeout_usec, params: [{ name,
  // pattern, secret, description, default? }] }].
  templates() {
    if (!this.client) return Promise.reject(new Error("not connected"));
    return this.client
      .call(MANAGER_PATH, MANAGER_IFACE, "ListTemplates", [])
      .then(([list]) => list.map((t) => {
        const out = unwrap(t);
        out.params = (out.params || []).map((p) => unwrap(p));
        return out;
      }));
  }

  // Manager.Submit from a template: resolves to the new job's object path.
  submitTemplate(template, params, name) {
    if (!this.client) return Promise.reject(new Error("not connected"));
    const spec = { template: { t: "s", v: template }, params: { t: "a{ss}", v: params } };
    if (name) spec.name = { t: "s", v: name };
    return this.learn(this.client.call(MANAGER_PATH, MANAGER_IFACE, "Submit", [spec], { type: "a{sv}" })).then(([, path]) => path);
  }

  // Job.ReadLog: { bytes (Uint8Array), start, next, end, kept [[from, to]], stamps [[position, usec]], cut, keep }.
  readLog(path, offset, maxBytes, options = {}) {
    if (!this.client) return Promise.reject(new Error("not connected"));
    const opts = {};
    if (options.fromEnd) opts.from_end = { t: "b", v: true };
    if (options.wholeLines) opts.whole_lines = { t: "b", v: true };
    if (options.sinceUsec) opts.since_usec = { t: "t", v: options.sinceUsec };
    return this.client
      .call(path, JOB_IFACE, "ReadLog", [offset, maxBytes, opts], { type: "tua{sv}" })
      .then(([data, next, info]) => {
        const i = unwrap(info);
        return { bytes: toBytes(data), next, start: i.start, end: i.end, kept: i.kept || [], stamps: i.stamps || [], cut: i.cut, keep: i.keep };
      });
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

// "ay" comes from cockpit.dbus as base64.
export function toBytes(data) {
  if (typeof data !== "string") return new Uint8Array(data || []);
  const bin = atob(data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
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
