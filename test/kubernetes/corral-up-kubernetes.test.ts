import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createSeededRemote, remoteBranch, useTempDirs } from "../agent/support/git-fixtures.ts";
import { sharedKubeCluster, type KubeCluster } from "../support/kube/cluster.ts";
import { startFakeNode, type FakeNode } from "../support/kube/fake-node.ts";
import { missingKubeBinaries } from "../support/tools.ts";
import { createRunsNamespace } from "./support/runs-namespace.ts";

const CLI = fileURLToPath(new URL("../../cli/bin/corral.js", import.meta.url));
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
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CORRAL_HOME: home,
      CORRAL_SCHEDULER_LISTEN: "127.0.0.1:0",
      CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0",
      CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0",
      CORRAL_WEB_LISTEN: "127.0.0.1:0",
    };
    delete env.DATABASE_URL;
    const up = spawn(
      process.execPath,
      [CLI, "up", "--runtime", "kubernetes", "--kubeconfig", cluster.kubeconfigFile("restricted"), "--namespace", namespace.name, "--agent-image", "corral-agent:e2e"],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    let text = "";
    up.stdout!.on("data", (chunk) => (text += chunk));
    up.stderr!.on("data", (chunk) => (text += chunk));
    try {
      const scheduler = await new Promise<string>((resolve, reject) => {
        up.stdout!.on("data", () => {
          const match = /^ {2}scheduler +(http:\/\/\S+)$/m.exec(text);
          if (text.includes("Press Ctrl-C to stop.") && match) resolve(match[1]!);
        });
        up.once("exit", (code) => reject(new Error(`corral up exited with ${code}:\n${text}`)));
      });
      const root = await tempDir("up-k8s");
      const remote = await createSeededRemote(root);
      const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = execFile(
          process.execPath,
          [CLI, "run", "--repo", remote.url, "--base", "main", "--agent-command", "echo on-kubernetes > K8S.md", "--prompt", "p", "--wait", "--json"],
          { env: { ...process.env, CORRAL_SCHEDULER_URL: scheduler }, timeout: 120_000 },
          (_error, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
        );
      });
      assert.equal(result.code, 0, `${result.stderr}\n${text}`);
      const run = JSON.parse(result.stdout) as { runtime: string; result: { branch: string; commitSha: string } };
      assert.equal(run.runtime, "RUNTIME_KUBERNETES");
      assert.equal(remoteBranch(root, remote.bare, run.result.branch), run.result.commitSha);
      assert.deepEqual(node.problems, []);
    } finally {
      const exited = new Promise((resolve) => up.once("exit", resolve));
      up.kill("SIGINT");
      await exited;
    }
  });

  it("refuses to start when the runtime's preflight fails, saying what to fix", async () => {
    const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [CLI, "up", "--runtime", "kubernetes", "--kubeconfig", cluster.kubeconfigFile("restricted"), "--namespace", "corral-not-bound-here"],
        {
          env: { ...process.env, CORRAL_HOME: home, CORRAL_SCHEDULER_LISTEN: "127.0.0.1:0", CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0", CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0", CORRAL_WEB_LISTEN: "127.0.0.1:0", DATABASE_URL: "" },
          timeout: 120_000,
        },
        (_error, stdout, stderr) => resolve({ code: child.exitCode, output: stdout + stderr }),
      );
    });
    assert.equal(result.code, 1, result.output);
    assert.match(result.output, /may not create Jobs in namespace "corral-not-bound-here"/);
  });

  it("rejects a runtime it does not know", async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [CLI, "up", "--runtime", "vm"], (_error, _stdout, stderr) => resolve({ code: child.exitCode, stderr }));
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--runtime: expected local, docker or kubernetes, got "vm"/);
  });
});
