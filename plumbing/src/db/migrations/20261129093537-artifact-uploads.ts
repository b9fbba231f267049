import { Migration } from '@mikro-orm/migrations';

export class Migration20261129093537_artifact_uploads extends Migration {

  override name = 'Migration20261129093537_artifact_uploads';

  override up(): void | Promise<void> {
    this.addSql(`alter table "uploads" drop constraint "uploads_state_check";`);
    this.addSql(`alter table "uploads" add "writer_epoch" bigint not null default '0';`);
    this.addSql(`alter table "uploads" rename column "declared_sha256" to "sha256";`);
    this.addSql(`alter table "uploads" add constraint "uploads_state_check" check ("state" in ('open', 'verified', 'finished', 'failed'));`);

    this.addSql(`alter table "artifacts" add "upload_id" uuid null, add "completed_at" timestamptz null;`);
    this.addSql(`alter table "artifacts" add constraint "artifacts_upload_id_foreign" foreign key ("upload_id") references "uploads" ("id") on delete set null;`);
    this.addSql(`alter table "artifacts" alter column "blob_id" drop not null;`);
    this.addSql(`alter table "artifacts" alter column "size" set default '0';`);
    this.addSql(`alter table "artifacts" add constraint "artifacts_upload_id_unique" unique ("upload_id");`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "artifacts" drop constraint "artifacts_upload_id_foreign";`);

    this.addSql(`alter table "artifacts" drop constraint "artifacts_upload_id_unique";`);
    this.addSql(`alter table "artifacts" drop column "upload_id", drop column "completed_at";`);
    this.addSql(`alter table "artifacts" alter column "blob_id" set not null;`);
    this.addSql(`alter table "artifacts" alter column "size" drop default;`);

    this.addSql(`alter table "uploads" drop constraint "uploads_state_check";`);
    this.addSql(`alter table "uploads" drop column "writer_epoch";`);
    this.addSql(`alter table "uploads" rename column "sha256" to "declared_sha256";`);
    this.addSql(`alter table "uploads" add constraint "uploads_state_check" check ("state" in ('open', 'finished', 'failed'));`);
  }

}
