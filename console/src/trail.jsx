// A job's audit trail (Manager.ListEvents filtered to the job), newest first, kept up to date: the
// daemon sends no signal for a new entry, but every entry but a refused request comes with a change
// of the job (its state, sub-state, stop request, resources, cleanup...), so the trail is read
// again when one of those properties changes, or the job goes; never on a timer.
import { useEffect, useRef, useState } from "react";
import { EmptyState, EmptyStateBody, Title } from "@patternfly/react-core";
import { TableComposable, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table";
import cockpit from "./cockpit.js";
import { describeError } from "./jobs.js";
import { formatExact, userName } from "./format.js";

const _ = cockpit.gettext;

// The properties whose change comes with a new trail entry (progress reports come with none).
const TRAIL_PROPS = [
  "State", "SubState", "StopRequestedUSec", "StopDeadlineUSec", "StopMode", "CancelledUSec", "StartedUSec",
  "FinishedUSec", "MainPID", "Runs", "CleanupState", "CleanupError", "Resources", "ExitCode", "ExitSignal",
];

// rows: newest first, or null while the first read runs; error: why it could not be read.
// `job` is the live job (undefined once it is gone); `extra` changes when the page itself acted.
export function useTrail(store, id, job, extra) {
  const [trail, setTrail] = useState({ rows: null, error: "" });
  const signature = job ? JSON.stringify(TRAIL_PROPS.map((k) => job[k])) : "gone";
  // Each change starts a read; only the latest one's answer is shown (an older one may come later).
  const latest = useRef(0);
  useEffect(() => {
    const mine = ++latest.current;
    store
      .events({ job: id, limit: 100000 })
      .then((rows) => mine === latest.current && setTrail({ rows: rows.slice().reverse(), error: "" }))
      .catch((err) => mine === latest.current && setTrail((t) => ({ rows: t.rows || [], error: describeError(err, "read") })));
    return () => {
      latest.current++;
    };
  }, [store, id, signature, extra]);
  return trail;
}

// "root (uid 0)", once the name is known; "uid 1234" before or when it has none.
export function UserName({ uid }) {
  const [name, setName] = useState("");
  useEffect(() => {
    let alive = true;
    userName(uid).then((n) => alive && setName(n));
    return () => {
      alive = false;
    };
  }, [uid]);
  return <span data-uid={uid}>{name ? cockpit.format(_("$0 (uid $1)"), name, uid) : cockpit.format(_("uid $0"), uid)}</span>;
}

export function TrailTable({ trail }) {
  if (trail.rows === null) return <div className="repvisor-muted">{_("Reading the audit trail…")}</div>;
  if (trail.rows.length === 0)
    return (
      <EmptyState variant="xs" id="trail-empty">
        <Title headingLevel="h3" size="md">
          {_("No entries")}
        </Title>
        {trail.error && <EmptyStateBody>{trail.error}</EmptyStateBody>}
      </EmptyState>
    );
  return (
    <TableComposable aria-label={_("Audit trail")} variant="compact" id="trail">
      <Thead>
        <Tr>
          <Th width={15}>{_("Time")}</Th>
          <Th width={15}>{_("Event")}</Th>
          <Th width={50}>{_("What")}</Th>
          <Th width={20}>{_("By")}</Th>
        </Tr>
      </Thead>
      <Tbody>
        {trail.rows.map((e, i) => (
          <Tr key={`${e.ts}-${e.type}-${trail.rows.length - i}`} data-type={e.type}>
            <Td dataLabel={_("Time")}>{formatExact(e.ts)}</Td>
            <Td dataLabel={_("Event")}>{e.type}</Td>
            <Td dataLabel={_("What")} className="repvisor-wrap">
              {e.message}
            </Td>
            <Td dataLabel={_("By")}>
              {typeof e.details.uid === "number" ? (
                <>
                  <UserName uid={e.details.uid} />
                  {e.details.command && <span className="repvisor-muted"> · {e.details.command}</span>}
                </>
              ) : (
                <span className="repvisor-muted">{_("repvisord")}</span>
              )}
            </Td>
          </Tr>
        ))}
      </Tbody>
    </TableComposable>
  );
}
