import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { createLogger } from "@corral/plumbing/logger.ts";

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  return { lines, logger: createLogger({ name: "test", level: "debug", destination }) };
}

describe("logger", () => {
  it("writes JSON records with level names", () => {
    const { lines, logger } = capture();
    logger.info({ runId: "r1" }, "hello");
    const record = JSON.parse(lines[0]!);
    assert.equal(record.level, "info");
    assert.equal(record.msg, "hello");
    assert.equal(record.runId, "r1");
  });

  it("redacts credentials, tokens, passwords and authorization at the top level and one level down", () => {
    const { lines, logger } = capture();
    const secrets = ["cred-SECRET-1", "tok-SECRET-2", "pw-SECRET-3", "Bearer SECRET-4", "git-SECRET-5"];
    logger.info({
      credential: secrets[0],
      hello: { credential: secrets[0], token: secrets[1] },
      git: { password: secrets[2] },
      headers: { authorization: secrets[3] },
      assignment: { gitCredentials: { username: "x", password: secrets[4] } },
    }, "attach");
    const text = lines.join("\n");
    for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    assert.match(text, /\[redacted\]/);
  });
});
