const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const second = 1000;
const minute = 60 * second;
const hour = 60 * minute;

/**
 * Bounds of a submitted run. They keep one run from exhausting the scheduler, the database
 * row or the sandbox, and keep every value inside what git, execve and the runtimes accept
 * (execve refuses a single argument or variable over 128 KiB, for example).
 */
export const submitRunLimits = {
  repositoryUrlLength: 2048,
  // Ref names become file names under .git/refs; most file systems stop at 255 bytes.
  refNameBytes: 255,
  commandTemplateBytes: 8 * KiB,
  promptBytes: 256 * KiB,
  validationSteps: 32,
  stepCommandBytes: 64 * KiB,
  runTimeoutMs: 24 * hour,
  graceMs: 5 * minute,
  cpuMillis: { min: 100, max: 64_000 },
  memoryBytes: { min: 64 * MiB, max: 256 * GiB },
  pids: { min: 32, max: 65_536 },
  diskBytes: { min: 64 * MiB, max: 1024 * GiB },
  artifactGlobs: 64,
  artifactGlobLength: 1024,
  commitAuthorNameLength: 256,
  commitAuthorEmailLength: 254,
  commitMessageBytes: 64 * KiB,
  // A subject line derived from the prompt is cut here, the usual width of a git subject.
  derivedCommitSubjectLength: 72,
  envKeyLength: 128,
  envValueBytes: 32 * KiB,
  envTotalBytes: 256 * KiB,
  labels: 64,
  labelKeyLength: 63,
  labelValueLength: 256,
  requestIdLength: 128,
} as const;
