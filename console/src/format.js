// Formatting of sizes and times for the job list.
import cockpit from "./cockpit.js";

const _ = cockpit.gettext;

// Bytes in binary units: 0 B, 512 B, 1.5 KiB, 37.2 MiB, 4.00 GiB.
export function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${v} B`;
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

// "just now", "42 s ago", "3 min ago", "5 h ago", "2 days ago" from a CLOCK_REALTIME µs timestamp.
export function formatAgo(usec, nowMs) {
  if (!usec) return "";
  const s = Math.max(0, Math.round((nowMs - usec / 1000) / 1000));
  if (s < 5) return _("just now");
  if (s < 60) return cockpit.format(_("$0 s ago"), s);
  const m = Math.floor(s / 60);
  if (m < 60) return cockpit.format(_("$0 min ago"), m);
  const h = Math.floor(m / 60);
  if (h < 48) return cockpit.format(_("$0 h ago"), h);
  return cockpit.format(_("$0 days ago"), Math.floor(h / 24));
}

// The exact local time, for tooltips: "2026-12-07 21:58:03".
export function formatExact(usec) {
  if (!usec) return "";
  const d = new Date(usec / 1000);
  const p = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function shortId(id) {
  return (id || "").slice(0, 8);
}

// "10 min", "1 min 30 s", "2 h 5 min", "45 s", "250 ms" from µs.
export function formatDuration(usec) {
  const ms = Math.round((Number(usec) || 0) / 1000);
  if (ms < 1000) return cockpit.format(_("$0 ms"), ms);
  let s = Math.round(ms / 1000);
  const parts = [];
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h) parts.push(cockpit.format(_("$0 h"), h));
  if (m) parts.push(cockpit.format(_("$0 min"), m));
  if (s && !h) parts.push(cockpit.format(_("$0 s"), s));
  return parts.join(" ");
}

// The clock time alone, for what happens today: "21:58:03".
export function formatClock(usec) {
  return formatExact(usec).slice(11);
}

const SIGNALS = {
  1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL",
  10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 17: "SIGCHLD",
  18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 24: "SIGXCPU", 25: "SIGXFSZ", 28: "SIGWINCH",
};

// "SIGTERM (15)"; a number Linux gives no usual name (real-time signals): "signal 40".
export function signalName(n) {
  return SIGNALS[n] ? `${SIGNALS[n]} (${n})` : cockpit.format(_("signal $0"), n);
}

// The user name of a uid, from the user database of the machine (getent, so LDAP and the like
// count too); cached. Resolves to "" when the uid has no name.
const users = new Map();
export function userName(uid) {
  if (!users.has(uid))
    users.set(
      uid,
      cockpit
        .spawn(["getent", "passwd", String(uid)], { err: "ignore" })
        .then((out) => out.split(":")[0] || "")
        .catch(() => ""),
    );
  return users.get(uid);
}

// UID_INVALID: the daemon acted on its own (its shutdown, its recovery after a restart).
export const NOBODY_ASKED = 4294967295;

// Shell-like quoting of argv for display: words with spaces or quotes in single quotes.
export function formatArgv(argv) {
  return (argv || []).map((a) => (/^[A-Za-z0-9_@%+=:,./{}-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}
