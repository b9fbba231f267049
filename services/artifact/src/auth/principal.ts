/** Who is calling: a service with the shared token (any run), or one attempt of one run. */
export type Principal =
  | { kind: "service" }
  | { kind: "attempt"; runId: string; attempt: number; /** Stored hash of the credential, to check it is still live later. */ tokenHash: string };
