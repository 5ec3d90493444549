// Brings up the console to try, until Ctrl-C: a private system bus, repvisord on it with a few
// sample jobs (one copying with live progress, one waiting, one completed with a volume, one
// failed), and cockpit-ws for them on 127.0.0.1. Run by tools/console-try.sh.
import fs from "node:fs";
import path from "node:path";
import { World } from "./harness.mjs";

const port = Number(process.env.REPVISOR_CONSOLE_PORT || 9091);
const w = new World("try");
let closing = false;
async function finish(code) {
  if (closing) return;
  closing = true;
  console.log("\nstopping: cockpit-ws, repvisord (it stops its jobs), the bus");
  await w.close();
  process.exit(code);
}
process.on("SIGINT", () => finish(0));
process.on("SIGTERM", () => finish(0));

try {
  w.startBus();
  await w.startDaemon();
  await w.startCockpit({ port });
  // A copy that reports its progress itself: 4 GiB in 200 steps of 1 s, then done.
  const copy =
    'total=4294967296; i=0; while [ $i -le 200 ]; do ' +
    'systemd-notify --pid=$$ PHASE=copy PROGRESS=$((i / 2)) BYTES_DONE=$((total / 200 * i)) BYTES_TOTAL=$total; ' +
    "i=$((i + 1)); sleep 1; done";
  await w.ctl("submit", "--name", "disk0-copy", "--stop-timeout", "30s", "--", "sh", "-c", copy);
  await w.ctl("submit", "--name", "disk1-copy", "--", "sh", "-c", copy.replace("sleep 1", "sleep 2"));
  await w.ctl("submit", "--name", "nightly-verify", "--", "sh", "-c", "systemd-notify --pid=$$ PHASE=verify PROGRESS=100; exit 0");
  await w.ctl("submit", "--name", "disk2-copy", "--", "sh", "-c", "echo 'source unreachable' >&2; exit 3");
  const spec = path.join(w.dir, "volume-job.toml");
  fs.writeFileSync(
    spec,
    `name = "vm7-volume"\nargv = ["sh", "-c", "echo replicated > \\"$1\\"", "job", "{volume.target}"]\n` +
      `[[resources]]\nkind = "file"\nname = "target"\npath = "${w.volumes}/vm7.img"\nsize = "64M"\n`,
  );
  await w.ctl("submit", "-F", spec);
  console.log(`repvisord runs on a private system bus (${w.busAddress}), state in ${w.dir}`);
  console.log(`repvisorctl:  ${path.relative(process.cwd(), w.ctlPath)} --address unix:path=${w.runtimeDir}/private list`);
  console.log(`\nThe console, in Cockpit's shell:  http://127.0.0.1:${w.port}/repvisor`);
  console.log(`The page alone:                   ${w.url}`);
  console.log("(from another machine: ssh -L " + `${w.port}:127.0.0.1:${w.port} this-host)`);
  console.log("\nCtrl-C stops everything.");
} catch (e) {
  console.error(String(e.stack || e));
  await finish(1);
}
