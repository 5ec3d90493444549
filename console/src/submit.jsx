// "Run job…": a job from one of the daemon's templates ([templates.NAME] of repvisord.toml, read
// with Manager.ListTemplates), a field per parameter, each checked against its pattern as the user
// types, and the daemon's own refusals put back on the field they are about, in plain words.
import { useEffect, useState } from "react";
import {
  Alert, Button, Form, FormGroup, FormSelect, FormSelectOption, Modal, ModalVariant, TextInput,
} from "@patternfly/react-core";
import cockpit from "./cockpit.js";
import { describeError } from "./jobs.js";
import { formatDuration } from "./format.js";

const _ = cockpit.gettext;

// The daemon's pattern, matched whole (std::regex, ECMAScript grammar: what JavaScript's is).
// null when JavaScript cannot read it: the daemon then decides alone.
function matcher(pattern) {
  try {
    return new RegExp(`^(?:${pattern})$`, "u");
  } catch {
    try {
      return new RegExp(`^(?:${pattern})$`);
    } catch {
      return null;
    }
  }
}

// The daemon's rule for names (util/id.cpp), so that a bad one is said before submitting.
export function nameProblem(name) {
  if (!name) return "";
  if (name.length > 64) return _("At most 64 characters.");
  if (/^[-.]/.test(name)) return _("It must not start with “-” or “.”.");
  const bad = /[^A-Za-z0-9_.@-]/u.exec(name);
  if (bad && /\s/u.test(bad[0])) return _("Spaces are not allowed: use letters, digits, “_”, “-”, “.” and “@”.");
  if (bad) return cockpit.format(_("“$0” is not allowed: use letters, digits, “_”, “-”, “.” and “@”."), bad[0]);
  if (name.length >= 4 && /^[0-9a-f]+$/.test(name)) return _("It must not look like a job id (only hex digits).");
  return "";
}

// An InvalidArgs of the daemon to the field it names: { field: "name" | "params.X" | "", text }.
export function fieldOfError(message) {
  let m = /^params\.([^:]+): (?:'.*'|its \(secret\) value) does not match the template's pattern '(.*)'$/s.exec(message);
  if (m) return { field: `params.${m[1]}`, text: cockpit.format(_("Not in the form this template accepts (pattern $0)."), m[2]) };
  m = /^params\.([^:]+): required by template/.exec(message);
  if (m) return { field: `params.${m[1]}`, text: _("Required: this template has no default for it.") };
  m = /^name: a job named '.*' already exists$/.exec(message);
  if (m) return { field: "name", text: _("A job with this name exists already: choose another name, or leave it empty.") };
  m = /^name: '.*': (.*)$/s.exec(message);
  if (m) return { field: "name", text: m[1].charAt(0).toUpperCase() + m[1].slice(1) + "." };
  return { field: "", text: message };
}

