// A job's log on its page: its last LAST_BYTES, then following it while the job runs, each line
// with the time it was written where the log's index tells it; earlier parts on request.
//
// Read with Job.ReadLog by positions that count every byte the job wrote, so that the place read
// up to survives the cuts that bound the log (a cut shows as a line saying how much was cut
// there). Followed without polling: the job's LogBytesWritten (sent with its PropertiesChanged, at
// most ten a second and sharing the budget of progress) says there is more; its end (State) lets
// a last line without a newline through. One read at a time; whole lines only.
import { useEffect, useLayoutEffect, useReducer, useRef } from "react";
import { Alert, Button, Card, CardBody, CardTitle } from "@patternfly/react-core";
import cockpit from "./cockpit.js";
import { describeError, isActive } from "./jobs.js";
import { formatBytes, formatClock, formatExact } from "./format.js";

const _ = cockpit.gettext;

const LAST_BYTES = 64 * 1024; // shown when the page opens, and added by each "Show earlier"
const READ_MAX = 256 * 1024; // one read while following
const KEEP_LINES = 5000; // the oldest go first (they can be shown again with "Show earlier")

const utf8 = new TextDecoder("utf-8");

// The lines of a chunk read at byte position `start`: { text, end (the position after its last
// byte), usec (when it was written by, if a stamp says) }.
function splitLines(bytes, start, stamps) {
  const out = [];
  let from = 0;
  let s = 0;
  while (from < bytes.length) {
    let nl = bytes.indexOf(10, from);
    const last = nl < 0 ? bytes.length : nl + 1;
    const end = start + last;
    while (s < stamps.length && stamps[s][0] < end) s++;
    if (nl < 0) nl = bytes.length;
    out.push({ text: utf8.decode(bytes.subarray(from, nl)), end, usec: s < stamps.length ? stamps[s][1] : null });
    from = last;
  }
  return out;
}

// Bytes cut from positions [from, to): those not in any kept range.
function cutWithin(from, to, kept) {
  let held = 0;
  for (const [a, b] of kept) held += Math.max(0, Math.min(b, to) - Math.max(a, from));
  return Math.max(0, to - from - held);
}

let serial = 0;
const line = (l) => ({ key: ++serial, ...l });
const gap = (bytes) => ({ key: ++serial, gap: bytes });

// The log's model, kept out of React's state (a mutable record rendered by a counter): appends
// come often and only this panel shows them.
function useLog(store, job) {
  const [, render] = useReducer((x) => x + 1, 0);
  const model = useRef(null);
  const path = job.path;
  if (!model.current || model.current.path !== path)
    model.current = { path, lines: [], first: null, next: null, end: 0, kept: [], reading: false, again: false, error: "", loaded: false, generation: 0 };
  const m = model.current;
  const dateUndated = (stamps) => {
    if (!stamps.length) return;
    for (let i = m.lines.length - 1; i >= 0 && m.lines[i].usec === null; i--) {
      const l = m.lines[i];
      if (l.gap) continue;
      const s = stamps.find((st) => st[0] >= l.end);
      if (s) l.usec = s[1];
    }
  };

  const append = (chunk, asked) => {
    if (m.next !== null && chunk.start > asked) {
      const cut = cutWithin(asked, chunk.start, chunk.kept);
      if (cut > 0) m.lines.push(gap(cut));
    }
    dateUndated(chunk.stamps);
    for (const l of splitLines(chunk.bytes, chunk.start, chunk.stamps)) m.lines.push(line(l));
    if (m.first === null) m.first = chunk.start;
    m.next = chunk.next;
    m.end = chunk.end;
    m.kept = chunk.kept;
    if (m.lines.length > KEEP_LINES) {
      m.lines.splice(0, m.lines.length - KEEP_LINES);
      const firstLine = m.lines.find((l) => !l.gap);
      if (firstLine) m.first = firstLine.end - utf8Length(firstLine.text) - 1;
      while (m.lines.length && m.lines[0].gap) m.lines.shift();
    }
  };

  // Reads on from m.next until a read brings nothing; one at a time.
  const pump = () => {
    if (m.reading) {
      m.again = true;
      return;
    }
    m.reading = true;
    m.again = false;
    const gen = m.generation;
    const first = m.next === null;
    const read = first
      ? store.readLog(path, LAST_BYTES, LAST_BYTES, { fromEnd: true, wholeLines: true })
      : store.readLog(path, m.next, READ_MAX, { wholeLines: true });
    const asked = m.next;
    read
      .then((chunk) => {
        if (gen !== m.generation) return;
        m.error = "";
        m.loaded = true;
        const brought = chunk.bytes.length > 0 || chunk.start > (asked ?? chunk.start) || first;
        append(chunk, asked);
        m.reading = false;
        render();
        // More is there than one read took: on at once. Else wait for the next sign.
        if (brought && chunk.next < chunk.end) m.again = true;
      })
      .catch((err) => {
        if (gen !== m.generation) return;
        m.reading = false;
        m.error = describeError(err, "read");
        render();
      })
      .finally(() => {
        if (gen === m.generation && m.again) pump();
      });
  };

  // The earlier part of the log, before the first line shown: the kept bytes just before it (a
  // line cut short by a cut is passed over: on to the range before it).
  const earlier = async () => {
    if (m.reading || m.first === null) return;
    m.reading = true;
    const gen = m.generation;
    try {
      for (;;) {
        const range = [...m.kept].reverse().find(([a]) => a < m.first);
        if (!range) break;
        const to = Math.min(m.first, range[1]);
        const from = Math.max(range[0], to - LAST_BYTES);
        const chunk = await store.readLog(path, from, to - from, { wholeLines: true });
        if (gen !== m.generation) return;
        const lines = splitLines(chunk.bytes, chunk.start, chunk.stamps).map(line);
        const between = cutWithin(chunk.next, m.first, chunk.kept);
        m.lines = [...lines, ...(between > 0 ? [gap(between)] : []), ...m.lines];
        m.kept = chunk.kept;
        m.first = lines.length ? chunk.start : from;
        if (lines.length) break;
      }
    } catch (err) {
      if (gen === m.generation) m.error = describeError(err, "read");
    } finally {
      if (gen === m.generation) {
        m.reading = false;
        render();
        if (m.again) pump();
      }
    }
  };

  // A new read for each sign of more: the log grew, or the job ended (a last line without a
  // newline is returned only then).
  const written = Number(job.LogBytesWritten) || 0;
  const ended = !isActive(job) && job.State !== "cleaning";
  useEffect(() => {
    if (job.State === "pending") return;
    if (m.next === null || written > m.next || ended) pump();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path, written, ended, job.State === "pending"]);
  useEffect(
    () => () => {
      m.generation++; // reads still under way are ignored once the page goes
    },
    [m],
  );
  const hasEarlier = m.first !== null && m.kept.some(([a]) => a < m.first);
  return { m, earlier, hasEarlier };
}

