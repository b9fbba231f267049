import type { ConnectRouter } from "@connectrpc/connect";
import { createRegistry, toBinary, type DescFile, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as v1 from "@corral/contract/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "@corral/contract/grpc/reflection/v1alpha/reflection_pb.ts";

/** A reflection answer without its original_request echo; v1 and v1alpha share this shape. */
type Answer = {
  validHost: string;
  messageResponse:
    | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
    | { case: "listServicesResponse"; value: { service: { name: string }[] } }
    | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
    | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };
};

// gRPC status codes carried in ErrorResponse.error_code.
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/**
 * gRPC server reflection, v1 and v1alpha (which grpcurl and older tools still use), served
 * from the generated file descriptors, so that `grpcurl -plaintext HOST:PORT list` works
 * without proto files.
 */
export function registerReflection(router: ConnectRouter, files: DescFile[], serviceNames: string[]): void {
  const index = createIndex(files);
  const services = [...serviceNames].sort();
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield { ...answer(index, services, request), originalRequest: request };
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield { ...answer(index, services, request), originalRequest: request };
    },
  });
}

interface Index {
  byName: Map<string, DescFile>;
  symbols: Registry;
}

function createIndex(roots: DescFile[]): Index {
  const byName = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (byName.has(file.name)) return;
    byName.set(file.name, file);
    file.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  return { byName, symbols: createRegistry(...byName.values()) };
}

function answer(
  index: Index,
  services: string[],
  request: v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest,
): Answer {
  const validHost = request.host;
  const error = (errorCode: number, errorMessage: string): Answer => ({
    validHost,
    messageResponse: { case: "errorResponse", value: { errorCode, errorMessage } },
  });
  const fileResponse = (file: DescFile | undefined, what: string): Answer =>
    file
      ? {
          validHost,
          messageResponse: {
            case: "fileDescriptorResponse",
            value: { fileDescriptorProto: withDependencies(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
          },
        }
      : error(NOT_FOUND, `${what} not found`);

  const req = request.messageRequest;
  switch (req.case) {
    case "listServices":
      return { validHost, messageResponse: { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } } };
    case "fileByFilename":
      // DescFile.name has no ".proto" suffix; clients ask with it.
      return fileResponse(index.byName.get(req.value.replace(/\.proto$/, "")), `file ${req.value}`);
    case "fileContainingSymbol":
      return fileResponse(fileOfSymbol(index.symbols, req.value), `symbol ${req.value}`);
    case "allExtensionNumbersOfType":
      // Corral's contract declares no extensions.
      return index.symbols.getMessage(req.value)
        ? { validHost, messageResponse: { case: "allExtensionNumbersResponse", value: { baseTypeName: req.value, extensionNumber: [] } } }
        : error(NOT_FOUND, `type ${req.value} not found`);
    case "fileContainingExtension":
      return error(NOT_FOUND, `extension ${req.value.extensionNumber} of ${req.value.containingType} not found`);
    default:
      return error(UNIMPLEMENTED, "unsupported reflection request");
  }
}

function fileOfSymbol(symbols: Registry, symbol: string): DescFile | undefined {
  const name = symbol.replace(/^\./, "");
  const direct = symbols.get(name);
  if (direct) return direct.file;
  // Methods, fields and enum values are "<parent>.<member>": answer with the parent's file.
  const cut = name.lastIndexOf(".");
  const parent = symbols.get(name.slice(0, cut));
  const member = name.slice(cut + 1);
  if (parent?.kind === "service" && parent.methods.some((m) => m.name === member)) return parent.file;
  if (parent?.kind === "message" && parent.fields.some((f) => f.name === member)) return parent.file;
  return undefined;
}

/** The file first, then every file it imports, transitively, each once. */
function withDependencies(file: DescFile): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.set(f.name, f);
    f.dependencies.forEach(visit);
  };
  visit(file);
  return [...seen.values()];
}
