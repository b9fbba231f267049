import { Migration } from '@mikro-orm/migrations';

export class Migration20261129115036_run_trace_context extends Migration {

  override name = 'Migration20261129115036_run_trace_context';

  override up(): void | Promise<void> {
    this.addSql(`alter table "runs" add "trace_parent" text null, add "trace_state" text null;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "runs" drop column "trace_parent", drop column "trace_state";`);
  }

}
