import { execFile, spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const CORRAL_CLI = fileURLToPath(new URL("../../cli/bin/corral.js", import.meta.url));

export interface CorralUpProcess {
  child: ChildProcess;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  /** The URLs it prints once it serves, by name ("scheduler", "control plane", "artifact", "dashboard"). */
  ready: Promise<Record<string, string>>;
  /** Ctrl-C, then its exit code. */
  stop(): Promise<number | null>;
}

/**
 * The environment of a `corral up` on free ports with its state in `home`, on the embedded
 * database (no DATABASE_URL), with `extra` on top.
 */
export function corralUpEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CORRAL_HOME: home,
    CORRAL_SCHEDULER_LISTEN: "127.0.0.1:0",
    CORRAL_CONTROL_PLANE_LISTEN: "127.0.0.1:0",
    CORRAL_ARTIFACT_LISTEN: "127.0.0.1:0",
    CORRAL_WEB_LISTEN: "127.0.0.1:0",
    ...extra,
  };
  delete env.DATABASE_URL;
  return env;
}

/** `corral up <args>` as a process, as a user starts it. */
export function startCorralUp(args: string[], env: NodeJS.ProcessEnv): CorralUpProcess {
  const child = spawn(process.execPath, [CORRAL_CLI, "up", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  child.stdout!.on("data", (chunk) => (text += chunk));
  child.stderr!.on("data", (chunk) => (text += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ready = new Promise<Record<string, string>>((resolve, reject) => {
    child.stdout!.on("data", () => {
      if (!text.includes("Press Ctrl-C to stop.")) return;
      const urls: Record<string, string> = {};
      for (const [, name, url] of text.matchAll(/^ {2}(scheduler|control plane|artifact|dashboard) +(http:\/\/\S+)$/gm)) urls[name!] = url!;
      resolve(urls);
    });
    void exited.then((code) => reject(new Error(`corral up exited with ${code}:\n${text}`)));
  });
  ready.catch(() => {}); // a caller that never awaits it still sees the exit through stop()
  return {
    child,
    output: () => text,
    ready,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      return exited;
    },
  };
}

/** `corral <args>` against a scheduler, to its end: exit code and output. */
export function runCorral(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CORRAL_CLI, ...args], { env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (_error, stdout, stderr) =>
      resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}
