import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { RunSchema, RunStatus, Runtime } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createSchedulerClient } from "../scheduler-client.ts";
import { followRun } from "../render/follow-run.ts";
import { errorText } from "../render/print-error.ts";
import { runDetails } from "../render/run-text.ts";

export const RUN_USAGE = `usage: corral run --repo URL --base REF --agent-command CMD [options]

  --repo URL            git repository (https://, ssh://, git@host:path, file://)
  --base REF            branch, tag or commit to start from
  --agent-command CMD   the coding agent's command; {prompt_file}, {repo_dir}, {run_id} are filled in
  --prompt TEXT         the task for the agent (or --prompt-file FILE)
  --validate NAME=CMD   a validation step; repeat for several, run in order
  --branch NAME         branch to push (default corral/<run id>)
  --runtime NAME        local (default), docker or kubernetes
  --timeout DURATION    whole-run budget, such as 30m or 2h
  --artifact GLOB       files to upload as artifacts; repeatable
  --env NAME=VALUE      environment for the agent and steps (no secrets); repeatable
  --request-id ID       idempotency key: resubmitting returns the same run
  --wait                follow the run live; exit 0 only if it completed
  --json                print the run as JSON (with --wait, the final run)
`;

const RUNTIMES: Record<string, Runtime> = { local: Runtime.LOCAL, docker: Runtime.DOCKER, kubernetes: Runtime.KUBERNETES };

export async function run(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: "string" },
      base: { type: "string" },
      "agent-command": { type: "string" },
      prompt: { type: "string" },
      "prompt-file": { type: "string" },
      validate: { type: "string", multiple: true },
      branch: { type: "string" },
      runtime: { type: "string" },
      timeout: { type: "string" },
      artifact: { type: "string", multiple: true },
      env: { type: "string", multiple: true },
      "request-id": { type: "string" },
      wait: { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  const problems: string[] = [];
  const pairs = (list: string[] | undefined, flag: string) =>
    (list ?? []).map((item) => {
      const at = item.indexOf("=");
      if (at <= 0) problems.push(`${flag} expects NAME=VALUE, got "${item}"`);
      return [item.slice(0, at), item.slice(at + 1)] as const;
    });
  const validationSteps = pairs(values.validate, "--validate").map(([name, command]) => ({ name, command }));
  const env = Object.fromEntries(pairs(values.env, "--env"));
  const runtime = values.runtime === undefined ? Runtime.UNSPECIFIED : RUNTIMES[values.runtime];
  if (runtime === undefined) problems.push(`--runtime must be local, docker or kubernetes, got "${values.runtime}"`);
  const timeoutMs = values.timeout === undefined ? undefined : parseDuration(values.timeout);
  if (timeoutMs === null) problems.push(`--timeout expects a duration such as 30m or 2h, got "${values.timeout}"`);
  let prompt = values.prompt ?? "";
  if (values["prompt-file"]) {
    try {
      prompt = readFileSync(values["prompt-file"], "utf8");
    } catch (error) {
      problems.push(`--prompt-file: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) {
    process.stderr.write(`corral run: ${problems.join("\ncorral run: ")}\n\n${RUN_USAGE}`);
    return 2;
  }

  const { client, url } = createSchedulerClient();
  try {
    const { run: submitted } = await client.submitRun({
      spec: {
        repositoryUrl: values.repo ?? "",
        baseRef: values.base ?? "",
        branch: values.branch ?? "",
        agent: { commandTemplate: values["agent-command"] ?? "", prompt },
        validationSteps,
        timeouts: timeoutMs ? { run: durationFromMs(timeoutMs) } : undefined,
        artifactGlobs: values.artifact ?? [],
        env,
      },
      runtime,
      requestId: values["request-id"] ?? "",
    });
    if (!values.wait) {
      process.stdout.write(values.json ? `${JSON.stringify(toJson(RunSchema, submitted!), null, 2)}\n` : `${submitted!.id}\n`);
      return 0;
    }
    const write = values.json ? (line: string) => process.stderr.write(`${line}\n`) : (line: string) => process.stdout.write(`${line}\n`);
    const abort = new AbortController();
    process.once("SIGINT", () => abort.abort());
    const final = await followRun(client, submitted!.id, write, { logs: true, signal: abort.signal });
    if (values.json) process.stdout.write(`${JSON.stringify(toJson(RunSchema, final), null, 2)}\n`);
    else process.stdout.write(`\n${runDetails(final)}\n`);
    return final.status === RunStatus.COMPLETED ? 0 : 1;
  } catch (error) {
    process.stderr.write(`corral run: ${errorText(error, url)}\n`);
    return 1;
  }
}

/** "90s", "30m", "2h", "1500ms"; null when malformed. */
export function parseDuration(text: string): number | null {
  const match = /^(\d+)(ms|s|m|h)$/.exec(text.trim());
  if (!match) return null;
  return Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as "ms" | "s" | "m" | "h"];
}
