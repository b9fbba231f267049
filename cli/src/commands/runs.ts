import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { RunSchema, RunStatus, Runtime } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createSchedulerClient } from "../scheduler-client.ts";
import { followRun } from "../render/follow-run.ts";
import { errorText } from "../render/print-error.ts";
import { ago, runDetails, runtimeText, statusText } from "../render/run-text.ts";
import { parseDuration } from "./run.ts";

const STATUSES = Object.fromEntries(Object.entries(RunStatus).filter(([k]) => k !== "UNSPECIFIED").map(([k, v]) => [k.toLowerCase(), v as RunStatus]));
const RUNTIMES: Record<string, Runtime> = { local: Runtime.LOCAL, docker: Runtime.DOCKER, kubernetes: Runtime.KUBERNETES };

type Command = (args: string[]) => Promise<number>;

/** Runs a command body against the scheduler, turning service errors into a message and exit 1. */
async function withScheduler(name: string, body: (client: ReturnType<typeof createSchedulerClient>["client"]) => Promise<number>): Promise<number> {
  const { client, url } = createSchedulerClient();
  try {
    return await body(client);
  } catch (error) {
    process.stderr.write(`corral ${name}: ${errorText(error, url)}\n`);
    return 1;
  }
}

function runIdArg(name: string, positionals: string[]): string | undefined {
  if (positionals.length !== 1) {
    process.stderr.write(`usage: corral ${name} RUN_ID\n`);
    return undefined;
  }
  return positionals[0];
}

export const get: Command = async (args) => {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" } } });
  const runId = runIdArg("get", positionals);
  if (!runId) return 2;
  return withScheduler("get", async (client) => {
    const { run } = await client.getRun({ runId });
    process.stdout.write(values.json ? `${JSON.stringify(toJson(RunSchema, run!), null, 2)}\n` : `${runDetails(run!)}\n`);
    return 0;
  });
};

export const watch: Command = async (args) => {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" }, "no-logs": { type: "boolean" } } });
  const runId = runIdArg("watch", positionals);
  if (!runId) return 2;
  return withScheduler("watch", async (client) => {
    const abort = new AbortController();
    process.once("SIGINT", () => abort.abort());
    const write = (line: string) => (values.json ? process.stderr : process.stdout).write(`${line}\n`);
    const final = await followRun(client, runId, write, { logs: !values["no-logs"], signal: abort.signal });
    process.stdout.write(values.json ? `${JSON.stringify(toJson(RunSchema, final), null, 2)}\n` : `\n${runDetails(final)}\n`);
    return final.status === RunStatus.COMPLETED ? 0 : 1;
  });
};

export const cancel: Command = async (args) => {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { reason: { type: "string" }, grace: { type: "string" } } });
  const runId = runIdArg("cancel", positionals);
  if (!runId) return 2;
  const graceMs = values.grace === undefined ? undefined : parseDuration(values.grace);
  if (graceMs === null) {
    process.stderr.write(`corral cancel: --grace expects a duration such as 10s, got "${values.grace}"\n`);
    return 2;
  }
  return withScheduler("cancel", async (client) => {
    const { run } = await client.cancelRun({ runId, reason: values.reason ?? "cancelled from the CLI", grace: graceMs === undefined ? undefined : durationFromMs(graceMs) });
    process.stdout.write(`run ${run!.id} ${statusText(run!.status)}\n`);
    return 0;
  });
};

export const ls: Command = async (args) => {
  const { values } = parseArgs({
    args,
    options: { status: { type: "string", multiple: true }, repo: { type: "string" }, runtime: { type: "string" }, limit: { type: "string" }, json: { type: "boolean" } },
  });
  const statuses = (values.status ?? []).map((s) => STATUSES[s]);
  if (statuses.includes(undefined as never)) {
    process.stderr.write(`corral ls: --status must be one of ${Object.keys(STATUSES).join(", ")}\n`);
    return 2;
  }
  const runtime = values.runtime === undefined ? Runtime.UNSPECIFIED : RUNTIMES[values.runtime];
  const limit = values.limit === undefined ? 20 : Number(values.limit);
  if (runtime === undefined || !Number.isInteger(limit) || limit < 1 || limit > 500) {
    process.stderr.write("corral ls: --runtime must be local, docker or kubernetes; --limit 1 to 500\n");
    return 2;
  }
  return withScheduler("ls", async (client) => {
    const { runs } = await client.listRuns({ statuses: statuses as RunStatus[], repositoryUrl: values.repo ?? "", runtime, pageSize: limit });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(runs.map((r) => toJson(RunSchema, r)), null, 2)}\n`);
      return 0;
    }
    const rows = runs.map((r) => [r.id, statusText(r.status), runtimeText(r.runtime), ago(r.createdAt), r.spec?.repositoryUrl ?? ""]);
    const header = ["RUN", "STATUS", "RUNTIME", "CREATED", "REPOSITORY"];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
    for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()}\n`);
    return 0;
  });
};
