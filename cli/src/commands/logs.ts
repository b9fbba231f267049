import { parseArgs } from "node:util";
import { Code } from "@connectrpc/connect";
import { RunStatus, type Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { createArtifactClient, NoServiceTokenError, type ArtifactAccess } from "../artifact-client.ts";
import { readArtifact } from "../artifacts/read-artifact.ts";
import { codeOf, CommandError, errorText } from "../render/print-error.ts";
import { BrokenPipeError, createSink } from "../render/stdout-sink.ts";
import { statusText } from "../render/run-text.ts";
import { createSchedulerClient } from "../scheduler-client.ts";

export const LOGS_USAGE = `usage: corral logs RUN_ID [--follow] [--attempt N] [--artifact-url URL]

Prints a run's log: the combined, time-stamped output of its steps, which the agent stores as
the artifact attempts/<N>/run.log while the run goes. The run's current attempt unless --attempt
names another.

  -f, --follow         keep printing as the log grows, until it is finished (the run's end)
  --attempt N          the log of attempt N
  --artifact-url URL   the artifact service (default CORRAL_ARTIFACT_URL, else http://127.0.0.1:8702)

The token is CORRAL_ARTIFACT_SERVICE_TOKEN, else the one \`corral up\` keeps in CORRAL_HOME.
`;

const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];
/** How often --follow looks at the run (has it started, has it ended). */
const RUN_POLL_MS = 1000;
/** After the run ends, how long --follow waits for the agent's last bytes and the log's finish. */
const SETTLE_MS = 5000;

