import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ArtifactSchema, type Artifact } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import { createArtifactClient, NoServiceTokenError, type ArtifactAccess } from "../artifact-client.ts";
import { readArtifact } from "../artifacts/read-artifact.ts";
import { writeFileAtomically } from "../artifacts/write-file-atomically.ts";
import { codeOf, CommandError, errorText } from "../render/print-error.ts";
import { bytesText, createProgressBar } from "../render/progress-bar.ts";
import { ago } from "../render/run-text.ts";
import { BrokenPipeError, createSink } from "../render/stdout-sink.ts";
import { createSchedulerClient } from "../scheduler-client.ts";

export const ARTIFACTS_USAGE = `usage: corral artifacts ls RUN_ID [--prefix P] [--json]
       corral artifacts get RUN_ID NAME [-o FILE] [--partial] [--progress | --no-progress]

  ls    a run's artifacts: name, size, state, attempt, sha256, age
  get   one artifact to stdout, or with -o to FILE (written whole or not at all); its sha256 is
        checked after the download. A progress bar goes to stderr for downloads of 1 MiB or more
        when stderr is a terminal (--progress / --no-progress to choose). An artifact still
        being uploaded is refused unless --partial (then it has no digest to check).

  --artifact-url URL   the artifact service (default CORRAL_ARTIFACT_URL, else http://127.0.0.1:8702)

The token is CORRAL_ARTIFACT_SERVICE_TOKEN, else the one \`corral up\` keeps in CORRAL_HOME.
`;

/** Downloads at least this large get a progress bar on a terminal. */
const PROGRESS_MIN_BYTES = 1024 * 1024;

