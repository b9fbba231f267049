import assert from "node:assert/strict";
import { z } from "zod";
import { ConfigError, duration, listenAddress, loadConfig, logLevel, postgresUrl } from "@corral/plumbing/config.ts";

const shape = {
  CORRAL_X_LISTEN: listenAddress("127.0.0.1:8700"),
  DATABASE_URL: postgresUrl,
  CORRAL_LOG_LEVEL: logLevel,
  CORRAL_LEASE: duration("30s"),
  CORRAL_MAX: z.coerce.number().int().positive().default(4),
};

describe("loadConfig", () => {
  it("applies defaults and parses values", () => {
    const config = loadConfig(shape, { DATABASE_URL: "postgres://u@h/db", CORRAL_LEASE: "5m", CORRAL_X_LISTEN: "[::1]:0" });
    assert.deepEqual(config.CORRAL_X_LISTEN, { host: "::1", port: 0 });
    assert.equal(config.CORRAL_LEASE, 300_000);
    assert.equal(config.CORRAL_LOG_LEVEL, "info");
    assert.equal(config.CORRAL_MAX, 4);
    assert.ok(Object.isFrozen(config));
  });

  it("treats an empty variable as unset", () => {
    const config = loadConfig(shape, { DATABASE_URL: "postgresql://h/db", CORRAL_LOG_LEVEL: "" });
    assert.equal(config.CORRAL_LOG_LEVEL, "info");
  });

  it("names every bad variable, and only those", () => {
    const error = (() => {
      try {
        loadConfig(shape, { CORRAL_X_LISTEN: "localhost", CORRAL_LEASE: "soon", CORRAL_LOG_LEVEL: "loud", CORRAL_MAX: "-1" });
      } catch (e) {
        return e;
      }
      return assert.fail("expected a ConfigError");
    })();
    assert.ok(error instanceof ConfigError);
    assert.deepEqual([...error.variables].sort(), ["CORRAL_LEASE", "CORRAL_LOG_LEVEL", "CORRAL_MAX", "CORRAL_X_LISTEN", "DATABASE_URL"]);
    assert.match(error.message, /CORRAL_X_LISTEN: expected host:port, got "localhost"/);
    assert.match(error.message, /CORRAL_LEASE: expected a duration/);
  });

  it("rejects a port out of range and a non-postgres URL", () => {
    assert.throws(() => loadConfig(shape, { DATABASE_URL: "mysql://h/db" }), /DATABASE_URL: expected a postgres/);
    assert.throws(() => loadConfig(shape, { DATABASE_URL: "postgres://h/db", CORRAL_X_LISTEN: "h:70000" }), /CORRAL_X_LISTEN/);
  });
});
