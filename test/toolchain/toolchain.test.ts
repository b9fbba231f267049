import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const json = (path: string) => JSON.parse(readFileSync(`${ROOT}${path}`, "utf8")) as Record<string, unknown>;

describe("toolchain", () => {
  it("runs on Node 24, as package.json, .nvmrc and the node devDependency say", () => {
    assert.match(process.version, /^v24\./);
    const root = json("package.json") as { engines: { node: string }; devDependencies: Record<string, string> };
    assert.match(root.devDependencies.node!, /^24\.\d+\.\d+$/);
    assert.equal(readFileSync(`${ROOT}.nvmrc`, "utf8").trim(), "24");
    assert.equal(root.engines.node, ">=24 <25");
  });

  it("pins every dependency of every workspace to an exact version", () => {
    const root = json("package.json") as { workspaces: string[] };
    for (const path of ["package.json", ...root.workspaces.map((w) => `${w}/package.json`)]) {
      const manifest = json(path) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
      for (const [name, version] of Object.entries({ ...manifest.dependencies, ...manifest.devDependencies })) {
        assert.match(version, /^\d+\.\d+\.\d+(-[\w.]+)?$/, `${path}: ${name}@${version} is not exact`);
      }
    }
  });

  it("uses one version of protobuf-es and its generator, and of every MikroORM package", () => {
    const lock = json("package-lock.json") as { packages: Record<string, { version: string }> };
    const version = (name: string) => lock.packages[`node_modules/${name}`]?.version;
    assert.equal(version("@bufbuild/protobuf"), version("@bufbuild/protoc-gen-es"));
    const orm = ["core", "postgresql", "migrations"].map((p) => version(`@mikro-orm/${p}`));
    assert.equal(new Set(orm).size, 1, `MikroORM versions differ: ${orm}`);
  });

  it("loads the runtime libraries on this Node", async () => {
    for (const name of ["@kubernetes/client-node", "@opentelemetry/sdk-node", "@mikro-orm/postgresql", "@connectrpc/connect-node", "@grpc/grpc-js"]) {
      const module = (await import(name)) as Record<string, unknown>;
      assert.ok(Object.keys(module).length > 0, `${name} exports nothing`);
    }
  });
});
