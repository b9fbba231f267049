import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { artifacts, downloadUrl } from "../api.ts";
import { errorText } from "../errors.ts";
import { formatBytes, isTerminal } from "../format.ts";
import { tailLog, type TailState } from "../live/tail-log.ts";

/** The page keeps about this much of the log's end; the whole log is a download away. */
const KEEP_CHARS = 256 * 1024;
/** A long log is read from this far before its end when the page opens. */
const START_BYTES = 256 * 1024;
/** After the run ends, how long the agent gets to finish its log before the page stops following. */
const SETTLE_MS = 5000;

interface Buffer {
  attempt: number;
  text: string;
  trimmed: boolean;
  skipPartialLine: boolean;
  offset: number;
  decoder: TextDecoder;
  done: "finished" | "unfinished" | undefined;
}

export interface LogTail {
  attempt: number;
  name: string;
  text: string;
  trimmed: boolean;
  bytes: number;
  state: TailState | undefined;
  done: "finished" | "unfinished" | undefined;
}

const emptyBuffer = (attempt: number): Buffer => ({ attempt, text: "", trimmed: false, skipPartialLine: false, offset: 0, decoder: new TextDecoder(), done: undefined });

/**
 * The run log of the run's current attempt (attempts/<n>/run.log), followed as the agent writes
 * it, resumed from the last byte after a broken stream or a hidden page.
 */
export function useLogTail(runId: string, run: Run | undefined, visible: boolean): LogTail {
  const attempt = run?.attempt ?? 0;
  const terminal = run ? isTerminal(run.status) : false;
  const name = `attempts/${attempt}/run.log`;
  const buffer = useRef<Buffer>(emptyBuffer(attempt));
  if (buffer.current.attempt !== attempt) buffer.current = emptyBuffer(attempt);
  const [state, setState] = useState<TailState | undefined>();
  const [, setTick] = useState(0);
  const tail = useRef<AbortController | undefined>(undefined);
  const pending = useRef(false);

  useEffect(() => {
    const b = buffer.current;
    if (!visible || attempt === 0 || b.done) return;
    const stop = new AbortController();
    tail.current = stop;
    const render = () => {
      if (pending.current) return;
      pending.current = true;
      setTimeout(() => {
        pending.current = false;
        setTick((t) => t + 1);
      }, 100);
    };
    void (async () => {
      if (b.offset === 0) {
        try {
          const { artifact } = await artifacts.stat({ runId, name }, { signal: stop.signal });
          if (artifact && Number(artifact.size) > START_BYTES) {
            b.offset = Number(artifact.size) - START_BYTES;
            b.trimmed = true;
            b.skipPartialLine = true;
          }
        } catch {
          // not there yet, or unreachable: the tail waits or retries
        }
      }
      await tailLog(artifacts, {
        runId,
        name,
        offset: b.offset,
        signal: stop.signal,
        onData(data) {
          b.offset += data.byteLength;
          let text = b.decoder.decode(data, { stream: true });
          if (b.skipPartialLine) {
            const newline = text.indexOf("\n");
            if (newline < 0) return;
            text = text.slice(newline + 1);
            b.skipPartialLine = false;
          }
          b.text += text;
          if (b.text.length > KEEP_CHARS * 1.5) {
            const cut = b.text.indexOf("\n", b.text.length - KEEP_CHARS);
            b.text = b.text.slice(cut < 0 ? b.text.length - KEEP_CHARS : cut + 1);
            b.trimmed = true;
          }
          render();
        },
        onState(s) {
          if (s.state === "finished") b.done = "finished";
          setState(s);
        },
      });
    })();
    return () => {
      stop.abort();
      if (tail.current === stop) tail.current = undefined;
    };
  }, [runId, attempt, visible]);

  // A run that ended whose log is not finished within the settle time never will be (a lost agent).
  useEffect(() => {
    if (!terminal || attempt === 0) return;
    const timer = setTimeout(() => {
      const b = buffer.current;
      if (b.done) return;
      b.done = "unfinished";
      tail.current?.abort();
      setTick((t) => t + 1);
    }, SETTLE_MS);
    return () => clearTimeout(timer);
  }, [terminal, attempt]);

  const b = buffer.current;
  return { attempt, name, text: b.text, trimmed: b.trimmed, bytes: b.offset, state, done: b.done };
}

export function LogSection({ runId, run, log }: { runId: string; run: Run; log: LogTail }) {
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  useLayoutEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [log.text, follow]);

  let status: string;
  if (run.attempt === 0) status = "The run has not started an attempt yet.";
  else if (log.done === "finished") status = `The log is complete (${formatBytes(log.bytes)}).`;
  else if (log.done === "unfinished") status = `The run ended without finishing its log; showing the ${formatBytes(log.bytes)} stored.`;
  else if (log.state?.state === "failed") status = `Cannot read the log: ${errorText(log.state.error)}`;
  else if (log.state?.state === "waiting" || log.state === undefined) status = "Waiting for the agent to start the log…";
  else if (log.state.state === "reconnecting") status = "Reconnecting to the log…";
  else status = `Following the log as the agent writes it (${formatBytes(log.bytes)} so far).`;

  return (
    <section aria-labelledby="log-h" class="panel">
      <div class="section-head">
        <h2 id="log-h">Log{run.attempt > 1 ? ` (attempt ${run.attempt})` : ""}</h2>
        <label class="inline">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Keep scrolled to the end
        </label>
        {run.attempt > 0 && (
          <a href={downloadUrl(runId, log.name)} download>
            Download the whole log
          </a>
        )}
      </div>
      <p class="muted small" data-log-state={log.done ?? log.state?.state ?? "waiting"}>
        {status}
        {log.trimmed && " Earlier output is not shown here; download the log for all of it."}
      </p>
      <pre class="log" ref={pre} tabIndex={0} role="log" aria-live="off" aria-labelledby="log-h">
        {log.text}
      </pre>
    </section>
  );
}
