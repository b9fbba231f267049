import assert from "node:assert/strict";
import fc from "fast-check";
import { clone, equals } from "@bufbuild/protobuf";
import { SubmitRunRequestSchema } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { validateSubmitRun } from "@corral/scheduler/runs/validate-submit-run.ts";
import { anyMutation, testDefaults, urlWithSecret, validRequest } from "./submit-run-arbitraries.ts";
import { assertResolvedInvariants, violationField, violationsOf } from "./submit-run-expectations.ts";

const runId = fc.uuid();

describe("validateSubmitRun properties", () => {
  it("accepts every well-formed request and resolves it as the contract says", () => {
    fc.assert(
      fc.property(validRequest, runId, (request, id) => {
        const before = clone(SubmitRunRequestSchema, request);
        const result = validateSubmitRun(request, testDefaults, id);
        assertResolvedInvariants(request, result, testDefaults, id);
        assert.ok(equals(SubmitRunRequestSchema, request, before), "the request was modified");
      }),
      { numRuns: 300 },
    );
  });

  it("answers any mutated request with INVALID_ARGUMENT naming only mutated fields, or a sound spec", () => {
    fc.assert(
      fc.property(validRequest, fc.array(anyMutation, { minLength: 1, maxLength: 4 }), runId, (generated, mutations, id) => {
        // fast-check reuses generated values while shrinking; mutate a copy.
        const request = clone(SubmitRunRequestSchema, generated);
        for (const mutation of mutations) mutation.apply(request);
        let result;
        try {
          result = validateSubmitRun(request, testDefaults, id);
        } catch (error) {
          const violations = violationsOf(error);
          const affected = mutations.flatMap((m) => m.affects);
          for (const { field, description } of violations) {
            assert.match(field, violationField);
            assert.ok(description.length > 0);
            assert.ok(affected.some((prefix) => field.startsWith(prefix)), `${field} (${description}) after ${mutations.map((m) => m.name).join("; ")}`);
          }
          return;
        }
        assertResolvedInvariants(request, result, testDefaults, id);
      }),
      { numRuns: 1500 },
    );
  });

  it("refuses a URL carrying a password and never repeats the password", () => {
    fc.assert(
      fc.property(validRequest, urlWithSecret, fc.array(anyMutation, { maxLength: 2 }), runId, (generated, { url, password }, mutations, id) => {
        const request = clone(SubmitRunRequestSchema, generated);
        for (const mutation of mutations) mutation.apply(request);
        if (request.spec === undefined) return;
        request.spec.repositoryUrl = url;
        let error: unknown;
        try {
          validateSubmitRun(request, testDefaults, id);
        } catch (e) {
          error = e;
        }
        const violations = violationsOf(error);
        assert.ok(violations.some((v) => v.field === "spec.repository_url"), url);
        assert.ok(!(error as Error).message.includes(password), "password in the error message");
        for (const v of violations) assert.ok(!v.field.includes(password) && !v.description.includes(password), `password in ${v.field}`);
      }),
      { numRuns: 500 },
    );
  });
});
