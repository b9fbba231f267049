import { createRequire } from "node:module";
import type { TracerProvider } from "@opentelemetry/api";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";

let instrumentation: PgInstrumentation | undefined;

/**
 * PostgreSQL queries as client spans (instrumentation-pg), children of whatever span is active.
 *
 * How this works under ESM with Node 24's type stripping, where no `--import` hook is in place:
 * instrumentation-pg patches `pg` through require-in-the-middle, and on Node 24 an ESM `import`
 * of a CommonJS package goes through the CommonJS loader, so a `pg` imported after `enable()`
 * is patched as it loads. The services import `pg` statically, long before telemetry starts,
 * so after enabling, each copy of `pg` in the tree (plumbing's, and the one MikroORM bundles) is
 * required once more: require-in-the-middle sees the cached module and patches its classes'
 * prototypes in place, which the copies already imported share. No loader hook, no
 * import-in-the-middle, no start-up flag.
 *
 * One instrumentation per process: in a process holding several services (tests), the first
 * service with tracing on gets the database spans; each span still has the right parent.
 * Only queries made under a span are recorded (`requireParentSpan`), so the background sweeps
 * do not make a root span per query; statements are recorded with their literals blanked
 * (MikroORM inlines values, which may be a run spec's environment), and never bind values.
 */
export function instrumentPostgres(provider: TracerProvider): void {
  if (instrumentation) return;
  instrumentation = new PgInstrumentation({
    requireParentSpan: true,
    ignoreConnectSpans: true,
    enhancedDatabaseReporting: false,
    requestHook(span, info) {
      span.setAttribute("db.query.text", redactSqlLiterals(info.query.text));
    },
  });
  instrumentation.setTracerProvider(provider);
  instrumentation.enable();
  for (const base of [import.meta.url, import.meta.resolve("@mikro-orm/postgresql")]) {
    try {
      createRequire(base)("pg");
    } catch {
      // That copy is not installed here; nothing to patch.
    }
  }
}

/** SQL with every string literal (standard, E'' escape and dollar-quoted) replaced by '?'. */
export function redactSqlLiterals(sql: string): string {
  return sql
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$/g, "'?'")
    .replace(/[Ee]'(?:[^'\\]|\\.|'')*'/g, "'?'")
    .replace(/'(?:[^']|'')*'/g, "'?'");
}
