import { useEffect, useState } from "preact/hooks";
import type { Artifact } from "@corral/contract/corral/artifact/v1/artifact_service_pb.ts";
import type { Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { artifacts, downloadUrl } from "../api.ts";
import { errorText } from "../errors.ts";
import { formatBytes, isTerminal } from "../format.ts";

/** The run's artifacts, every attempt's, read again when the agent reports an artifact's status and when the run ends. */
export function ArtifactsSection({ runId, run, changed }: { runId: string; run: Run; changed: number }) {
  const [list, setList] = useState<Artifact[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const terminal = isTerminal(run.status);

  useEffect(() => {
    const stop = new AbortController();
    // Coalesce a burst of status events into one read.
    const timer = setTimeout(() => {
      artifacts.list({ runId, pageSize: 1000 }, { signal: stop.signal }).then(
        (response) => {
          setList(response.artifacts);
          setError(undefined);
        },
        (e: unknown) => {
          if (!stop.signal.aborted) setError(errorText(e));
        },
      );
    }, 300);
    return () => {
      clearTimeout(timer);
      stop.abort();
    };
  }, [runId, changed, terminal, run.attempt]);

  return (
    <section aria-labelledby="artifacts-h" class="panel">
      <h2 id="artifacts-h">Artifacts</h2>
      {error && (
        <p class="notice error" role="alert">
          Could not list the artifacts: {error}
        </p>
      )}
      {list !== undefined && list.length === 0 && <p class="muted">No artifacts {terminal ? "were stored" : "yet"}.</p>}
      {list !== undefined && list.length > 0 && (
        <table class="artifacts">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Size</th>
              <th scope="col">State</th>
              <th scope="col">Attempt</th>
              <th scope="col">sha256</th>
            </tr>
          </thead>
          <tbody>
            {list.map((a) => (
              <tr key={a.name} data-artifact={a.name}>
                <th scope="row">
                  <a href={downloadUrl(runId, a.name)} download class="mono">
                    {a.name}
                  </a>
                </th>
                <td>{formatBytes(a.size)}</td>
                <td>{a.complete ? "complete" : "uploading"}</td>
                <td>{a.attempt}</td>
                <td class="mono small" title={a.sha256}>
                  {a.sha256 ? a.sha256.slice(0, 12) : "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
