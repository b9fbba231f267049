import { useEffect, useState } from "preact/hooks";
import { RunStatus, Runtime, type Run } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { runs } from "../api.ts";
import { StatusBadge } from "../components/status-badge.tsx";
import { useNow, useTitle, useVisible } from "../components/hooks.ts";
import { errorText, sleep } from "../errors.ts";
import { formatAge, formatDuration, formatTime, ms, phaseName, RUNTIME_NAMES, runDurationMs, shortId, STATUS_NAMES, isTerminal } from "../format.ts";
import { Link, navigate } from "../router.tsx";

/** How often the list is read again while the page is visible. */
const POLL_MS = 3000;
const PAGE = 50;

const STATUS_FILTERS = [RunStatus.QUEUED, RunStatus.LAUNCHING, RunStatus.RUNNING, RunStatus.CANCELLING, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED];
const RUNTIME_FILTERS = [Runtime.LOCAL, Runtime.DOCKER, Runtime.KUBERNETES];
const statusByName = new Map(STATUS_FILTERS.map((s) => [STATUS_NAMES[s], s]));
const runtimeByName = new Map(RUNTIME_FILTERS.map((r) => [RUNTIME_NAMES[r], r]));

export function RunsPage({ query }: { query: URLSearchParams }) {
  useTitle("Runs");
  const status = query.get("status") ?? "";
  const repo = query.get("repo") ?? "";
  const runtime = query.get("runtime") ?? "";
  const [limit, setLimit] = useState(PAGE);
  const [list, setList] = useState<{ runs: Run[]; more: boolean } | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [repos, setRepos] = useState<string[]>([]);
  // What is typed in the repository field, applied on Enter or on leaving the field; a re-render
  // for another filter must not wipe it.
  const [repoDraft, setRepoDraft] = useState(repo);
  useEffect(() => setRepoDraft(repo), [repo]);
  const visible = useVisible();
  const now = useNow();

  useEffect(() => {
    if (!visible) return;
    const stop = new AbortController();
    void (async () => {
      while (!stop.signal.aborted) {
        try {
          const response = await runs.listRuns(
            {
              pageSize: limit,
              statuses: statusByName.has(status) ? [statusByName.get(status)!] : [],
              repositoryUrl: repo,
              runtime: runtimeByName.get(runtime) ?? Runtime.UNSPECIFIED,
            },
            { signal: stop.signal },
          );
          setList({ runs: response.runs, more: response.nextPageToken !== "" });
          setRepos((known) => [...new Set([...known, ...response.runs.map((r) => r.spec?.repositoryUrl ?? "")])].filter(Boolean).sort());
          setError(undefined);
        } catch (e) {
          if (stop.signal.aborted) return;
          setError(errorText(e));
        }
        await sleep(POLL_MS, stop.signal);
      }
    })();
    return () => stop.abort();
  }, [status, repo, runtime, limit, visible]);

  const setFilter = (name: string, value: string) => {
    // From the address as it is now: two quick changes must not undo each other.
    const next = new URLSearchParams(location.search);
    if (value) next.set(name, value);
    else next.delete(name);
    const search = next.toString();
    setLimit(PAGE);
    navigate(search ? `/?${search}` : "/", { replace: true });
  };
  const filtered = status !== "" || repo !== "" || runtime !== "";

  return (
    <section>
      <div class="page-head">
        <h1 tabIndex={-1}>Runs</h1>
        <Link href="/submit" class="button primary">
          Submit a run
        </Link>
      </div>
      <form
        class="filters"
        aria-label="Filter runs"
        onSubmit={(e) => {
          // Enter in the repository field applies it.
          e.preventDefault();
          const input = e.currentTarget.elements.namedItem("repo") as HTMLInputElement;
          setFilter("repo", input.value.trim());
        }}
      >
        <label>
          Status
          <select name="status" value={status} onChange={(e) => setFilter("status", e.currentTarget.value)}>
            <option value="">any</option>
            {STATUS_FILTERS.map((s) => (
              <option key={s} value={STATUS_NAMES[s]}>
                {STATUS_NAMES[s]}
              </option>
            ))}
          </select>
        </label>
        <label>
          Repository
          <input
            name="repo"
            type="search"
            list="known-repos"
            placeholder="any (exact URL)"
            value={repoDraft}
            size={40}
            onInput={(e) => setRepoDraft(e.currentTarget.value)}
            onChange={(e) => setFilter("repo", e.currentTarget.value.trim())}
          />
          <datalist id="known-repos">
            {repos.map((r) => (
              <option key={r} value={r} />
            ))}
          </datalist>
        </label>
        <label>
          Runtime
          <select name="runtime" value={runtime} onChange={(e) => setFilter("runtime", e.currentTarget.value)}>
            <option value="">any</option>
            {RUNTIME_FILTERS.map((r) => (
              <option key={r} value={RUNTIME_NAMES[r]}>
                {RUNTIME_NAMES[r]}
              </option>
            ))}
          </select>
        </label>
        {filtered && (
          <button type="button" class="link-button" onClick={() => navigate("/", { replace: true })}>
            Clear filters
          </button>
        )}
      </form>
      {error && (
        <p class="notice error" role="alert">
          Could not load the runs: {error} Trying again…
        </p>
      )}
      {list === undefined && !error && <p class="muted">Loading…</p>}
      {list !== undefined && list.runs.length === 0 && (
        <p class="muted">{filtered ? "No run matches these filters." : <>No runs yet. <Link href="/submit">Submit one</Link>.</>}</p>
      )}
      {list !== undefined && list.runs.length > 0 && (
        <table class="runs">
          <caption class="visually-hidden">Runs, newest first; the list updates by itself</caption>
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Status</th>
              <th scope="col">Repository</th>
              <th scope="col">Runtime</th>
              <th scope="col">Age</th>
              <th scope="col">Duration</th>
            </tr>
          </thead>
          <tbody>
            {list.runs.map((run) => (
              <tr key={run.id} data-run-id={run.id}>
                <td>
                  <Link href={`/runs/${run.id}`} class="mono" aria-label={`Run ${run.id}`}>
                    {shortId(run.id)}
                  </Link>
                </td>
                <td>
                  <StatusBadge status={run.status} />
                  {!isTerminal(run.status) && run.currentStep && <span class="muted small"> {run.currentStep}</span>}
                  {!isTerminal(run.status) && !run.currentStep && run.phase !== 0 && <span class="muted small"> {phaseName(run.phase)}</span>}
                </td>
                <td class="repo" title={run.spec?.repositoryUrl}>
                  {run.spec?.repositoryUrl}
                  <span class="muted small"> @ {run.spec?.baseRef}</span>
                </td>
                <td>{RUNTIME_NAMES[run.runtime]}</td>
                <td title={formatTime(ms(run.createdAt))}>{formatAge(ms(run.createdAt), now)}</td>
                <td>{formatDuration(runDurationMs(run, now))}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {list?.more && limit < 500 && (
        <p>
          <button type="button" onClick={() => setLimit(Math.min(500, limit + PAGE))}>
            Show more
          </button>
        </p>
      )}
    </section>
  );
}
