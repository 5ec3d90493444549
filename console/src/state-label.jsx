// A job's state as a PatternFly Label: colour and icon per state.
import { Label } from "@patternfly/react-core";
import {
  CheckCircleIcon, ExclamationCircleIcon, ExclamationTriangleIcon, HourglassHalfIcon, InProgressIcon,
  StopCircleIcon, SyncAltIcon,
} from "@patternfly/react-icons";
import cockpit from "./cockpit.js";

const _ = cockpit.gettext;

const LOOK = {
  pending: { color: "grey", icon: <HourglassHalfIcon />, text: () => _("Pending") },
  starting: { color: "gold", icon: <InProgressIcon />, text: () => _("Starting") },
  running: { color: "blue", icon: <SyncAltIcon />, text: () => _("Running") },
  stopping: { color: "gold", icon: <InProgressIcon />, text: () => _("Stopping…") },
  cleaning: { color: "gold", icon: <InProgressIcon />, text: () => _("Cleaning up") },
  completed: { color: "green", icon: <CheckCircleIcon />, text: () => _("Completed") },
  failed: { color: "red", icon: <ExclamationCircleIcon />, text: () => _("Failed") },
  cancelled: { color: "orange", icon: <StopCircleIcon />, text: () => _("Cancelled") },
};

export function stateText(state) {
  return LOOK[state] ? LOOK[state].text() : state;
}

export function StateLabel({ job }) {
  if (job.SubState === "unkillable") {
    const pids = (job.StuckPIDs || []).join(", ");
    return (
      <Label color="red" icon={<ExclamationTriangleIcon />} data-state="unkillable">
        {pids ? cockpit.format(_("Unkillable: PIDs $0"), pids) : _("Unkillable")}
      </Label>
    );
  }
  const look = LOOK[job.State] || { color: "grey", icon: null, text: () => job.State };
  return (
    <Label color={look.color} icon={look.icon} data-state={job.State}>
      {look.text()}
    </Label>
  );
}