/** `corral logs`: the run log artifact, whole or followed. Returns the exit code. */
export async function logs(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      follow: { type: "boolean", short: "f" },
      attempt: { type: "string" },
      "artifact-url": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(LOGS_USAGE);
    return 0;
  }
  const attempt = values.attempt === undefined ? undefined : Number(values.attempt);
  if (positionals.length !== 1 || (attempt !== undefined && !(Number.isSafeInteger(attempt) && attempt >= 1))) {
    process.stderr.write(`corral logs: ${positionals.length !== 1 ? "expects one RUN_ID" : `--attempt expects a number from 1, got "${values.attempt}"`}\n\n${LOGS_USAGE}`);
    return 2;
  }
  const runId = positionals[0]!;
  const abort = new AbortController();
  const onInterrupt = () => abort.abort();
  process.once("SIGINT", onInterrupt);
  try {
    const artifacts = await createArtifactClient(values["artifact-url"]);
    return await printLog({ runId, attempt, follow: values.follow === true, artifacts, signal: abort.signal });
  } catch (error) {
    if (error instanceof BrokenPipeError) return 0;
    if (abort.signal.aborted) return 130;
    if (error instanceof CommandError || error instanceof NoServiceTokenError) {
      process.stderr.write(`corral logs: ${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    process.off("SIGINT", onInterrupt);
  }
}

async function printLog(options: { runId: string; attempt: number | undefined; follow: boolean; artifacts: ArtifactAccess; signal: AbortSignal }): Promise<number> {
  const { runId, artifacts, signal } = options;
  const scheduler = createSchedulerClient();
  const getRun = async (): Promise<Run> => {
    try {
      return (await scheduler.client.getRun({ runId }, { signal })).run!;
    } catch (error) {
      if (codeOf(error) === Code.NotFound) throw new CommandError(`no run ${runId}`);
      throw new CommandError(errorText(error, scheduler.url));
    }
  };
  const artifactError = (error: unknown) => new CommandError(errorText(error, artifacts.url, "artifact service") + tokenHint(error, artifacts));

  let run = await getRun();
  if ((options.attempt ?? run.attempt) === 0) {
    if (!options.follow) throw new CommandError(`run ${runId} is ${statusText(run.status)} and has not started an attempt yet, so it has no log; --follow waits for it`);
    while (run.attempt === 0 && !TERMINAL.includes(run.status)) {
      await sleep(RUN_POLL_MS, signal);
      run = await getRun();
    }
    if (run.attempt === 0) throw new CommandError(`run ${runId} ${statusText(run.status)} without starting an attempt: it has no log`);
  }
  const attempt = options.attempt ?? run.attempt;
  if (attempt > run.attempt) throw new CommandError(`run ${runId} has no attempt ${attempt} (its latest is ${run.attempt})`);
  const name = `attempts/${attempt}/run.log`;
  const noLog = (ended: boolean) =>
    new CommandError(
      ended
        ? `run ${runId} has no log for attempt ${attempt}: its agent stored none (see \`corral get ${runId}\`)`
        : `run ${runId} has no log for attempt ${attempt} yet (its agent has not started it); --follow waits for it`,
    );
  const sink = createSink();

  if (!options.follow) {
    try {
      for await (const piece of readArtifact(artifacts.client, { runId, name }, { headers: artifacts.auth.headers, signal })) {
        if (piece.data) await sink.write(piece.data);
      }
      return 0;
    } catch (error) {
      if (codeOf(error) === Code.NotFound) throw noLog(TERMINAL.includes(run.status));
      if (error instanceof BrokenPipeError || signal.aborted) throw error;
      throw artifactError(error);
    }
  }

  // Follow. The run is watched beside the tail: once the run has ended, a log that brings no new
  // bytes for SETTLE_MS will not finish (an agent lost mid-run never finishes it), and the tail
  // stops with what there is. A log still streaming in is never cut, however long it takes.
  const tail = new AbortController();
  const stopTail = () => tail.abort();
  signal.addEventListener("abort", stopTail, { once: true });
  let runEnded = false;
  let lastProgress = performance.now();
  const watcher = (async () => {
    while (!tail.signal.aborted) {
      if (TERMINAL.includes(run.status)) {
        runEnded = true;
        lastProgress = Math.max(lastProgress, performance.now() - RUN_POLL_MS);
        for (let idle = performance.now() - lastProgress; idle < SETTLE_MS && !tail.signal.aborted; idle = performance.now() - lastProgress) {
          await sleep(SETTLE_MS - idle, tail.signal);
        }
        tail.abort();
        return;
      }
      await sleep(RUN_POLL_MS, tail.signal);
      if (!tail.signal.aborted) run = await getRun().catch(() => run);
    }
  })();

  let position = 0;
  let found = false;
  let complete = false;
  try {
    for (let failures = 0; !tail.signal.aborted; ) {
      try {
        for await (const piece of readArtifact(artifacts.client, { runId, name, offset: position, follow: true }, { headers: artifacts.auth.headers, signal: tail.signal })) {
          failures = 0;
          found = true;
          if (piece.artifact) continue;
          await sink.write(piece.data);
          position += piece.data.byteLength;
          lastProgress = performance.now();
        }
        complete = true;
        break;
      } catch (error) {
        if (error instanceof BrokenPipeError) throw error;
        if (tail.signal.aborted) break;
        const code = codeOf(error);
        if (code === Code.NotFound && !found) {
          // Not there yet: the agent opens the log when the attempt starts.
          if (runEnded) throw noLog(true);
          await sleep(RUN_POLL_MS, tail.signal);
          continue;
        }
        // A restart of the artifact service, or a draining replica: resume where the tail was.
        if ((code === Code.Unavailable || code === Code.Canceled) && ++failures <= 20) {
          await sleep(Math.min(5000, 200 * 2 ** failures), tail.signal);
          continue;
        }
        throw artifactError(error);
      }
    }
  } finally {
    signal.removeEventListener("abort", stopTail);
    tail.abort();
    await watcher.catch(() => {});
  }
  if (signal.aborted) throw new CommandError("interrupted");
  if (!found) throw noLog(true);
  if (!complete) {
    process.stderr.write(`corral logs: run ${runId} ${statusText(run.status)}, but its log was not finished (the agent may have been lost); printed the ${position} bytes stored\n`);
  }
  return 0;
}

/** For UNAUTHENTICATED: where the refused token came from. */
function tokenHint(error: unknown, artifacts: ArtifactAccess): string {
  return codeOf(error) === Code.Unauthenticated ? ` (the token from ${artifacts.tokenSource} was refused: is it the running stack's?)` : "";
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
