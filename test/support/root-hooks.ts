import { stopSharedPodman } from "./docker/podman.ts";
import { stopSharedKubeCluster } from "./kube/cluster.ts";
import { stopSharedPostgres } from "./postgres.ts";
import { timersHoldingTheProcess, trackTimers } from "./timer-tracker.ts";

trackTimers();

/**
 * How long the process may linger once every test and hook has run. Mocha (exit: false) waits
 * for the event loop to drain, so a handle a test left open would hold CI until its time limit;
 * past this grace the handles are named and the process exits with mocha's own exit code.
 */
const LINGER_GRACE_MS = 30_000;

/** Mocha root hooks: the shared embedded PostgreSQL, kube test cluster and podman API service live as long as the test process. */
export const mochaHooks = {
  async afterAll() {
    await Promise.all([stopSharedPostgres(), stopSharedKubeCluster(), stopSharedPodman()]);
    setTimeout(() => {
      console.error(
        `tests: the run ended ${LINGER_GRACE_MS / 1000} s ago but the process is still held open by: ` +
          `${process.getActiveResourcesInfo().join(", ")}; exiting (a test leaks these handles)`,
      );
      for (const timer of timersHoldingTheProcess()) console.error(`  timer ${timer}`);
      // mocha's exit listener sets the exit code from the failure count.
      process.exit();
    }, LINGER_GRACE_MS).unref();
  },
};