function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

export function LogPanel({ job, store }) {
  const { m, earlier, hasEarlier } = useLog(store, job);
  const box = useRef(null);
  const atBottom = useRef(true);
  // Stays at the end while the reader is there; leaves them where they are otherwise.
  useLayoutEffect(() => {
    const el = box.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  });
  const onScroll = () => {
    const el = box.current;
    if (el) atBottom.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
  };
  const following = isActive(job);
  const cut = Number(job.LogBytesCut) || 0;
  const lines = m.lines.filter((l) => !l.gap).length;

  let body;
  if (job.State === "pending") body = <div className="repvisor-muted" id="log-empty">{_("The job has not started yet.")}</div>;
  else if (!m.loaded && !m.error) body = <div className="repvisor-muted">{_("Reading the log…")}</div>;
  else if (m.loaded && m.lines.length === 0)
    body = <div className="repvisor-muted" id="log-empty">{following ? _("Nothing written yet.") : _("The job wrote nothing.")}</div>;
  else
    body = (
      <div ref={box} onScroll={onScroll} className="repvisor-log" id="job-log" role="log" aria-live="off" tabIndex={0}
        aria-label={_("Log")} data-next={m.next ?? ""} data-lines={lines}>
        {m.lines.map((l) =>
          l.gap ? (
            <div key={l.key} className="repvisor-log-gap" data-cut={l.gap}>
              {cockpit.format(_("… $0 cut here to keep the log within its bound …"), formatBytes(l.gap))}
            </div>
          ) : (
            <div key={l.key} className="repvisor-log-line" data-end={l.end}>
              <span className="repvisor-log-time" title={l.usec ? formatExact(l.usec) : _("not dated yet")}>
                {l.usec ? formatClock(l.usec) : ""}
              </span>
              <span className="repvisor-log-text">{l.text}</span>
            </div>
          ),
        )}
      </div>
    );

  return (
    <Card id="log-card" className="repvisor-space-below" isFlat data-following={String(following)}
      data-written={Number(job.LogBytesWritten) || 0}>
      <CardTitle>
        {_("Log")}{" "}
        <span className="repvisor-muted repvisor-log-status">
          {following ? _("following while the job runs") : m.loaded ? _("the job has ended") : ""}
        </span>
      </CardTitle>
      <CardBody>
        {m.error && <Alert isInline variant="danger" title={m.error} id="log-error" className="repvisor-space-below" />}
        {cut > 0 && (
          <div className="repvisor-muted repvisor-space-below" id="log-cut-note">
            {cockpit.format(_("$0 of this log were cut to keep it within $1 (kept: $2)."), formatBytes(cut), formatBytes(job.LogLimit), job.LogKeep)}
          </div>
        )}
        {hasEarlier && (
          <Button variant="link" isInline id="log-earlier" onClick={earlier} className="repvisor-space-below">
            {_("Show earlier lines")}
          </Button>
        )}
        {body}
      </CardBody>
    </Card>
  );
}
