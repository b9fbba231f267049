import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "@corral/plumbing/config.ts";
import { schedulerConfig } from "@corral/scheduler/config.ts";
import { dockerSettings, parseMounts } from "@corral/scheduler/runtime/docker/docker-settings.ts";
import { engineAddress } from "@corral/scheduler/runtime/docker/engine-connection.ts";
import { compareVersions } from "@corral/scheduler/runtime/docker/preflight-docker.ts";

const DATABASE_URL = "postgres://u@127.0.0.1:5432/d";

describe("docker runtime: settings", () => {
  it("resolves the engine from CORRAL_DOCKER_HOST, else DOCKER_HOST, else the default socket", () => {
    const settings = (env: Record<string, string>, processEnv: NodeJS.ProcessEnv = {}) =>
      dockerSettings(loadConfig(schedulerConfig, { DATABASE_URL, ...env }), {}, processEnv);
    assert.equal(settings({}).address().socketPath, "/var/run/docker.sock");
    assert.equal(settings({}, { DOCKER_HOST: "unix:///run/podman/podman.sock" }).address().socketPath, "/run/podman/podman.sock");
    assert.equal(settings({ CORRAL_DOCKER_HOST: "tcp://10.1.2.3:2375" }, { DOCKER_HOST: "unix:///x.sock" }).address().host, "10.1.2.3");
  });

  it("compiles the container shape, with the control plane agents reach", () => {
    const config = loadConfig(schedulerConfig, {
      DATABASE_URL,
      CORRAL_CONTROL_PLANE_URL: "http://127.0.0.1:8701",
      CORRAL_DOCKER_CONTROL_PLANE_URL: "http://host.docker.internal:8701",
      CORRAL_DOCKER_AGENT_IMAGE: "registry.example/corral-agent:7",
      CORRAL_DOCKER_NETWORK: "corral",
      CORRAL_DOCKER_SCOPE: "team-a",
      CORRAL_DOCKER_DEFAULT_MEMORY: "1GiB",
      CORRAL_DOCKER_DEFAULT_PIDS: "512",
      CORRAL_DOCKER_WORK_DIR_SIZE: "2GiB",
      CORRAL_DOCKER_MOUNTS: "/srv/git:/srv/git:ro, /var/cache/corral:/cache",
    });
    const settings = dockerSettings(config, { CORRAL_LOG_LEVEL: "info" });
    assert.equal(settings.controlPlaneUrl, "http://host.docker.internal:8701");
    assert.deepEqual(settings.shape, {
      scope: "team-a",
      image: "registry.example/corral-agent:7",
      network: "corral",
      user: "10001:10001",
      defaults: { cpuMillis: 1000, memoryBytes: 1024 ** 3, pids: 512, workDirBytes: 2 * 1024 ** 3 },
      tmpBytes: 256 * 1024 ** 2,
      mounts: [
        { source: "/srv/git", target: "/srv/git", readOnly: true },
        { source: "/var/cache/corral", target: "/cache", readOnly: false },
      ],
      agentEnv: { CORRAL_LOG_LEVEL: "info" },
    });
    assert.equal(dockerSettings(loadConfig(schedulerConfig, { DATABASE_URL }), {}).controlPlaneUrl, "http://127.0.0.1:8701");
  });

  it("rejects bad values, naming the variable", () => {
    const invalid = (env: Record<string, string>, variable: string) =>
      assert.throws(
        () => loadConfig(schedulerConfig, { DATABASE_URL, ...env }),
        (error: unknown) => error instanceof ConfigError && error.message.includes(variable),
      );
    invalid({ CORRAL_DOCKER_SCOPE: "a b" }, "CORRAL_DOCKER_SCOPE");
    invalid({ CORRAL_DOCKER_USER: "10001:10001:1" }, "CORRAL_DOCKER_USER");
    invalid({ CORRAL_DOCKER_DEFAULT_MEMORY: "lots" }, "CORRAL_DOCKER_DEFAULT_MEMORY");
    invalid({ CORRAL_DOCKER_CONTROL_PLANE_URL: "not a url" }, "CORRAL_DOCKER_CONTROL_PLANE_URL");
    for (const mounts of ["relative:/x", "/x:relative", "/x", "/x:/y:rwx", "/x:/y:ro:extra"]) {
      assert.throws(
        () => parseMounts(mounts),
        (error: unknown) => error instanceof ConfigError && error.message.includes("CORRAL_DOCKER_MOUNTS") && error.message.includes(mounts),
        mounts,
      );
    }
    assert.deepEqual(parseMounts(" , "), []);
  });

  it("parses engine addresses, and refuses schemes it cannot attach stdin over", async () => {
    assert.deepEqual(engineAddress("unix:///var/run/docker.sock"), { url: "unix:///var/run/docker.sock", socketPath: "/var/run/docker.sock", protocol: "http" });
    assert.deepEqual(engineAddress("tcp://10.0.0.5"), { url: "tcp://10.0.0.5", host: "10.0.0.5", port: 2375, protocol: "http" });
    assert.deepEqual(engineAddress("http://engine:2380"), { url: "http://engine:2380", host: "engine", port: 2380, protocol: "http" });
    assert.throws(() => engineAddress("ssh://me@engine"), /the ssh scheme is not supported/);
    assert.throws(() => engineAddress("/var/run/docker.sock"), /is not an engine address/);
    assert.throws(() => engineAddress("unix://"), /names no socket/);
    assert.throws(() => engineAddress("https://engine:2376"), /CORRAL_DOCKER_CERT_PATH/);
    const certs = await mkdtemp(join(tmpdir(), "corral-docker-certs-"));
    try {
      for (const name of ["ca.pem", "cert.pem", "key.pem"]) await writeFile(join(certs, name), name);
      const tls = engineAddress("https://engine:2376", certs);
      assert.deepEqual([tls.protocol, tls.port, tls.tls?.ca.toString(), tls.tls?.key.toString()], ["https", 2376, "ca.pem", "key.pem"]);
    } finally {
      await rm(certs, { recursive: true, force: true });
    }
  });

  it("compares API versions numerically", () => {
    assert.equal(compareVersions("1.41", "1.40"), 1);
    assert.equal(compareVersions("1.9", "1.40"), -1);
    assert.equal(compareVersions("1.40", "1.40"), 0);
    assert.equal(compareVersions("2", "1.40"), 1);
  });
});
