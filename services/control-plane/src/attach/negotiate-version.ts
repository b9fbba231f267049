import { failedPrecondition, detail } from "@corral/plumbing/errors.ts";
import { ProtocolVersionMismatchSchema } from "@corral/contract/corral/common/v1/error_details_pb.ts";

/** Runner protocol versions this control plane speaks; 2 adds event batches. */
export const SUPPORTED_PROTOCOL = { min: 1, max: 2 } as const;

/** The newest version both sides speak; FAILED_PRECONDITION naming the supported range if none. */
export function negotiateVersion(offeredMin: number, offeredMax: number, supported: { min: number; max: number } = SUPPORTED_PROTOCOL): number {
  const low = Math.max(offeredMin, supported.min);
  const high = Math.min(offeredMax, supported.max);
  if (offeredMin < 1 || offeredMax < offeredMin || low > high) {
    throw failedPrecondition(
      `no common runner protocol version: the agent offers ${offeredMin}..${offeredMax}, this control plane supports ${supported.min}..${supported.max}`,
      detail(ProtocolVersionMismatchSchema, { supportedMin: supported.min, supportedMax: supported.max, offeredMin, offeredMax }),
    );
  }
  return high;
}
