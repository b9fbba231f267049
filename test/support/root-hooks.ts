import { stopSharedPostgres } from "./postgres.ts";

/** Mocha root hooks: the shared embedded PostgreSQL lives as long as the test process. */
export const mochaHooks = { afterAll: stopSharedPostgres };
