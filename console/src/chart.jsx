// The job's progress over time while its page is open (the daemon keeps no history of progress):
// bytes done, or percent when the job reports no bytes, sampled from its PropertiesChanged, with
// the throughput over the last 10 s. A PatternFly chart (Victory underneath), like Cockpit's own.
import { useEffect, useRef, useState } from "react";
// From each component's own module: the package's index also brings ChartCursorTooltip, which
// imports a name victory-core 36.9 no longer has (the bundler refuses it; it is not used here).
import { Chart } from "@patternfly/react-charts/dist/esm/components/Chart/index.js";
import { ChartArea } from "@patternfly/react-charts/dist/esm/components/ChartArea/index.js";
import { ChartAxis } from "@patternfly/react-charts/dist/esm/components/ChartAxis/index.js";
import { ChartGroup } from "@patternfly/react-charts/dist/esm/components/ChartGroup/index.js";
import { ChartVoronoiContainer } from "@patternfly/react-charts/dist/esm/components/ChartVoronoiContainer/index.js";
import { getResizeObserver } from "@patternfly/react-core";
import cockpit from "./cockpit.js";
import { formatBytes } from "./format.js";

const _ = cockpit.gettext;
const KEEP = 3600; // samples: an hour of one a second, the most the daemon sends is 10 a second

// Appends a sample when the job's progress changes; a new job (another page) starts afresh.
function useSamples(job) {
  const samples = useRef({ id: null, list: [] });
  if (samples.current.id !== job.Id) samples.current = { id: job.Id, list: [] };
  const list = samples.current.list;
  const bytes = Number(job.BytesDone) || 0;
  const percent = typeof job.Progress === "number" && job.Progress >= 0 ? job.Progress : null;
  const last = list[list.length - 1];
  if (!last || last.bytes !== bytes || last.percent !== percent) {
    list.push({ t: Date.now(), bytes, percent });
    if (list.length > KEEP) list.splice(0, list.length - KEEP);
  }
  return list;
}

// Bytes a second over the samples of the last 10 s; null with fewer than two.
function throughput(list) {
  const last = list[list.length - 1];
  if (!last) return null;
  const from = list.find((s) => s.t >= last.t - 10000);
  if (!from || from === last || last.t === from.t) return null;
  return ((last.bytes - from.bytes) * 1000) / (last.t - from.t);
}

function useWidth(ref) {
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const measure = () => ref.current && setWidth(ref.current.clientWidth);
    measure();
    return getResizeObserver(ref.current, measure);
  }, [ref]);
  return width;
}

export function ProgressChart({ job }) {
  const list = useSamples(job);
  const box = useRef(null);
  const width = useWidth(box);
  const byBytes = list.some((s) => s.bytes > 0);
  const points = list
    .filter((s) => byBytes || s.percent !== null)
    .map((s) => ({ x: new Date(s.t), y: byBytes ? s.bytes : s.percent }));
  const rate = byBytes ? throughput(list) : null;
  const active = ["starting", "running", "stopping"].includes(job.State);

  return (
    <div ref={box} id="progress-chart" data-samples={points.length} className="repvisor-chart">
      <div className="repvisor-muted" id="throughput">
        {rate !== null && active
          ? cockpit.format(_("$0/s over the last 10 s"), formatBytes(Math.max(0, Math.round(rate))))
          : points.length < 2
            ? _("The chart fills in while this page is open and the job reports progress.")
            : null}
      </div>
      {points.length >= 2 && width > 0 && (
        <Chart
          ariaTitle={byBytes ? _("Bytes copied over time") : _("Progress over time")}
          ariaDesc={_("Since this page was opened")}
          containerComponent={
            <ChartVoronoiContainer
              labels={({ datum }) => `${datum.x.toLocaleTimeString()}: ${byBytes ? formatBytes(datum.y) : `${Math.round(datum.y)}%`}`}
              constrainToVisibleArea
            />
          }
          height={180}
          width={width}
          padding={{ top: 10, bottom: 40, left: 80, right: 20 }}
          scale={{ x: "time", y: "linear" }}
          domain={byBytes ? undefined : { y: [0, 100] }}
        >
          <ChartAxis tickFormat={(t) => new Date(t).toLocaleTimeString()} fixLabelOverlap />
          <ChartAxis dependentAxis showGrid tickFormat={(v) => (byBytes ? formatBytes(v) : `${v}%`)} />
          <ChartGroup>
            <ChartArea data={points} interpolation="stepAfter" />
          </ChartGroup>
        </Chart>
      )}
    </div>
  );
}
