import { mintCredential } from "@corral/plumbing/credentials.ts";
import type { Sql } from "@corral/plumbing/db/sql.ts";

/**
 * A run whose first attempt is attached and running (lease epoch 1, an hour of lease), with its
 * credential, as the reconciler finds it. `launchedAt` is SQL (default now()); `handle` is the
 * recorded runtime handle, or null for one the launch has not recorded.
 */
export async function seedRunningRun(sql: Sql, options: { launchedAt?: string; handle?: object | null } = {}): Promise<string> {
  const launchedAt = options.launchedAt ?? "now()";
  const handle = options.handle === undefined ? { pid: 1 } : options.handle;
  const run = await sql.one<{ id: string }>(
    `insert into runs (status, runtime, repository_url, base_ref, spec, current_attempt, launched_at, attached_at)
     values ('running', 'local', 'file:///x.git', 'main', '{}'::jsonb, 1, ${launchedAt}, now()) returning id`,
  );
  await sql.run(
    `insert into attempts (run_id, number, status, runtime_handle, launched_at, attached_at, lease_epoch, lease_expires_at)
     values (?, 1, 'running', ?::jsonb, ${launchedAt}, now(), 1, now() + interval '1 hour')`,
    [run!.id, handle === null ? null : JSON.stringify(handle)],
  );
  await sql.run("insert into credentials (run_id, attempt, token_hash, expires_at) values (?, 1, ?, now() + interval '1 hour')", [run!.id, mintCredential().hash]);
  return run!.id;
}
