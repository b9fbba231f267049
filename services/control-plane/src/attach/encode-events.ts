import { toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { EventBatchSchema, type EventBatch } from "@corral/contract/corral/runner/v1/runner_service_pb.ts";

/**
 * Each event of a batch as protobuf binary, exactly as `toBinary(RunEventSchema, event)` gives
 * it. toBinary has a fixed cost per call several times that of encoding a small event, so the
 * batch is encoded once and cut at its length prefixes (in an EventBatch every event is field 1,
 * length-delimited, and its bytes are the event's own encoding). The pieces share one buffer.
 */
export function encodeEvents(batch: EventBatch): Uint8Array[] {
  const reader = new BinaryReader(toBinary(EventBatchSchema, batch));
  const encoded: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) encoded.push(reader.bytes());
    else reader.skip(wireType, field); // the batch's own unknown fields
  }
  if (encoded.length !== batch.events.length) throw new Error(`encoded ${encoded.length} of ${batch.events.length} events`);
  return encoded;
}
