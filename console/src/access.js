// What the page's user may do, so that someone who may only read sees the actions disabled with
// the reason rather than refused after a click.
//
// The daemon says it: Manager.GetAccess answers for the caller as the daemon sees it, by the rules
// it enforces (root; members of [bus] admin_group; read-only for everyone else), and names the
// admin group. The page asks over its own connection, so with Cockpit's administrative access on
// (calls made as root, superuser "try") the answer is root's; Cockpit reloads the page when that
// switch changes. Rights can also change under an open page ([bus] admin_group is reloaded with
// SIGHUP, group memberships change), and the daemon sends no signal for that, so the page asks
// again when it (re)connects, when it becomes visible again, and after any AccessDenied; an
// AccessDenied also makes it read-only at once, before the new answer comes.
import cockpit from "./cockpit.js";

const _ = cockpit.gettext;

// state: { may: true | false | null (not known yet), maySubmit: the same for templates, group: the
// admin group's name ("" until known), level: "root" | "admin" | "read-only" | "" }
export class Access {
  constructor(onChange) {
    this.onChange = onChange;
    this.state = { may: null, maySubmit: null, group: "", level: "" };
    this.asking = null;
    this.again = false;
  }

  set(patch) {
    this.state = { ...this.state, ...patch };
    this.onChange(this.state);
  }

  // `ask` returns GetAccess's answer (a promise); asked now and whenever the page shows again.
  start(ask) {
    this.ask = ask;
    this.visible = () => {
      if (!document.hidden) this.refresh();
    };
    document.addEventListener("visibilitychange", this.visible);
  }

  dispose() {
    if (this.visible) document.removeEventListener("visibilitychange", this.visible);
  }

  // One question at a time; one more if something asked meanwhile (the answer may be stale).
  refresh() {
    if (!this.ask) return;
    if (this.asking) {
      this.again = true;
      return;
    }
    this.asking = this.ask()
      .then((a) => {
        this.set({
          may: !!a.may_stop,
          maySubmit: !!a.may_submit_templates,
          group: a.admin_group || this.state.group,
          level: a.level || "",
        });
      })
      .catch(() => {}) // not connected: asked again when the list is (re)loaded
      .finally(() => {
        this.asking = null;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
  }

  // From an action's outcome: `err` is the daemon's AccessDenied, or null for a success.
  learn(err) {
    if (!err) {
      if (this.state.may !== true) this.refresh();
      return;
    }
    const m = /group '([^']+)'/.exec(err.message || "");
    this.set({ may: false, maySubmit: false, group: m ? m[1] : this.state.group });
    this.refresh();
  }
}

function adminGroupWords(access) {
  return access.group
    ? cockpit.format(_("root and members of group '$0'"), access.group)
    : _("root and members of repvisor's admin group ([bus] admin_group)");
}

// Why an action is disabled, in plain words; `verb` as in "stop", "delete", "resume", "clean up".
export function deniedReason(access, verb) {
  return cockpit.format(
    _("You may only read jobs: only $0 may $1 jobs. Ask an administrator to add you to the group, or turn on administrative access."),
    adminGroupWords(access),
    verb,
  );
}

// Why "Run job…" is disabled for this user.
export function submitDeniedReason(access) {
  return cockpit.format(
    _("You may not run jobs: only $0 may run jobs from templates. Ask an administrator to add you to the group, or turn on administrative access."),
    adminGroupWords(access),
  );
}
