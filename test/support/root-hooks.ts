import { stopSharedPodman } from "./docker/podman.ts";
import { stopSharedKubeCluster } from "./kube/cluster.ts";
import { stopSharedPostgres } from "./postgres.ts";

/** Mocha root hooks: the shared embedded PostgreSQL, kube test cluster and podman API service live as long as the test process. */
export const mochaHooks = {
  async afterAll() {
    await Promise.all([stopSharedPostgres(), stopSharedKubeCluster(), stopSharedPodman()]);
  },
};
