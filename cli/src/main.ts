import { artifacts, ARTIFACTS_USAGE } from "./commands/artifacts.ts";
import { logs, LOGS_USAGE } from "./commands/logs.ts";
import { up } from "./commands/up.ts";
import { run, RUN_USAGE } from "./commands/run.ts";
import { cancel, get, ls, watch } from "./commands/runs.ts";

const USAGE = `usage: corral <command> [options]

commands:
  up                 start PostgreSQL (embedded unless DATABASE_URL is set), the scheduler, the
                     control plane and the artifact service; Ctrl-C stops everything
  run                submit a run (see corral run --help); --wait follows it live
  watch RUN_ID       follow a run live until it ends
  cancel RUN_ID      cancel a run [--reason TEXT] [--grace 10s]
  ls                 list runs [--status S] [--repo URL] [--runtime R] [--limit N] [--json]
  get RUN_ID         show a run [--json]
  logs RUN_ID        print a run's log [--follow] [--attempt N]
  artifacts ls RUN_ID
  artifacts get RUN_ID NAME [-o FILE]
                     list a run's artifacts; download one (sha256 checked)

The commands other than up talk to CORRAL_SCHEDULER_URL (default http://127.0.0.1:8700); logs
and artifacts also to CORRAL_ARTIFACT_URL (default http://127.0.0.1:8702), with the token
\`corral up\` keeps in CORRAL_HOME (or CORRAL_ARTIFACT_SERVICE_TOKEN). \`corral help COMMAND\`
shows a command's options.
`;

const HELP: Record<string, string> = { run: RUN_USAGE, logs: LOGS_USAGE, artifacts: ARTIFACTS_USAGE };
const commands: Record<string, (args: string[]) => Promise<number>> = { up, run, watch, cancel, ls, get, logs, artifacts };
const [command, ...args] = process.argv.slice(2);
if (command === undefined || command === "help" || command === "--help" || command === "-h") {
  process.stdout.write((command === "help" && HELP[args[0] ?? ""]) || USAGE);
} else if (commands[command]) {
  try {
    process.exitCode = await commands[command](args);
  } catch (error) {
    // parseArgs rejects unknown flags with a clear message; anything else is a bug worth its stack.
    const message = (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS") ? (error as Error).message : String((error as Error).stack ?? error);
    process.stderr.write(`corral ${command}: ${message}\n`);
    process.exitCode = 2;
  }
} else {
  process.stderr.write(`corral: unknown command "${command}"\n\n${USAGE}`);
  process.exitCode = 2;
}
