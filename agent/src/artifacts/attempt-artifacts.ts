import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Interceptor } from "@connectrpc/connect";
import type { Tracer } from "@opentelemetry/api";
import { inSpan } from "@corral/plumbing/telemetry/trace-context.ts";
import { ArtifactUploadState } from "@corral/contract/corral/common/v1/run_event_pb.ts";
import { ArtifactState } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import type { ArtifactsContext, ArtifactsPort, AttemptArtifacts } from "../attempt/artifacts-port.ts";
import { createGit, createGitEnvironment } from "../pipeline/git.ts";
import { workspaceLayout } from "../pipeline/run-pipeline.ts";
import { createArtifactConnection } from "./artifact-client.ts";
import { collectArtifactFiles } from "./collect-artifact-files.ts";
import { createResumableUpload, uploadFile, UploadFailed, type ResumableUpload, type ResumableUploadOptions } from "./resumable-upload.ts";
import { createRunLog, type RunLog } from "./run-log.ts";

/** Warning codes of the run.warning events this module emits. */
export const ARTIFACT_WARNINGS = {
  globMatchedNothing: "artifact_glob_matched_nothing",
  uploadFailed: "artifact_upload_failed",
  noService: "artifact_service_unconfigured",
} as const;

export interface AttemptArtifactsSettings {
  /** The attempt's credential; the ArtifactService takes it as a bearer token. Never logged. */
  credential: string;
  /** How often the run log's new lines are sent while a step runs (and at every step end). */
  flushIntervalMs: number;
  /** How long the uploads at the end of an attempt may take together before they are given up. */
  uploadBudgetMs: number;
  /** The same for a cancelled attempt, which only finishes its run log: the scheduler is waiting. */
  cancelBudgetMs: number;
  retry?: ResumableUploadOptions["retry"];
  /** Client interceptors of the artifact connection (tracing: uploads carry the run's trace). */
  interceptors?: Interceptor[];
  /** A span per artifact upload; none without it. */
  tracer?: Tracer;
}

/**
 * The artifacts of an attempt, as the ArtifactsPort of the attempt runner.
 *
 * The run log (`attempts/<n>/run.log`) is one upload opened when the attempt starts and kept open
 * for its whole length: output lines go to a spool file beside the repository as they complete
 * (createRunLog), and what the spool holds is sent every `flushIntervalMs` and at every step
 * end, so a reader following the artifact sees the run as it goes. At the end, files matching
 * the spec's artifact globs (`attempts/<n>/files/<path>`) and the change's diff
 * (`attempts/<n>/change.diff`) are uploaded, then the run log is finished with its digest. A
 * cancelled attempt only finishes its log, within `cancelBudgetMs`.
 *
 * Every artifact gets run.artifact_status events (uploading, then uploaded, failed or skipped)
 * and counts toward the completion's artifact state: COMPLETE when all were stored, FAILED when
 * none was, PARTIAL otherwise. An artifact service that is down costs at most the budget and
 * a run.warning; it never fails the run.
 */
export function attemptArtifacts(settings: AttemptArtifactsSettings): ArtifactsPort {
  return (context) => startAttemptArtifacts(settings, context);
}

