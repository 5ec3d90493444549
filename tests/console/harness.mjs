// The console tests' world, all of it real: a private dbus-daemon configured like the system bus
// (deny by default, the shipped systemd/org.repvisor1.conf policy included), repvisord owning
// org.repvisor1 on it, cockpit-ws with a --local-session cockpit-bridge serving the built page
// from XDG_DATA_HOME/cockpit/repvisor, and Debian's Chromium driven by puppeteer-core.
import { execFile, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(ROOT, "console/package.json"));
const puppeteer = require("puppeteer-core");

export const BUILD = process.env.REPVISOR_BUILD_DIR || path.join(ROOT, "build");
export const REPVISORD = path.join(BUILD, "daemon/repvisord");
export const REPVISORCTL = path.join(BUILD, "ctl/repvisorctl");
export const DIST = path.join(ROOT, "console/dist");
export const SCREENSHOTS = path.join(BUILD, "console-screenshots");
const COCKPIT_WS = ["/usr/lib/cockpit/cockpit-ws", "/usr/libexec/cockpit-ws"].find((p) => fs.existsSync(p));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const run = promisify(execFile);

// The cgroup2 mount point, from /proc/self/mountinfo (never assumed).
export function cgroup2Mount() {
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const dash = line.indexOf(" - ");
    if (dash < 0 || line.slice(dash + 3).split(" ")[0] !== "cgroup2") continue;
    return line.slice(0, dash).split(" ")[4].replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
  }
  throw new Error("no cgroup2 mount in /proc/self/mountinfo");
}

