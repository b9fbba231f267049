import type { Client } from "@connectrpc/connect";
import { RunStatus, type Run, type RunService } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { eventLine, statusText } from "./run-text.ts";

const TERMINAL: RunStatus[] = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];

/**
 * Follows a run with WatchRun until it is terminal, printing its status, phases, steps and log
 * output as they happen. Resumes from the last event seen if the stream breaks.
 */
export async function followRun(
  client: Client<typeof RunService>,
  runId: string,
  write: (line: string) => void,
  options: { logs: boolean; signal?: AbortSignal } = { logs: true },
): Promise<Run> {
  let attempt = 0;
  let sequence = 0n;
  let last: Run | undefined;
  let lastStatus: RunStatus | undefined;
  const partial = new Map<string, string>();
  for (let failures = 0; ; ) {
    try {
      for await (const message of client.watchRun({ runId, afterAttempt: attempt, afterSequence: sequence }, { signal: options.signal })) {
        failures = 0;
        if (message.update.case === "run") {
          last = message.update.value;
          if (last.status !== lastStatus) write(`run ${last.id} ${statusText(last.status)}${last.attempt > 1 ? ` (attempt ${last.attempt})` : ""}`);
          lastStatus = last.status;
        } else if (message.update.case === "event" && message.update.value.event) {
          attempt = message.update.value.attempt;
          const event = message.update.value.event;
          sequence = event.sequence;
          if (event.payload.case === "logChunk") {
            if (!options.logs) continue;
            // Print whole lines; keep a partial line until its end arrives.
            const key = `${event.payload.value.step}`;
            const text = (partial.get(key) ?? "") + new TextDecoder().decode(event.payload.value.data);
            const lines = text.split("\n");
            partial.set(key, lines.pop() ?? "");
            for (const line of lines) write(`  │ ${line}`);
          } else {
            const line = eventLine(event);
            if (line) write(line);
          }
        }
      }
      if (last && TERMINAL.includes(last.status)) return last;
    } catch (error) {
      if (options.signal?.aborted || ++failures > 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 200 * 2 ** failures)));
    }
  }
}
