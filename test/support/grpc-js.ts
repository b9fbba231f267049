import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO_ROOTS = [fileURLToPath(new URL("../../proto", import.meta.url)), fileURLToPath(new URL("../../proto/vendor", import.meta.url))];

/**
 * Loads .proto files the way any plain gRPC stack does (no generated Connect code), to prove
 * that standard clients work against Corral's servers.
 */
export function loadProto(file: string): grpc.GrpcObject {
  const definition = protoLoader.loadSync(file, {
    includeDirs: PROTO_ROOTS,
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition);
}

/** Walks "a.b.C" through a loaded package. */
export function lookup<T = grpc.ServiceClientConstructor>(root: grpc.GrpcObject, name: string): T {
  let node: unknown = root;
  for (const part of name.split(".")) node = (node as Record<string, unknown>)[part];
  if (!node) throw new Error(`${name} not found in the loaded protos`);
  return node as T;
}

export function hostPort(url: string): string {
  return new URL(url).host;
}

export function unary<Res>(client: grpc.Client, method: string, request: object, deadlineMs = 10_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, Function>)[method]!.bind(client);
    fn(request, { deadline: Date.now() + deadlineMs }, (error: grpc.ServiceError | null, response: Res) =>
      error ? reject(error) : resolve(response),
    );
  });
}

export type ReflectionResponse = {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
};

/** One request on a reflection stream, as grpcurl and other reflection clients do it. */
export function reflect(client: grpc.Client, request: object): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const call = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> }).ServerReflectionInfo();
    call.once("data", (response: ReflectionResponse) => {
      resolve(response);
      call.end();
    });
    call.once("error", reject);
    call.write(request);
  });
}
