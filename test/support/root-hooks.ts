import { stopSharedKubeCluster } from "./kube/cluster.ts";
import { stopSharedPostgres } from "./postgres.ts";

/** Mocha root hooks: the shared embedded PostgreSQL and kube test cluster live as long as the test process. */
export const mochaHooks = {
  async afterAll() {
    await Promise.all([stopSharedPostgres(), stopSharedKubeCluster()]);
  },
};
