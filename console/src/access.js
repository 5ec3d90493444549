// Whether the page's user may act on jobs (stop, delete, resume, clean up) or only read them, so
// that a read-only user sees the actions disabled with the reason rather than refused after a click.
//
// The daemon decides (root, or a member of its [bus] admin_group) and has no call that answers
// "may I?", so the page takes the surest signals it has, in this order:
//  1. Cockpit: uid 0, or administrative access switched on (cockpit.permission({ admin: true })):
//     the page's calls are then made as root (superuser "try"), which the daemon always allows.
//     Cockpit reloads the page when the switch changes.
//  2. The daemon's own decision, read without side effects: the `spec` detail of a `submitted`
//     audit entry is returned to root and admin-group members only (docs/dbus-api.md), by the very
//     rule that allows stopping. A trail with submitted entries, none with a spec: read-only.
//  3. The daemon's answer to an action: AccessDenied (which names the group) makes the page
//     read-only at once; a success makes it able.
// Until one of them has spoken, the actions stay enabled: the daemon refuses in plain words then.
import cockpit from "./cockpit.js";

const _ = cockpit.gettext;

// state: { may: true | false | null (not known yet), group: the admin group's name once the daemon
// named it, "" before, source: "cockpit" | "trail" | "answer" }
export class Access {
  constructor(onChange) {
    this.onChange = onChange;
    this.state = { may: null, group: "", source: "" };
    this.admin = null; // cockpit's word: true (root or administrative access), false, null (not yet)
    this.probing = false;
  }

  set(patch) {
    this.state = { ...this.state, ...patch };
    this.onChange(this.state);
  }

  // Cockpit's side; `probe` is called once it has answered "no" (and whenever the list reloads).
  start(probe) {
    this.probe = probe;
    this.permission = cockpit.permission({ admin: true });
    const update = () => {
      this.admin = this.permission.allowed;
      if (this.admin === true) this.set({ may: true, source: "cockpit" });
      else if (this.admin === false && this.state.source !== "answer") this.runProbe();
    };
    this.permission.addEventListener("changed", update);
    update();
  }

  dispose() {
    if (this.permission) this.permission.close();
  }

  // Asks again (the list was (re)loaded, or a job appeared while nothing was known).
  recheck() {
    if (this.admin === false && this.state.source !== "answer") this.runProbe();
  }

  runProbe() {
    if (this.probing || !this.probe) return;
    this.probing = true;
    this.probe()
      .then((may) => {
        if (may !== null && this.state.source !== "answer" && this.admin !== true) this.set({ may, source: "trail" });
      })
      .catch(() => {})
      .finally(() => {
        this.probing = false;
      });
  }

  // From an action's outcome: `err` is the daemon's AccessDenied, or null for a success.
  learn(err) {
    if (!err) {
      if (this.state.may !== true) this.set({ may: true, source: "answer" });
      return;
    }
    const m = /group '([^']+)'/.exec(err.message || "");
    this.set({ may: false, source: "answer", group: m ? m[1] : this.state.group });
  }
}

// From a trail (ListEvents rows): true when a submitted entry carries its spec (the daemon shows
// it to admins only), false when submitted entries are there without it, null when there are none.
export function mayFromTrail(rows) {
  const submitted = rows.filter((e) => e.type === "submitted");
  if (submitted.length === 0) return null;
  return submitted.some((e) => e.details && "spec" in e.details);
}

// Why an action is disabled, in plain words; `verb` as in "stop", "delete", "resume", "clean up".
export function deniedReason(access, verb) {
  const who = access.group
    ? cockpit.format(_("root and members of group '$0'"), access.group)
    : _("root and members of repvisor's admin group ([bus] admin_group, 'repvisor' unless configured otherwise)");
  return cockpit.format(
    _("You may only read jobs: only $0 may $1 jobs. Ask an administrator to add you to the group, or turn on administrative access."),
    who,
    verb,
  );
}
