import { create, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { RunSpecSchema } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { mintCredential } from "@corral/plumbing/credentials.ts";
import type { Sql } from "@corral/plumbing/db/sql.ts";

export interface SeededRun {
  runId: string;
  attemptId: string;
  attempt: number;
  token: string;
}

/**
 * Writes a launched run the way the scheduler does (run, attempt, credential hash), so the
 * control plane can be tested on its own.
 */
export async function seedLaunchedRun(
  sql: Sql,
  options: { spec?: MessageInitShape<typeof RunSpecSchema>; expiresInMs?: number; attempt?: number } = {},
): Promise<SeededRun> {
  const spec = create(RunSpecSchema, {
    repositoryUrl: "file:///srv/git/app.git",
    baseRef: "main",
    agent: { commandTemplate: "true", prompt: "do it" },
    timeouts: { run: durationFromMs(3_600_000), grace: durationFromMs(5000) },
    ...options.spec,
  } as MessageInitShape<typeof RunSpecSchema>);
  const attempt = options.attempt ?? 1;
  const run = await sql.one<{ id: string }>(
    `insert into runs (status, runtime, repository_url, base_ref, spec, current_attempt, launched_at)
     values ('launching', 'local', ?, ?, ?::jsonb, ?, now()) returning id`,
    [spec.repositoryUrl, spec.baseRef, JSON.stringify(toJson(RunSpecSchema, spec)), attempt],
  );
  const attemptRow = await sql.one<{ id: string }>(
    "insert into attempts (run_id, number, status, launched_at) values (?, ?, 'launching', now()) returning id",
    [run!.id, attempt],
  );
  const { token, hash } = mintCredential();
  await sql.run(
    "insert into credentials (run_id, attempt, token_hash, expires_at) values (?, ?, ?, now() + (? * interval '1 millisecond'))",
    [run!.id, attempt, hash, options.expiresInMs ?? 3_600_000],
  );
  return { runId: run!.id, attemptId: attemptRow!.id, attempt, token };
}