// Resolves when `child` has exited (at once if it already has).
function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export class World {
  // options.volumes / options.bus / options.daemon: lines added to those tables of repvisord.toml;
  // options.extra: tables of its own after them ([templates.NAME], [logs]).
  constructor(name, options = {}) {
    this.name = name;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "repvisor-console-"));
    fs.chmodSync(this.dir, 0o755);
    this.busSocket = path.join(this.dir, "system_bus_socket");
    this.busAddress = `unix:path=${this.busSocket}`;
    this.stateDir = path.join(this.dir, "state");
    this.runtimeDir = path.join(this.dir, "run");
    this.volumes = path.join(this.dir, "volumes");
    fs.mkdirSync(this.volumes);
    const cg = "/" + path.basename(this.dir);
    this.cgroupFs = cgroup2Mount() + cg;
    this.config = path.join(this.dir, "repvisord.toml");
    this.cgroupRoot = cg;
    this.writeConfig(options);
    this.env = {
      ...process.env,
      DBUS_SYSTEM_BUS_ADDRESS: this.busAddress,
      DBUS_SESSION_BUS_ADDRESS: this.busAddress,
    };
    this.ctlPath = REPVISORCTL;
    this.daemon = null;
    this.ws = null;
    this.browser = null;
    this.shots = 0;
  }

  writeConfig({ volumes = "", bus = "", daemon = "", extra = "" } = {}) {
    this.options = { volumes, bus, daemon, extra };
    fs.writeFileSync(
      this.config,
      `[daemon]\nfinal_kill_timeout = "5s"\nshutdown_timeout = "20s"\ncgroup_root = "${this.cgroupRoot}"\n${daemon}\n` +
        `[volumes]\nroots = ["${this.volumes}"]\n${volumes}\n[bus]\nsystem = "yes"\n${bus}\n${extra}\n`,
    );
  }

  // The daemon reads its configuration again (SIGHUP); resolves once its log says it did,
  // followed with inotify (fs.watch), not by polling.
  async reload(options) {
    this.writeConfig({ ...this.options, ...options });
    const file = path.join(this.dir, "daemon.log");
    const count = () => (this.daemonLog().match(/configuration reloaded/g) || []).length;
    const before = count();
    const done = new Promise((resolve) => {
      const watcher = fs.watch(file, () => {
        if (count() > before) {
          watcher.close();
          resolve();
        }
      });
    });
    this.daemon.kill("SIGHUP");
    await done;
  }

  // The private system bus; --fork returns once it listens.
  startBus() {
    const conf = path.join(this.dir, "system.conf");
    fs.writeFileSync(
      conf,
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>${this.busAddress}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>${path.join(ROOT, "systemd/org.repvisor1.conf")}</include>
</busconfig>
`,
    );
    const out = execFileSync("dbus-daemon", [`--config-file=${conf}`, "--fork", "--print-pid", "--nosyslog"], {
      encoding: "utf8",
    });
    this.busPid = Number(out.trim());
  }

  // repvisord on that bus; resolves once it owns org.repvisor1 (gdbus wait follows the name).
  async startDaemon() {
    const log = fs.openSync(path.join(this.dir, "daemon.log"), "a");
    this.daemon = spawn(
      REPVISORD,
      ["--config", this.config, "--state-dir", this.stateDir, "--runtime-dir", this.runtimeDir],
      { env: this.env, stdio: ["ignore", log, log] },
    );
    fs.closeSync(log);
    const died = exited(this.daemon).then(() => {
      throw new Error(`repvisord exited at start-up:\n${this.daemonLog()}`);
    });
    await Promise.race([
      run("gdbus", ["wait", "--address", this.busAddress, "--timeout", "60", "org.repvisor1"], { env: this.env }),
      died,
    ]);
    died.catch(() => {});
  }

  daemonLog() {
    try {
      return fs.readFileSync(path.join(this.dir, "daemon.log"), "utf8");
    } catch {
      return "";
    }
  }

  // SIGTERM: the daemon stops its jobs and exits.
  async stopDaemon() {
    if (!this.daemon) return;
    const d = this.daemon;
    this.daemon = null;
    d.kill("SIGTERM");
    await exited(d);
  }

  // cockpit-ws on 127.0.0.1, given its listening socket (socket activation: LISTEN_FDS), so that it
  // accepts connections from the moment it is spawned; the page is found in XDG_DATA_HOME.
  // With `uid`, cockpit-ws and its bridge run as that user (setuid by spawn): the page then acts
  // as an unprivileged login would.
  async startCockpit({ uid, port = 0 } = {}) {
    const data = path.join(this.dir, "xdg-data");
    fs.mkdirSync(path.join(data, "cockpit"), { recursive: true });
    // A copy, not a link: a bridge running as another user must be able to read it wherever the
    // source tree is (a checkout under /root is not readable to nobody).
    if (!fs.existsSync(path.join(data, "cockpit/repvisor")))
      fs.cpSync(DIST, path.join(data, "cockpit/repvisor"), { recursive: true });
    const server = net.createServer();
    await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", resolve);
    });
    this.port = server.address().port;
    const log = fs.openSync(path.join(this.dir, "cockpit-ws.log"), "a");
    this.ws = spawn(
      "sh",
      ["-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --no-tls --local-session=cockpit-bridge', COCKPIT_WS],
      {
        env: { ...this.env, XDG_DATA_HOME: data, HOME: this.dir },
        stdio: ["ignore", log, log, server._handle.fd],
        ...(uid === undefined ? {} : { uid, gid: uid }),
        detached: true, // its own process group: the bridge it starts is stopped with it
      },
    );
    fs.closeSync(log);
    // Our copy of the socket is closed before anything connects: only cockpit-ws accepts.
    await new Promise((resolve) => server.close(resolve));
    this.url = `http://127.0.0.1:${this.port}/cockpit/@localhost/repvisor/index.html`;
  }

  async stopCockpit() {
    if (!this.ws) return;
    const ws = this.ws;
    this.ws = null;
    try {
      process.kill(-ws.pid, "SIGTERM");
    } catch {}
    await exited(ws);
  }

  async openPage() {
    this.browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"],
      defaultViewport: { width: 1280, height: 800 },
    });
    this.page = await this.browser.newPage();
    this.page.setDefaultTimeout(30000);
    this.pageErrors = [];
    this.page.on("pageerror", (e) => this.pageErrors.push(String(e)));
    await this.page.goto(this.url);
    return this.page;
  }

  // Everything up: bus, daemon (unless told not to), cockpit-ws, Chromium on the page.
  async start({ daemon = true, uid } = {}) {
    this.startBus();
    if (daemon) await this.startDaemon();
    await this.startCockpit({ uid });
    return this.openPage();
  }

  async screenshot(step) {
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
    const file = path.join(SCREENSHOTS, `${this.name}-${String(++this.shots).padStart(2, "0")}-${step}.png`);
    await this.page.screenshot({ path: file });
    return file;
  }

  async close() {
    if (this.browser) await this.browser.close().catch(() => {});
    await this.stopCockpit();
    await this.stopDaemon();
    if (this.busPid) {
      try {
        process.kill(this.busPid, "SIGTERM");
      } catch {}
    }
    try {
      fs.rmdirSync(this.cgroupFs);
    } catch {}
    if (!process.env.KEEP_TEST_DIRS) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  // repvisorctl on the daemon's private socket.
  async ctl(...args) {
    const { stdout } = await run(REPVISORCTL, ["--address", `unix:path=${this.runtimeDir}/private`, ...args], {
      env: this.env,
    });
    return stdout;
  }

  async busctl(...args) {
    const { stdout } = await run("busctl", ["--address=" + this.busAddress, "--json=short", "--", ...args], { env: this.env });
    return JSON.parse(stdout);
  }

  // A property of job `job` (name or id), read with busctl over the system bus as any client would.
  async prop(job, name) {
    const path = (await this.busctl("call", "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager", "GetJob", "s", job)).data[0];
    return (await this.busctl("get-property", "org.repvisor1", path, "org.repvisor1.Job", name)).data;
  }

  // ResourceDetails of a job as plain objects: [{kind, name, path, device, state, ...}].
  async resources(job) {
    return (await this.prop(job, "ResourceDetails")).map((d) =>
      Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.data])),
    );
  }

  // A job that reports what the test writes to its FIFO, one notify message a line, through
  // systemd-notify; a line "exit N" ends it with status N. Returns {id, fifo}.
  // With ignoreTerm the job ignores SIGTERM (a graceful stop leaves it stopping).
  async submitControlled(name, extra = [], ignoreTerm = false) {
    const fifo = path.join(this.dir, `${name}.fifo`);
    execFileSync("mkfifo", [fifo]);
    const script =
      (ignoreTerm ? "trap '' TERM; " : "") +
      'exec 3<>"$1"; while read -r line <&3; do case "$line" in "exit "*) exit "${line#exit }";; ' +
      '*) systemd-notify --pid=$$ $line;; esac; done';
    const out = await this.ctl("submit", "--name", name, ...extra, "--", "sh", "-c", script, "job", fifo);
    return { fifo, out };
  }

  tell(fifo, line) {
    fs.writeFileSync(fifo, line + "\n");
  }
}

