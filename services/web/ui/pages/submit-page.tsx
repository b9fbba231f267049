import { useEffect, useRef, useState } from "preact/hooks";
import { Runtime, type RuntimeInfo } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { runs } from "../api.ts";
import { useTitle } from "../components/hooks.ts";
import { errorText, fieldViolations } from "../errors.ts";
import { navigate } from "../router.tsx";

interface Field {
  id: string;
  label: string;
  /** The field path the scheduler names in a violation. */
  path: string;
  hint?: string;
}

const FIELDS = {
  repo: { id: "repo", label: "Repository", path: "spec.repository_url", hint: "A git URL the agent can clone and push to, such as https://github.com/org/repo.git or file:///srv/git/repo.git." },
  baseRef: { id: "base-ref", label: "Base ref", path: "spec.base_ref", hint: "The branch, tag or full commit to start from." },
  prompt: { id: "prompt", label: "Prompt", path: "spec.agent.prompt", hint: "What the agent should do." },
  command: { id: "command", label: "Agent command", path: "spec.agent.command_template", hint: "Placeholders: {prompt_file} (the prompt, in a file), {repo_dir}, {run_id}." },
  runtime: { id: "runtime", label: "Runtime", path: "runtime" },
} satisfies Record<string, Field>;

const KNOWN_PATHS = new Set(Object.values(FIELDS).map((f) => f.path));

