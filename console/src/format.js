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