// Waits until the row of job `name` is shown and matches `expect`: {state} (the row's data-state),
// {progress} (the bar's value), {text} (contained in the row's text), {absent: true} (no such row).
// Driven by the page's own DOM changes (waitForFunction polls on mutations), never by a sleep.
export async function waitRow(page, name, expect = {}) {
  await page.waitForFunction(
    (n, e) => {
      const row = document.querySelector(`tr[data-job-name="${n}"]`);
      if (e.absent) return !row;
      if (!row) return false;
      if (e.state !== undefined && row.dataset.state !== e.state) return false;
      if (e.progress !== undefined) {
        const bar = row.querySelector("[data-progress]");
        if (!bar || Number(bar.dataset.progress) !== e.progress) return false;
      }
      if (e.text !== undefined && !row.textContent.includes(e.text)) return false;
      return true;
    },
    { polling: "mutation" },
    name,
    expect,
  );
}

export async function rowText(page, name) {
  return page.$eval(`tr[data-job-name="${name}"]`, (e) => e.textContent);
}

// The text of the tooltip shown for `selector` once the pointer is on it (PatternFly puts tooltips
// at the end of the body).
export async function tooltipOf(page, selector) {
  await page.hover(selector);
  const handle = await page.waitForFunction(
    () => {
      const tips = [...document.querySelectorAll(".pf-c-tooltip")];
      return tips.length ? tips[tips.length - 1].textContent : false;
    },
    { polling: "mutation" },
  );
  const text = await handle.jsonValue();
  await page.mouse.move(0, 0);
  await page.waitForFunction(() => !document.querySelector(".pf-c-tooltip"), { polling: "mutation" });
  return text;
}