/** `corral artifacts ls|get`. Returns the exit code. */
export async function artifacts(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: "boolean" },
      prefix: { type: "string" },
      output: { type: "string", short: "o" },
      partial: { type: "boolean" },
      progress: { type: "boolean" },
      "no-progress": { type: "boolean" },
      "artifact-url": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [sub, runId, name, ...rest] = positionals;
  if (values.help) {
    process.stdout.write(ARTIFACTS_USAGE);
    return 0;
  }
  const usage = (problem: string) => {
    process.stderr.write(`corral artifacts: ${problem}\n\n${ARTIFACTS_USAGE}`);
    return 2;
  };
  if (sub === "ls" && (runId === undefined || name !== undefined)) return usage("ls expects one RUN_ID");
  if (sub === "get" && (name === undefined || rest.length > 0)) return usage("get expects RUN_ID and NAME");
  if (sub !== "ls" && sub !== "get") return usage(sub === undefined ? "expects ls or get" : `unknown subcommand "${sub}"`);
  if (values.progress && values["no-progress"]) return usage("--progress and --no-progress exclude each other");

  const abort = new AbortController();
  const onInterrupt = () => abort.abort();
  process.once("SIGINT", onInterrupt);
  try {
    const access = await createArtifactClient(values["artifact-url"]);
    if (sub === "ls") return await list(access, runId!, { prefix: values.prefix ?? "", json: values.json === true, signal: abort.signal });
    const progress = values.progress ? true : values["no-progress"] ? false : undefined;
    return await get(access, runId!, name!, { output: values.output, partial: values.partial === true, progress, signal: abort.signal });
  } catch (error) {
    if (error instanceof BrokenPipeError) return 0;
    if (abort.signal.aborted) return 130;
    if (error instanceof CommandError || error instanceof NoServiceTokenError) {
      process.stderr.write(`corral artifacts ${sub}: ${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    process.off("SIGINT", onInterrupt);
  }
}

async function list(access: ArtifactAccess, runId: string, options: { prefix: string; json: boolean; signal: AbortSignal }): Promise<number> {
  const found: Artifact[] = [];
  try {
    let pageToken = "";
    do {
      const page = await access.client.list({ runId, namePrefix: options.prefix, pageSize: 1000, pageToken }, { headers: access.auth.headers, signal: options.signal });
      found.push(...page.artifacts);
      pageToken = page.nextPageToken;
    } while (pageToken);
  } catch (error) {
    throw artifactError(error, access);
  }
  // The artifact service lists any run id; only the scheduler knows whether the run exists.
  if (found.length === 0) await requireRun(runId, options.signal);
  if (options.json) {
    process.stdout.write(`${JSON.stringify(found.map((a) => toJson(ArtifactSchema, a)), null, 2)}\n`);
    return 0;
  }
  if (found.length === 0) {
    process.stderr.write(`run ${runId} has no artifacts${options.prefix ? ` under "${options.prefix}"` : ""}\n`);
    return 0;
  }
  const rows = found.map((a) => [a.name, bytesText(Number(a.size)), a.complete ? "complete" : "uploading", String(a.attempt), a.sha256 ? a.sha256.slice(0, 12) : "-", ago(a.createdAt)]);
  const header = ["NAME", "SIZE", "STATE", "ATTEMPT", "SHA256", "CREATED"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()}\n`);
  return 0;
}

async function get(
  access: ArtifactAccess,
  runId: string,
  name: string,
  options: { output: string | undefined; partial: boolean; progress: boolean | undefined; signal: AbortSignal },
): Promise<number> {
  const toFile = options.output !== undefined && options.output !== "-";
  const hash = createHash("sha256");
  let artifact: Artifact | undefined;
  let received = 0;

  /** Streams the artifact into `write`, checking it on the way; throws before the end if anything is wrong. */
  const download = async (write: (data: Uint8Array) => Promise<void>): Promise<void> => {
    let bar: ReturnType<typeof createProgressBar> | undefined;
    try {
      for await (const piece of readArtifact(access.client, { runId, name }, { headers: access.auth.headers, signal: options.signal })) {
        if (piece.artifact) {
          artifact = piece.artifact;
          if (!artifact.complete && !options.partial) {
            throw new CommandError(
              `${name} is still being uploaded (${bytesText(Number(artifact.size))} so far), so it has no digest yet; ` +
                `wait for the run to end, take what there is with --partial, or follow a log with \`corral logs --follow\``,
            );
          }
          const wanted = options.progress ?? (process.stderr.isTTY === true && Number(artifact.size) >= PROGRESS_MIN_BYTES);
          if (wanted) bar = createProgressBar({ label: name, total: Number(artifact.size), write: (text) => process.stderr.write(text), columns: process.stderr.columns });
          continue;
        }
        hash.update(piece.data);
        received += piece.data.byteLength;
        await write(piece.data);
        bar?.advance(piece.data.byteLength);
      }
    } catch (error) {
      if (error instanceof CommandError || error instanceof BrokenPipeError || options.signal.aborted) throw error;
      if (codeOf(error) === Code.NotFound) {
        await requireRun(runId, options.signal);
        throw new CommandError(`run ${runId} has no artifact ${name} (\`corral artifacts ls ${runId}\` lists them)`);
      }
      throw artifactError(error, access);
    } finally {
      bar?.finish();
    }
    if (!artifact?.complete) return;
    const actual = hash.digest("hex");
    if (received !== Number(artifact.size) || actual !== artifact.sha256) {
      throw new CommandError(
        `the download of ${name} does not match the artifact (sha256 ${artifact.sha256}, ${artifact.size} bytes; got ${actual}, ${received} bytes)` +
          (toFile ? `; ${options.output} was not written` : ""),
      );
    }
  };

  if (toFile) {
    await writeFileAtomically(options.output!, download);
  } else {
    const sink = createSink();
    await download((data) => sink.write(data));
  }
  if (!artifact?.complete) process.stderr.write(`corral artifacts get: ${name} is unfinished: got the ${received} bytes uploaded so far, with no digest to check\n`);
  return 0;
}

/** Throws "no run" when the scheduler says so; says nothing when the scheduler cannot tell. */
async function requireRun(runId: string, signal: AbortSignal): Promise<void> {
  const scheduler = createSchedulerClient();
  try {
    await scheduler.client.getRun({ runId }, { signal });
  } catch (error) {
    if (codeOf(error) === Code.NotFound) throw new CommandError(`no run ${runId}`);
    if (codeOf(error) === Code.InvalidArgument) throw new CommandError(errorText(error, scheduler.url));
  }
}

function artifactError(error: unknown, access: ArtifactAccess): CommandError {
  const hint = codeOf(error) === Code.Unauthenticated ? ` (the token from ${access.tokenSource} was refused: is it the running stack's?)` : "";
  return new CommandError(errorText(error, access.url, "artifact service") + hint);
}