/** A v4 uuid from getRandomValues, which (unlike randomUUID) also exists on plain-http origins. */
function requestId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function SubmitPage() {
  useTitle("Submit a run");
  const [values, setValues] = useState({ repo: "", baseRef: "main", prompt: "", command: "", runtime: "" });
  const [runtimes, setRuntimes] = useState<RuntimeInfo[]>([]);
  const [violations, setViolations] = useState<{ field: string; description: string }[]>([]);
  const [failure, setFailure] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  // One key per filled-in form: a double click or a retry after a lost answer submits one run.
  const key = useRef(requestId());
  const summary = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const stop = new AbortController();
    runs.listRuntimes({}, { signal: stop.signal }).then(
      (r) => setRuntimes(r.runtimes),
      () => {}, // the select still offers the default; a submit then says what is wrong
    );
    return () => stop.abort();
  }, []);

  const set = (name: keyof typeof values) => (event: Event) => {
    key.current = requestId();
    setValues({ ...values, [name]: (event.currentTarget as HTMLInputElement).value });
  };
  const errorOf = (field: Field) => violations.filter((v) => v.field === field.path).map((v) => v.description);
  const others = violations.filter((v) => !KNOWN_PATHS.has(v.field));

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setFailure(undefined);
    try {
      const runtime = runtimes.find((r) => r.name === values.runtime)?.runtime ?? Runtime.UNSPECIFIED;
      const { run } = await runs.submitRun({
        spec: { repositoryUrl: values.repo.trim(), baseRef: values.baseRef.trim(), agent: { prompt: values.prompt, commandTemplate: values.command } },
        runtime,
        requestId: key.current,
      });
      navigate(`/runs/${run!.id}`);
    } catch (error) {
      const found = fieldViolations(error);
      setViolations(found);
      setFailure(found.length > 0 ? undefined : errorText(error));
      // Focus what to fix: the first field named, else the summary.
      requestAnimationFrame(() => {
        const first = Object.values(FIELDS).find((f) => found.some((v) => v.field === f.path));
        if (first) document.getElementById(first.id)?.focus();
        else summary.current?.focus();
      });
    } finally {
      setBusy(false);
    }
  }

  const describedBy = (field: Field) => [field.hint ? `${field.id}-hint` : "", errorOf(field).length > 0 ? `${field.id}-error` : ""].filter(Boolean).join(" ") || undefined;
  const FieldError = ({ field }: { field: Field }) =>
    errorOf(field).length > 0 ? (
      <p class="field-error" id={`${field.id}-error`}>
        {errorOf(field).map((d) => (
          <span key={d}>
            <span class="visually-hidden">Error: </span>
            {d}
          </span>
        ))}
      </p>
    ) : null;
  const Hint = ({ field }: { field: Field }) =>
    field.hint ? (
      <p class="hint" id={`${field.id}-hint`}>
        {field.hint}
      </p>
    ) : null;
  const invalid = (field: Field) => (errorOf(field).length > 0 ? "true" : undefined);

  return (
    <section class="narrow">
      <h1 tabIndex={-1}>Submit a run</h1>
      <div ref={summary} tabIndex={-1} aria-live="polite">
        {violations.length > 0 && (
          <div class="notice error" role="alert">
            <p>The scheduler refused the run. Fix {violations.length === 1 ? "this" : "these"} and submit again:</p>
            <ul>
              {violations.map((v) => {
                const field = Object.values(FIELDS).find((f) => f.path === v.field);
                return (
                  <li key={`${v.field}:${v.description}`}>
                    {field ? <a href={`#${field.id}`}>{field.label}</a> : <code>{v.field}</code>}: {v.description}
                  </li>
                );
              })}
            </ul>
          </div>
        )}
        {failure && (
          <p class="notice error" role="alert">
            Could not submit the run: {failure}
          </p>
        )}
      </div>
      <form onSubmit={submit} noValidate aria-describedby={others.length > 0 ? "other-errors" : undefined}>
        <div class="field">
          <label for={FIELDS.repo.id}>{FIELDS.repo.label}</label>
          <Hint field={FIELDS.repo} />
          <FieldError field={FIELDS.repo} />
          <input id={FIELDS.repo.id} name="repo" type="text" autoComplete="off" spellcheck={false} aria-required="true" aria-invalid={invalid(FIELDS.repo)} aria-describedby={describedBy(FIELDS.repo)} value={values.repo} onInput={set("repo")} />
        </div>
        <div class="field">
          <label for={FIELDS.baseRef.id}>{FIELDS.baseRef.label}</label>
          <Hint field={FIELDS.baseRef} />
          <FieldError field={FIELDS.baseRef} />
          <input id={FIELDS.baseRef.id} name="base-ref" type="text" autoComplete="off" spellcheck={false} aria-required="true" aria-invalid={invalid(FIELDS.baseRef)} aria-describedby={describedBy(FIELDS.baseRef)} value={values.baseRef} onInput={set("baseRef")} />
        </div>
        <div class="field">
          <label for={FIELDS.prompt.id}>{FIELDS.prompt.label}</label>
          <Hint field={FIELDS.prompt} />
          <FieldError field={FIELDS.prompt} />
          <textarea id={FIELDS.prompt.id} name="prompt" rows={6} aria-required="true" aria-invalid={invalid(FIELDS.prompt)} aria-describedby={describedBy(FIELDS.prompt)} value={values.prompt} onInput={set("prompt")} />
        </div>
        <div class="field">
          <label for={FIELDS.command.id}>{FIELDS.command.label}</label>
          <Hint field={FIELDS.command} />
          <FieldError field={FIELDS.command} />
          <input
            id={FIELDS.command.id}
            name="command"
            type="text"
            class="mono"
            autoComplete="off"
            spellcheck={false}
            placeholder="goose run --instructions {prompt_file}"
            aria-required="true"
            aria-invalid={invalid(FIELDS.command)}
            aria-describedby={describedBy(FIELDS.command)}
            value={values.command}
            onInput={set("command")}
          />
        </div>
        <div class="field">
          <label for={FIELDS.runtime.id}>{FIELDS.runtime.label}</label>
          <FieldError field={FIELDS.runtime} />
          <select id={FIELDS.runtime.id} name="runtime" aria-invalid={invalid(FIELDS.runtime)} aria-describedby={describedBy(FIELDS.runtime)} value={values.runtime} onChange={set("runtime")}>
            <option value="">the scheduler's default{runtimes.find((r) => r.isDefault) ? ` (${runtimes.find((r) => r.isDefault)!.name})` : ""}</option>
            {runtimes.map((r) => (
              <option key={r.name} value={r.name} disabled={!r.enabled}>
                {r.name}
                {!r.enabled ? " (not enabled)" : !r.ok ? " (preflight failing)" : ""}
              </option>
            ))}
          </select>
        </div>
        {others.length > 0 && (
          <p class="field-error" id="other-errors">
            {others.map((v) => (
              <span key={v.field}>
                <code>{v.field}</code>: {v.description}
              </span>
            ))}
          </p>
        )}
        <p>
          <button type="submit" class="primary" aria-disabled={busy}>
            {busy ? "Submitting…" : "Submit run"}
          </button>
        </p>
      </form>
    </section>
  );
}
