import { useEffect, useState } from "preact/hooks";
import type { RuntimeInfo } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { runs } from "../api.ts";
import { useTitle, useVisible } from "../components/hooks.ts";
import { errorText, sleep } from "../errors.ts";
import { formatTime, ms } from "../format.ts";

/** The scheduler caches preflight results for a few seconds; looking more often gains nothing. */
const POLL_MS = 15_000;

export function RuntimesPage() {
  useTitle("Runtimes");
  const [runtimes, setRuntimes] = useState<RuntimeInfo[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [round, setRound] = useState(0);
  const [checking, setChecking] = useState(false);
  const visible = useVisible();

  useEffect(() => {
    if (!visible) return;
    const stop = new AbortController();
    void (async () => {
      while (!stop.signal.aborted) {
        setChecking(true);
        try {
          setRuntimes((await runs.listRuntimes({}, { signal: stop.signal })).runtimes);
          setError(undefined);
        } catch (e) {
          if (stop.signal.aborted) return;
          setError(errorText(e));
        } finally {
          if (!stop.signal.aborted) setChecking(false);
        }
        await sleep(POLL_MS, stop.signal);
      }
    })();
    return () => stop.abort();
  }, [visible, round]);

  return (
    <section>
      <div class="page-head">
        <h1 tabIndex={-1}>Runtimes</h1>
        <button type="button" onClick={() => setRound(round + 1)} aria-disabled={checking}>
          {checking ? "Checking…" : "Check again"}
        </button>
      </div>
      <p class="muted">Where runs can go, and whether each runtime's preflight check passes now (the scheduler checks at most every few seconds).</p>
      {error && (
        <p class="notice error" role="alert">
          Could not ask the scheduler: {error}
        </p>
      )}
      {runtimes && (
        <table class="runtimes">
          <thead>
            <tr>
              <th scope="col">Runtime</th>
              <th scope="col">Enabled</th>
              <th scope="col">Preflight</th>
              <th scope="col">Message</th>
              <th scope="col">Checked</th>
            </tr>
          </thead>
          <tbody>
            {runtimes.map((r) => (
              <tr key={r.name} data-runtime={r.name}>
                <th scope="row">
                  {r.name}
                  {r.isDefault && <span class="badge neutral">default</span>}
                </th>
                <td>{r.enabled ? "yes" : "no"}</td>
                <td>{!r.enabled ? <span class="muted">—</span> : r.ok ? <span class="badge status-completed">passes</span> : <span class="badge status-failed">fails</span>}</td>
                <td class="message">{r.message}</td>
                <td>{formatTime(ms(r.checkedAt))}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
