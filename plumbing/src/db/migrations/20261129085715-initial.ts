import { Migration } from '@mikro-orm/migrations';

export class Migration20261129085715_initial extends Migration {

  override name = 'Migration20261129085715_initial';

  override up(): void | Promise<void> {
    this.addSql(`create table "blobs" ("id" uuid not null default gen_random_uuid(), "sha256" text not null, "size" bigint not null, "created_at" timestamptz not null default now(), primary key ("id"));`);
    this.addSql(`alter table "blobs" add constraint "blobs_sha256_unique" unique ("sha256");`);

    this.addSql(`create table "runs" ("id" uuid not null default gen_random_uuid(), "status" text not null, "runtime" text not null, "repository_url" text not null, "base_ref" text not null, "spec" jsonb not null, "request_id" text null, "current_attempt" int not null default 0, "phase" text null, "current_step" text null, "cancel_requested_at" timestamptz null, "cancel_reason" text null, "cancel_grace_ms" int null, "reason" text null, "result" jsonb null, "artifact_state" text null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), "launched_at" timestamptz null, "attached_at" timestamptz null, "finished_at" timestamptz null, primary key ("id"));`);
    this.addSql(`create index "runs_repository_url_index" on "runs" ("repository_url");`);
    this.addSql(`alter table "runs" add constraint "runs_request_id_unique" unique ("request_id");`);
    this.addSql(`create index "runs_status_created_at_index" on "runs" ("status", "created_at");`);

    this.addSql(`create table "events" ("id" uuid not null default gen_random_uuid(), "run_id" uuid not null, "attempt" int not null, "sequence" bigint not null, "type" text not null, "occurred_at" timestamptz not null, "payload" bytea not null, "received_at" timestamptz not null default now(), primary key ("id"));`);
    this.addSql(`alter table "events" add constraint "events_run_id_attempt_sequence_unique" unique ("run_id", "attempt", "sequence");`);

    this.addSql(`create table "credentials" ("id" uuid not null default gen_random_uuid(), "run_id" uuid not null, "attempt" int not null, "token_hash" text not null, "expires_at" timestamptz not null, "revoked_at" timestamptz null, "created_at" timestamptz not null default now(), primary key ("id"));`);
    this.addSql(`create index "credentials_run_id_index" on "credentials" ("run_id");`);
    this.addSql(`alter table "credentials" add constraint "credentials_token_hash_unique" unique ("token_hash");`);

    this.addSql(`create table "completions" ("id" uuid not null default gen_random_uuid(), "run_id" uuid not null, "attempt" int not null, "idempotency_key" text not null, "status" text not null, "result" jsonb not null, "reason" text null, "artifact_state" text null, "conflict" boolean not null default false, "conflict_reason" text null, "received_at" timestamptz not null default now(), primary key ("id"));`);
    this.addSql(`alter table "completions" add constraint "completions_run_id_idempotency_key_unique" unique ("run_id", "idempotency_key");`);

    this.addSql(`create table "attempts" ("id" uuid not null default gen_random_uuid(), "run_id" uuid not null, "number" int not null, "status" text not null, "lease_epoch" bigint not null default '0', "lease_expires_at" timestamptz null, "runtime_handle" jsonb null, "runtime_fact" text null, "launched_at" timestamptz null, "attached_at" timestamptz null, "first_event_at" timestamptz null, "finished_at" timestamptz null, "created_at" timestamptz not null default now(), primary key ("id"));`);
    this.addSql(`alter table "attempts" add constraint "attempts_run_id_number_unique" unique ("run_id", "number");`);

    this.addSql(`create table "artifacts" ("id" uuid not null default gen_random_uuid(), "run_id" uuid not null, "name" text not null, "blob_id" uuid not null, "size" bigint not null, "content_type" text not null, "attempt" int not null, "created_at" timestamptz not null default now(), primary key ("id"));`);
    this.addSql(`create index "artifacts_blob_id_index" on "artifacts" ("blob_id");`);
    this.addSql(`alter table "artifacts" add constraint "artifacts_run_id_name_unique" unique ("run_id", "name");`);

    this.addSql(`create table "uploads" ("id" uuid not null, "run_id" uuid not null, "name" text not null, "committed_offset" bigint not null default '0', "declared_sha256" text null, "state" text not null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), primary key ("id"));`);
    this.addSql(`create index "uploads_run_id_index" on "uploads" ("run_id");`);

    this.addSql(`alter table "runs" add constraint "runs_status_check" check ("status" in ('queued', 'launching', 'running', 'cancelling', 'completed', 'failed', 'cancelled'));`);
    this.addSql(`alter table "runs" add constraint "runs_runtime_check" check ("runtime" in ('local', 'docker', 'kubernetes'));`);

    this.addSql(`alter table "events" add constraint "events_run_id_foreign" foreign key ("run_id") references "runs" ("id") on delete cascade;`);

    this.addSql(`alter table "credentials" add constraint "credentials_run_id_foreign" foreign key ("run_id") references "runs" ("id") on delete cascade;`);

    this.addSql(`alter table "completions" add constraint "completions_run_id_foreign" foreign key ("run_id") references "runs" ("id") on delete cascade;`);

    this.addSql(`alter table "attempts" add constraint "attempts_run_id_foreign" foreign key ("run_id") references "runs" ("id") on delete cascade;`);

    this.addSql(`alter table "artifacts" add constraint "artifacts_run_id_foreign" foreign key ("run_id") references "runs" ("id") on delete cascade;`);
    this.addSql(`alter table "artifacts" add constraint "artifacts_blob_id_foreign" foreign key ("blob_id") references "blobs" ("id");`);

    this.addSql(`alter table "uploads" add constraint "uploads_run_id_foreign" foreign key ("run_id") references "runs" ("id") on delete cascade;`);
    this.addSql(`alter table "uploads" add constraint "uploads_state_check" check ("state" in ('open', 'finished', 'failed'));`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "artifacts" drop constraint "artifacts_blob_id_foreign";`);
    this.addSql(`alter table "events" drop constraint "events_run_id_foreign";`);
    this.addSql(`alter table "credentials" drop constraint "credentials_run_id_foreign";`);
    this.addSql(`alter table "completions" drop constraint "completions_run_id_foreign";`);
    this.addSql(`alter table "attempts" drop constraint "attempts_run_id_foreign";`);
    this.addSql(`alter table "artifacts" drop constraint "artifacts_run_id_foreign";`);
    this.addSql(`alter table "uploads" drop constraint "uploads_run_id_foreign";`);

    this.addSql(`drop table if exists "blobs" cascade;`);
    this.addSql(`drop table if exists "runs" cascade;`);
    this.addSql(`drop table if exists "events" cascade;`);
    this.addSql(`drop table if exists "credentials" cascade;`);
    this.addSql(`drop table if exists "completions" cascade;`);
    this.addSql(`drop table if exists "attempts" cascade;`);
    this.addSql(`drop table if exists "artifacts" cascade;`);
    this.addSql(`drop table if exists "uploads" cascade;`);
  }

}