function startAttemptArtifacts(settings: AttemptArtifactsSettings, context: ArtifactsContext): AttemptArtifacts {
  const { assignment, workDir, emit } = context;
  const log = context.logger.child({ component: "artifacts" });
  const prefix = `attempts/${assignment.attempt}`;
  const logName = `${prefix}/run.log`;
  const results: { name: string; stored: boolean; why?: string }[] = [];

  const status = (name: string, state: ArtifactUploadState, extra: { sizeBytes?: number; sha256?: string; message?: string } = {}) =>
    emit({ case: "artifactStatus", value: { name, state, sizeBytes: BigInt(extra.sizeBytes ?? 0), sha256: extra.sha256 ?? "", message: extra.message ?? "" } });
  const failed = (name: string, why: string) => {
    log.warn({ name, why }, "artifact not stored");
    results.push({ name, stored: false, why });
    status(name, ArtifactUploadState.FAILED, { message: why });
  };

  if (!assignment.artifactServiceUrl) {
    emit({ case: "warning", value: { code: ARTIFACT_WARNINGS.noService, message: "the assignment names no artifact service; the run log and files are not stored" } });
    return { output() {}, stepFinished() {}, finish: async () => ArtifactState.FAILED };
  }
  const connection = createArtifactConnection({ url: assignment.artifactServiceUrl, credential: settings.credential, interceptors: settings.interceptors });
  const uploadOptions = { client: connection.client, runId: assignment.runId, logger: log, retry: settings.retry };

  // The run log: spool file and upload, opened now so that the log can be followed from the start.
  const spool = join(workDir, `run-${assignment.attempt}.log`);
  let runLog: RunLog | undefined;
  let logUpload: ResumableUpload | undefined;
  let logProblem: string | undefined;
  try {
    runLog = createRunLog({ path: spool });
    logUpload = createResumableUpload({ ...uploadOptions, name: logName, contentType: "text/plain; charset=utf-8", path: spool });
    status(logName, ArtifactUploadState.UPLOADING);
  } catch (error) {
    logProblem = `cannot write the run log's spool file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
    log.warn({ err: error, spool }, "run log not kept");
  }
  const send = () => logUpload?.extend(runLog!.size);
  const timer = setInterval(() => {
    // A line still open after a whole interval is sent as it is, rather than kept from readers.
    runLog?.flushOpenLines(new Date(Date.now() - settings.flushIntervalMs));
    send();
  }, settings.flushIntervalMs);
  timer.unref();

  const guarded = <A extends unknown[]>(what: string, f: (...args: A) => void) => (...args: A) => {
    try {
      f(...args);
    } catch (error) {
      // Losing the spool (disk full) loses the log, not the run; the events still carry the output.
      if (!logProblem) log.error({ err: error, what }, "writing the run log failed");
      logProblem ??= `writing the run log failed: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
    }
  };

  return {
    output: guarded("output", (chunk) => runLog?.write(chunk.step, chunk.stream, chunk.data)),
    stepFinished: guarded("step end", (step) => {
      runLog?.endStep(step);
      send();
    }),

    async finish(outcome) {
      clearInterval(timer);
      const cancelled = outcome.status === "cancelled";
      const deadline = performance.now() + (cancelled ? settings.cancelBudgetMs : settings.uploadBudgetMs);
      // An upload that starts after the budget ran out still gets a moment: a healthy service
      // answers in milliseconds, a dead one fails at once.
      const remaining = () => Math.max(100, Math.round(deadline - performance.now()));
      try {
        await finishRunLog(remaining);
        if (!cancelled) {
          await uploadFiles(remaining);
          if (outcome.baseCommit) await uploadDiff(outcome.baseCommit, remaining);
        }
      } catch (error) {
        // A bug or a local problem (the repository unreadable): what was not stored is lost.
        log.error({ err: error }, "uploading artifacts failed");
        results.push({ name: `${prefix}/files`, stored: false, why: `the agent could not collect its artifacts: ${(error as Error).message}` });
      } finally {
        logUpload?.abort("the attempt's uploads are over");
        connection.close();
      }
      const lost = results.filter((r) => !r.stored);
      if (lost.length > 0) {
        const list = lost.slice(0, 5).map((r) => `${r.name} (${r.why})`).join("; ");
        emit({
          case: "warning",
          value: { code: ARTIFACT_WARNINGS.uploadFailed, message: `${lost.length} of ${results.length} artifacts were not stored: ${list}${lost.length > 5 ? "; …" : ""}` },
        });
      }
      if (lost.length === 0) return ArtifactState.COMPLETE;
      return lost.length === results.length ? ArtifactState.FAILED : ArtifactState.PARTIAL;
    },
  };

  /** An artifact's upload in its span (name and size; the RPCs it makes are its children). */
  function traced(name: string, size: number | undefined, work: () => Promise<void>): Promise<void> {
    if (!settings.tracer) return work();
    const attributes = { "corral.artifact": name, ...(size === undefined ? {} : { "corral.artifact.size": size }) };
    return inSpan(settings.tracer, "corral.artifact.upload", { attributes }, work);
  }

  function finishRunLog(remaining: () => number): Promise<void> {
    return traced(logName, runLog?.size, () => finishRunLogNow(remaining));
  }

  async function finishRunLogNow(remaining: () => number): Promise<void> {
    if (!runLog || !logUpload || logProblem) {
      if (runLog && logProblem) logUpload?.abort(logProblem);
      failed(logName, logProblem ?? "the run log was not kept");
      return;
    }
    try {
      runLog.close();
      const stored = await logUpload.finish(runLog.size, remaining());
      results.push({ name: logName, stored: true });
      status(logName, ArtifactUploadState.UPLOADED, { sizeBytes: stored.size, sha256: stored.sha256 });
    } catch (error) {
      failed(logName, reasonOf(error));
    }
  }

  async function uploadFiles(remaining: () => number): Promise<void> {
    const globs = assignment.spec?.artifactGlobs ?? [];
    if (globs.length === 0) return;
    const { repoDir } = workspaceLayout(workDir);
    if (!(await stat(repoDir).then((s) => s.isDirectory(), () => false))) {
      for (const pattern of globs) emit({ case: "warning", value: { code: ARTIFACT_WARNINGS.globMatchedNothing, message: `artifact glob "${pattern}" matched nothing: the repository was never checked out` } });
      return;
    }
    const collected = await collectArtifactFiles(repoDir, globs);
    for (const pattern of collected.unmatched) {
      emit({ case: "warning", value: { code: ARTIFACT_WARNINGS.globMatchedNothing, message: `artifact glob "${pattern}" matched no file in the repository` } });
    }
    for (const skipped of collected.skipped) status(`${prefix}/files/${skipped.relative}`, ArtifactUploadState.SKIPPED, { message: skipped.reason });
    for (const file of collected.files) {
      await upload(`${prefix}/files/${file.relative}`, file.path, file.size, contentTypeOf(file.relative), remaining);
    }
  }

  async function uploadDiff(baseCommit: string, remaining: () => number): Promise<void> {
    const name = `${prefix}/change.diff`;
    const { repoDir, gitHome } = workspaceLayout(workDir);
    const file = join(workDir, `change-${assignment.attempt}.diff`);
    const git = createGit({ repoDir, env: createGitEnvironment(gitHome), graceMs: 1000 });
    const written = await git.writeDiff({ baseCommit, file, indexFile: join(workDir, `diff-index-${assignment.attempt}`), timeoutMs: remaining() });
    if (!written.ok) {
      failed(name, `could not compute the diff: ${written.failure.message ?? written.failure.outcome}`);
      return;
    }
    await upload(name, file, written.value.bytes, "text/x-diff", remaining);
  }

  function upload(name: string, path: string, size: number, contentType: string, remaining: () => number): Promise<void> {
    return traced(name, size, () => uploadNow(name, path, size, contentType, remaining));
  }

  async function uploadNow(name: string, path: string, size: number, contentType: string, remaining: () => number): Promise<void> {
    status(name, ArtifactUploadState.UPLOADING, { sizeBytes: 0 });
    try {
      const stored = await uploadFile({ ...uploadOptions, name, path, size, contentType, deadlineMs: remaining() });
      results.push({ name, stored: true });
      status(name, ArtifactUploadState.UPLOADED, { sizeBytes: stored.size, sha256: stored.sha256 });
    } catch (error) {
      failed(name, reasonOf(error));
    }
  }
}

function reasonOf(error: unknown): string {
  return error instanceof UploadFailed ? error.message : `unexpected error: ${(error as Error).message}`;
}

const TEXT = /\.(txt|log|md|json|xml|html|csv|diff|patch|ya?ml)$/i;

function contentTypeOf(path: string): string {
  if (/\.xml$/i.test(path)) return "application/xml";
  if (/\.json$/i.test(path)) return "application/json";
  if (/\.html$/i.test(path)) return "text/html";
  return TEXT.test(path) ? "text/plain" : "";
}
