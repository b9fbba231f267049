import { Artifact } from "./artifact.ts";
import { Attempt } from "./attempt.ts";
import { Blob } from "./blob.ts";
import { Completion } from "./completion.ts";
import { Credential } from "./credential.ts";
import { Event } from "./event.ts";
import { Run } from "./run.ts";
import { Upload } from "./upload.ts";

export { Artifact, Attempt, Blob, Completion, Credential, Event, Run, Upload };
export { runStatuses, runtimes, type RunResult, type RunStatus, type Runtime } from "./run.ts";
export type { RuntimeHandle } from "./attempt.ts";
export { uploadStates, type UploadState } from "./upload.ts";

export const entities = [Run, Attempt, Event, Completion, Credential, Blob, Upload, Artifact];
