import assert from "node:assert/strict";
import fc from "fast-check";
import { createSecretRedactor, REDACTED } from "../../agent/src/pipeline/redact-secrets.ts";

/** Feeds `text` to a fresh redactor in the given pieces and returns everything it let through. */
function redact(secrets: string[], pieces: string[]): string {
  const redactor = createSecretRedactor(secrets);
  const out = pieces.map((piece) => Buffer.from(redactor.write(Buffer.from(piece))).toString("utf8"));
  return out.join("") + Buffer.from(redactor.end()).toString("utf8");
}

/** Cuts `text` at the given offsets. */
function split(text: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((cut) => cut % (text.length + 1)))].sort((a, b) => a - b);
  return [...points, text.length].map((end, index) => text.slice(index === 0 ? 0 : points[index - 1], end));
}

describe("secret redaction of output streams", () => {
  it("replaces a secret split across chunks", () => {
    assert.equal(redact(["s3cr3t-token"], ["fatal: https://x:s3cr", "3t-tok", "en@host/repo\n"]), `fatal: https://x:${REDACTED}@host/repo\n`);
  });

  it("holds back only a possible start of a secret, and releases it at the end", () => {
    const redactor = createSecretRedactor(["abcdef"]);
    assert.equal(Buffer.from(redactor.write(Buffer.from("hello ab"))).toString(), "hello ");
    assert.equal(Buffer.from(redactor.end()).toString(), "ab");
  });

  it("never lets a secret through, however the stream is cut", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 4, maxLength: 12 }), fc.array(fc.string({ maxLength: 20 }), { maxLength: 5 }), fc.array(fc.nat(), { maxLength: 8 }), (secret, fillers, cuts) => {
        const text = fillers.join(secret);
        // However it is cut, the stream comes out as if every occurrence, leftmost first, were replaced in one piece.
        assert.equal(redact([secret], split(text, cuts)), text.split(secret).join(REDACTED));
      }),
    );
  });

  it("passes output through untouched when there is no secret", () => {
    assert.equal(redact([], ["a", "b"]), "ab");
    assert.equal(redact([""], ["a", "b"]), "ab");
  });
});
