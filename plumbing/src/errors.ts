import { Code, ConnectError } from "@connectrpc/connect";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import {
  FieldViolationsSchema,
  type FieldViolation,
} from "@corral/contract/corral/common/v1/error_details_pb.ts";

/** A typed detail attached to an error: one of the contract's error-detail messages. */
export interface ErrorDetail<Desc extends DescMessage = DescMessage> {
  desc: Desc;
  value: MessageInitShape<Desc>;
}

export function detail<Desc extends DescMessage>(
  desc: Desc,
  value: MessageInitShape<Desc>,
): ErrorDetail<Desc> {
  return { desc, value };
}

/**
 * The one error vocabulary of Corral's domain modules. Domain code throws these; the error
 * interceptor turns them into gRPC statuses with typed details, so handlers stay thin and
 * the mapping lives in one place.
 */
export class DomainError extends Error {
  readonly code: Code;
  readonly details: ErrorDetail[];

  constructor(code: Code, message: string, details: ErrorDetail[] = []) {
    super(message);
    this.name = "DomainError";
    this.code = code;
    this.details = details;
  }

  toConnectError(): ConnectError {
    const details = this.details.map((d) => ({ desc: d.desc, value: d.value }));
    return new ConnectError(this.message, this.code, undefined, details, this);
  }
}

/** INVALID_ARGUMENT naming every rejected field. */
export function invalidArgument(violations: ReadonlyArray<Pick<FieldViolation, "field" | "description">>): DomainError {
  const summary = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  return new DomainError(Code.InvalidArgument, `invalid request: ${summary}`, [
    detail(FieldViolationsSchema, { violations: violations.map((v) => ({ ...v })) }),
  ]);
}

export function notFound(message: string): DomainError {
  return new DomainError(Code.NotFound, message);
}

export function unauthenticated(message = "invalid or expired credential"): DomainError {
  return new DomainError(Code.Unauthenticated, message);
}

export function failedPrecondition(message: string, ...details: ErrorDetail[]): DomainError {
  return new DomainError(Code.FailedPrecondition, message, details);
}

export function resourceExhausted(message: string, ...details: ErrorDetail[]): DomainError {
  return new DomainError(Code.ResourceExhausted, message, details);
}

export function alreadyExists(message: string, ...details: ErrorDetail[]): DomainError {
  return new DomainError(Code.AlreadyExists, message, details);
}

export function aborted(message: string, ...details: ErrorDetail[]): DomainError {
  return new DomainError(Code.Aborted, message, details);
}

export function dataLoss(message: string, ...details: ErrorDetail[]): DomainError {
  return new DomainError(Code.DataLoss, message, details);
}

export function unavailable(message: string): DomainError {
  return new DomainError(Code.Unavailable, message);
}

/** Collects field violations so that a validator reports all of them at once. */
export function createViolations() {
  const list: { field: string; description: string }[] = [];
  return {
    add(field: string, description: string): void {
      list.push({ field, description });
    },
    get count(): number {
      return list.length;
    },
    throwIfAny(): void {
      if (list.length > 0) throw invalidArgument(list);
    },
  };
}
