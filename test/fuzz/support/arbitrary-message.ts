import { create, ScalarType, type DescField, type DescMessage, type DescEnum, type MessageShape } from "@bufbuild/protobuf";
import fc from "fast-check";

/**
 * Values a hostile client is likely to try, mixed into every string field: ids and credentials
 * of runs the fuzzer knows (its own and a victim's), path tricks, control characters, SQL and
 * glob metacharacters, huge and empty values.
 */
export interface Dictionary {
  strings: readonly string[];
}

export interface ArbitraryOptions {
  dictionary?: Dictionary;
  /** How deep nested messages go before they are left unset. */
  maxDepth?: number;
  /** Longest generated list or map. */
  maxItems?: number;
}

const INT32 = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 42, 1000];
const UINT32 = [0, 1, 2 ** 32 - 1, 4096];
const INT64 = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 253_402_300_800n, -62_135_596_801n];
const UINT64 = [0n, 1n, 2n ** 64n - 1n, 2n ** 53n];
const HOSTILE = [
  "",
  " ",
  "../../../../etc/passwd",
  "/etc/shadow",
  "a\u0000b",
  "\n\r\t",
  "'; drop table runs; --",
  "%s%n%x",
  "**/*",
  "${HOME}",
  "$(id)",
  "file:///etc",
  "https://example.invalid/repo.git",
  "main",
  "refs/heads/main",
  "x".repeat(5000),
  "\u202e\ufeff\ud800",
  "00000000-0000-0000-0000-000000000000",
];

/**
 * An arbitrary of any message of the contract, derived from its descriptor alone: every field
 * of every kind (scalars at their extremes, enums including unknown numbers, nested messages up
 * to a depth, lists, maps, oneofs with one case or none), strings mixed with a dictionary of
 * known ids and credentials. New fields in the contract are fuzzed without touching this file.
 */
export function arbitraryMessage<Desc extends DescMessage>(desc: Desc, options: ArbitraryOptions = {}): fc.Arbitrary<MessageShape<Desc>> {
  const depth = options.maxDepth ?? 4;
  const maxItems = options.maxItems ?? 4;
  const strings = fc.oneof(
    { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE, ...(options.dictionary?.strings ?? [])) },
  );
  return messageArb(desc, depth, { strings, maxItems }) as fc.Arbitrary<MessageShape<Desc>>;
}

interface Ctx {
  strings: fc.Arbitrary<string>;
  maxItems: number;
}

function messageArb(desc: DescMessage, depth: number, ctx: Ctx): fc.Arbitrary<unknown> {
  const record: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) {
    if (field.oneof) continue;
    const arb = fieldArb(field, depth, ctx);
    if (arb) record[field.localName] = arb;
  }
  for (const oneof of desc.oneofs) {
    const cases = oneof.fields
      .map((field) => {
        const value = singleArb(field, depth, ctx);
        return value?.map((v) => ({ case: field.localName, value: v }));
      })
      .filter((a): a is fc.Arbitrary<{ case: string; value: unknown }> => a !== undefined);
    record[oneof.localName] = fc.oneof({ weight: 1, arbitrary: fc.constant({ case: undefined }) }, ...cases.map((arbitrary) => ({ weight: 3, arbitrary })));
  }
  return fc.record(record, { requiredKeys: [] }).map((init) => create(desc, init as never));
}

function fieldArb(field: DescField, depth: number, ctx: Ctx): fc.Arbitrary<unknown> | undefined {
  switch (field.fieldKind) {
    case "list": {
      const item =
        field.listKind === "scalar" ? scalarArb(field.scalar, ctx) : field.listKind === "enum" ? enumArb(field.enum) : nested(field.message, depth, ctx);
      return item && fc.array(item, { maxLength: ctx.maxItems });
    }
    case "map": {
      const value = field.mapKind === "scalar" ? scalarArb(field.scalar, ctx) : field.mapKind === "enum" ? enumArb(field.enum) : nested(field.message, depth, ctx);
      const key = scalarArb(field.mapKey, ctx).map((k) => String(k));
      return value && fc.dictionary(key, value, { maxKeys: ctx.maxItems, noNullPrototype: true });
    }
    default:
      return singleArb(field, depth, ctx);
  }
}

