import type { RunStatus } from "@corral/contract/corral/scheduler/v1/run_service_pb.ts";
import { STATUS_NAMES } from "../format.ts";

/** The status as a word, coloured too (never colour alone). */
export function StatusBadge({ status }: { status: RunStatus }) {
  const name = STATUS_NAMES[status] ?? "unknown";
  return <span class={`badge status-${name}`}>{name}</span>;
}
