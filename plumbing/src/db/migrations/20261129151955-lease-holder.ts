import { Migration } from '@mikro-orm/migrations';

export class Migration20261129151955_lease_holder extends Migration {

  override name = 'Migration20261129151955_lease_holder';

  override up(): void | Promise<void> {
    this.addSql(`alter table "attempts" add "lease_holder" text null;`);
  }

  override down(): void | Promise<void> {
    this.addSql(`alter table "attempts" drop column "lease_holder";`);
  }

}
