/**
 * The Node/V8 flags the control plane runs with, wherever it is started: `corral up` passes
 * them on its command line, the Kubernetes Deployment in NODE_OPTIONS (deploy/k8s/base,
 * checked by test/deploy/manifests.test.ts), and the attached-streams benchmark (P4) measures
 * the process started with them.
 *
 * Why: the control plane holds thousands of idle streams, and V8 lets its young generation
 * grow to 2 × 64 MiB during bursts of attaches and keeps it committed, about a third of the
 * process's RSS holding 2,000 streams (bench P4: 435 MiB with Node's default, see README
 * "Performance"). Its garbage is short-lived protocol messages, which an 8 MiB semi-space still
 * collects young; capping it costs more frequent (shorter) scavenges under event ingest.
 */
export const CONTROL_PLANE_NODE_FLAGS: readonly string[] = Object.freeze(["--max-semi-space-size=8"]);
