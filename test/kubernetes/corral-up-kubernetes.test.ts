import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createSeededRemote, remoteBranch, useTempDirs } from "../agent/support/git-fixtures.ts";
import { corralUpEnv, runCorral, startCorralUp } from "../support/corral-up.ts";
import { sharedKubeCluster, type KubeCluster } from "../support/kube/cluster.ts";
import { startFakeNode, type FakeNode } from "../support/kube/fake-node.ts";
import { missingKubeBinaries } from "../support/tools.ts";
import { createRunsNamespace } from "./support/runs-namespace.ts";

const AGENT_MAIN = fileURLToPath(import.meta.resolve("@corral/agent/main.ts"));

describe("corral up --runtime kubernetes", function () {
  this.timeout(180_000);
  let cluster: KubeCluster;
  let node: FakeNode;
  let namespace: { name: string; remove(): Promise<void> };
  let home: string;
  const tempDir = useTempDirs();

  before(async function () {
    const missing = missingKubeBinaries();
    if (missing) {
      console.log(`      (skipped: ${missing})`);
      this.skip();
    }
    cluster = await sharedKubeCluster();
    namespace = await createRunsNamespace(cluster.kubeConfig("admin"));
    node = await startFakeNode(cluster.kubeConfig("admin"), { namespace: namespace.name, images: { "corral-agent:e2e": [process.execPath, AGENT_MAIN] } });
    home = mkdtempSync(join(tmpdir(), "corral-up-k8s-"));
    chmodSync(home, 0o755); // as root, the embedded PostgreSQL runs as postgres and must enter it
  });
  after(async () => {
    await node?.stop();
    await namespace?.remove();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it("runs a run on the cluster of a kubeconfig, as the identity deploy/'s Role is bound to", async () => {
    const up = startCorralUp(
      ["--runtime", "kubernetes", "--kubeconfig", cluster.kubeconfigFile("restricted"), "--namespace", namespace.name, "--agent-image", "corral-agent:e2e"],
      corralUpEnv(home),
    );
    try {
      const { scheduler } = await up.ready;
      const root = await tempDir("up-k8s");
      const remote = await createSeededRemote(root);
      const result = await runCorral(
        ["run", "--repo", remote.url, "--base", "main", "--agent-command", "echo on-kubernetes > K8S.md", "--prompt", "p", "--wait", "--json"],
        { ...process.env, CORRAL_SCHEDULER_URL: scheduler },
        120_000,
      );
      assert.equal(result.code, 0, `${result.stderr}\n${up.output()}`);
      const run = JSON.parse(result.stdout) as { runtime: string; result: { branch: string; commitSha: string } };
      assert.equal(run.runtime, "RUNTIME_KUBERNETES");
      assert.equal(remoteBranch(root, remote.bare, run.result.branch), run.result.commitSha);
      assert.deepEqual(node.problems, []);
    } finally {
      await up.stop();
    }
  });

  it("refuses to start when the runtime's preflight fails, saying what to fix", async () => {
    const result = await runCorral(
      ["up", "--runtime", "kubernetes", "--kubeconfig", cluster.kubeconfigFile("restricted"), "--namespace", "corral-not-bound-here"],
      corralUpEnv(home),
      120_000,
    );
    const output = result.stdout + result.stderr;
    assert.equal(result.code, 1, output);
    assert.match(output, /may not create Jobs in namespace "corral-not-bound-here"/);
  });

  it("rejects a runtime it does not know", async () => {
    const result = await runCorral(["up", "--runtime", "vm"], process.env, 60_000);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--runtime: expected local, docker or kubernetes, got "vm"/);
  });
});