export function RunJobDialog({ store, toast, onClose }) {
  const [templates, setTemplates] = useState(null);
  const [loadError, setLoadError] = useState("");
  const [chosen, setChosen] = useState("");
  const [values, setValues] = useState({}); // template -> { param -> text }
  const [name, setName] = useState("");
  const [touched, setTouched] = useState({});
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [fieldErrors, setFieldErrors] = useState({});

  useEffect(() => {
    store
      .templates()
      .then((list) => {
        setTemplates(list);
        if (list.length) setChosen(list[0].name);
      })
      .catch((err) => setLoadError(describeError(err, "read")));
  }, [store]);

  const template = templates && templates.find((t) => t.name === chosen);
  const params = template ? template.params : [];
  const mine = values[chosen] || {};
  const valueOf = (p) => (p.name in mine ? mine[p.name] : p.default ?? "");
  const setValue = (p, v) => {
    setValues((all) => ({ ...all, [chosen]: { ...(all[chosen] || {}), [p.name]: v } }));
    setFieldErrors((e) => ({ ...e, [`params.${p.name}`]: "" }));
  };

  // What the page can tell before the daemon is asked.
  const localProblem = (p) => {
    const v = valueOf(p);
    if (v === "") return p.default === undefined ? _("Required.") : "";
    const re = matcher(p.pattern);
    if (re && !re.test(v)) return cockpit.format(_("Not in the form this template accepts (pattern $0)."), p.pattern);
    return "";
  };
  const problems = {};
  for (const p of params) problems[`params.${p.name}`] = localProblem(p);
  problems.name = nameProblem(name);
  const shown = (field) => fieldErrors[field] || (touched[field] ? problems[field] : "");
  const valid = !!template && Object.values(problems).every((x) => !x);

  const confirm = () => {
    if (busy || !template) return;
    setTouched(Object.fromEntries(Object.keys(problems).map((k) => [k, true])));
    if (!valid) return;
    setBusy(true);
    setError("");
    setFieldErrors({});
    const given = {};
    // A parameter left at its default is not sent: the daemon fills it in.
    for (const p of params) if (p.name in mine && mine[p.name] !== "") given[p.name] = mine[p.name];
    store
      .submitTemplate(template.name, given, name.trim())
      .then((path) => {
        const id = path.split("/").pop();
        toast("success", cockpit.format(_("“$0” submitted"), name.trim() || id.slice(0, 8)), _("It starts at once, or waits for a free slot."));
        onClose(true, id);
      })
      .catch((err) => {
        setBusy(false);
        if (err && err.name === "org.freedesktop.DBus.Error.InvalidArgs") {
          const { field, text } = fieldOfError(err.message || "");
          if (field) {
            setFieldErrors({ [field]: text });
            return;
          }
          setError(text);
          return;
        }
        const text = describeError(err, "run");
        setError(text);
        toast("danger", _("Could not run the job"), text);
      });
  };

  let body;
  if (loadError) body = <Alert isInline variant="danger" title={loadError} id="run-error" />;
  else if (templates === null) body = <div className="repvisor-muted">{_("Reading the templates…")}</div>;
  else if (templates.length === 0)
    body = (
      <Alert isInline variant="info" id="run-no-templates" title={_("repvisor has no job templates")}>
        {_("Templates are configured by an administrator in /etc/repvisor/repvisord.toml ([templates.NAME]); each fixes a command and the parameters it takes.")}
      </Alert>
    );
  else
    body = (
      <Form id="run-form" onSubmit={(e) => { e.preventDefault(); confirm(); }}>
        {error && <Alert isInline variant="danger" title={error} id="run-error" />}
        <FormGroup label={_("Template")} isRequired fieldId="run-template"
          helperText={template && template.description}>
          <FormSelect id="run-template" value={chosen} aria-label={_("Template")}
            onChange={(v) => { setChosen(typeof v === "string" ? v : v.target.value); setError(""); setFieldErrors({}); }}>
            {templates.map((t) => (
              <FormSelectOption key={t.name} value={t.name} label={t.name} />
            ))}
          </FormSelect>
        </FormGroup>
        {template && (
          <div className="repvisor-muted" id="run-command">
            <div>{cockpit.format(_("Runs: $0"), (template.argv || []).join(" "))}</div>
            <div>{cockpit.format(_("Stop timeout: $0"), formatDuration(template.stop_timeout_usec))}</div>
          </div>
        )}
        {params.map((p) => {
          const field = `params.${p.name}`;
          const problem = shown(field);
          const help = [p.description, p.default !== undefined && !p.secret ? cockpit.format(_("Default: $0"), p.default) : "",
            cockpit.format(_("Pattern: $0"), p.pattern)].filter(Boolean).join(" · ");
          return (
            <FormGroup key={`${chosen}-${p.name}`} label={p.name} fieldId={`run-param-${p.name}`}
              isRequired={p.default === undefined} helperText={help} helperTextInvalid={problem}
              validated={problem ? "error" : "default"} data-field={field}>
              <TextInput id={`run-param-${p.name}`} type={p.secret ? "password" : "text"} value={valueOf(p)}
                autoComplete={p.secret ? "new-password" : "off"} validated={problem ? "error" : "default"}
                onChange={(v) => setValue(p, typeof v === "string" ? v : v.target.value)}
                onBlur={() => setTouched((t) => ({ ...t, [field]: true }))} />
            </FormGroup>
          );
        })}
        <FormGroup label={_("Job name")} fieldId="run-name" data-field="name"
          helperText={_("Optional: letters, digits, “_”, “-”, “.”, “@”; at most 64.")}
          helperTextInvalid={shown("name")} validated={shown("name") ? "error" : "default"}>
          <TextInput id="run-name" value={name} validated={shown("name") ? "error" : "default"}
            onChange={(v) => { setName(typeof v === "string" ? v : v.target.value); setFieldErrors((e) => ({ ...e, name: "" })); }}
            onBlur={() => setTouched((t) => ({ ...t, name: true }))} />
        </FormGroup>
      </Form>
    );

  return (
    <Modal
      id="run-dialog"
      variant={ModalVariant.medium}
      title={_("Run a job from a template")}
      isOpen
      onClose={() => onClose(false)}
      actions={[
        <Button key="confirm" id="run-confirm" variant="primary" isLoading={busy} isDisabled={busy || !template}
          spinnerAriaValueText={_("Submitting…")} onClick={confirm}>
          {busy ? _("Submitting…") : _("Run")}
        </Button>,
        <Button key="cancel" id="run-cancel" variant="link" onClick={() => onClose(false)} isDisabled={busy}>
          {_("Cancel")}
        </Button>,
      ]}
    >
      {body}
    </Modal>
  );
}