function singleArb(field: DescField, depth: number, ctx: Ctx): fc.Arbitrary<unknown> | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return scalarArb(field.scalar, ctx);
    case "enum":
      return enumArb(field.enum);
    case "message":
      return nested(field.message, depth, ctx);
    default:
      return undefined;
  }
}

function nested(desc: DescMessage, depth: number, ctx: Ctx): fc.Arbitrary<unknown> | undefined {
  return depth <= 0 ? undefined : messageArb(desc, depth - 1, ctx);
}

function enumArb(desc: DescEnum): fc.Arbitrary<number> {
  // Unknown numbers too: an old server must handle a newer client's values.
  return fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...desc.values.map((v) => v.number)) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 1000 }) });
}

function scalarArb(type: ScalarType, ctx: Ctx): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return ctx.strings;
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.constantFrom(...INT32), fc.integer());
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.constantFrom(...UINT32), fc.nat());
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.constantFrom(...UINT64), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
    default:
      return fc.oneof(fc.constantFrom(...INT64), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
  }
}

/**
 * Mutations of a valid message: one to three of its fields (top-level or one level down) set to
 * an arbitrary value of their type, or cleared. Most of the message stays valid, so the fuzzer
 * gets past the first check and into the deeper ones.
 */
export function mutatedMessage<Desc extends DescMessage>(
  desc: Desc,
  valid: fc.Arbitrary<MessageShape<Desc>>,
  options: ArbitraryOptions = {},
): fc.Arbitrary<MessageShape<Desc>> {
  const replacement = arbitraryMessage(desc, options);
  const paths = fieldPaths(desc);
  if (paths.length === 0) return valid;
  return fc
    .tuple(valid, replacement, fc.array(fc.tuple(fc.constantFrom(...paths), fc.boolean()), { minLength: 1, maxLength: 3 }))
    .map(([base, other, picks]) => {
      const result = create(desc, base as never) as Record<string, unknown>;
      for (const [path, clear] of picks) setPath(result, other as Record<string, unknown>, path, clear);
      return result as MessageShape<Desc>;
    });
}

function fieldPaths(desc: DescMessage): string[][] {
  const paths: string[][] = [];
  const names = (d: DescMessage) => [...d.fields.filter((f) => !f.oneof).map((f) => f.localName), ...d.oneofs.map((o) => o.localName)];
  for (const name of names(desc)) paths.push([name]);
  for (const field of desc.fields) {
    if (field.fieldKind === "message" && !field.oneof) for (const inner of names(field.message)) paths.push([field.localName, inner]);
  }
  return paths;
}

function setPath(target: Record<string, unknown>, source: Record<string, unknown>, path: string[], clear: boolean): void {
  const [head, ...rest] = path as [string, ...string[]];
  if (rest.length === 0) {
    if (clear) {
      const current = target[head];
      target[head] = Array.isArray(current) ? [] : typeof current === "object" && current !== null && "case" in current ? { case: undefined } : source[head];
    } else target[head] = source[head];
    return;
  }
  const inner = target[head] as Record<string, unknown> | undefined;
  const from = source[head] as Record<string, unknown> | undefined;
  if (inner && from) setPath(inner, from, rest, clear);
  else target[head] = from;
}

/**
 * Mutations of a valid stream of messages: one message mutated field by field, replaced by a
 * random one, dropped, duplicated, or a random one inserted; or the stream cut short.
 */
export function mutatedSequence<Desc extends DescMessage>(
  desc: Desc,
  valid: fc.Arbitrary<MessageShape<Desc>[]>,
  options: ArbitraryOptions = {},
): fc.Arbitrary<MessageShape<Desc>[]> {
  const random = arbitraryMessage(desc, options);
  return valid.chain((sequence) =>
    fc.nat({ max: Math.max(0, sequence.length - 1) }).chain((index) =>
      fc.oneof(
        mutatedMessage(desc, fc.constant(sequence[index]!), options).map((m) => sequence.with(index, m)),
        random.map((m) => sequence.with(index, m)),
        random.map((m) => sequence.toSpliced(index, 0, m)),
        fc.constant(sequence.toSpliced(index, 1)),
        fc.constant(sequence.toSpliced(index, 0, sequence[index]!)),
        fc.constant(sequence.slice(0, index)),
      ),
    ),
  );
}
