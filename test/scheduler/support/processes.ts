import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { createLogger, type Logger } from "@corral/plumbing/logger.ts";

const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

/** Now, on the clock of /proc/<pid>/stat's start time (ticks after boot). */
export function uptimeTicks(): number {
  return Math.floor(Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * CLOCK_TICKS);
}

const pids = () => readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).map(Number);

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Live (non-zombie) members of a process group. */
export function groupMembers(pgid: number): number[] {
  return pids().filter((pid) => {
    const fields = statFields(pid);
    return fields !== undefined && fields[0] !== "Z" && Number(fields[5 - 3]) === pgid;
  });
}

export function isAlive(pid: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== "Z";
}

/** argv and environment of one process, NUL-separated as in /proc. */
export function argvAndEnviron(pid: number): { argv: string; environ: string } {
  const read = (file: string) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, "latin1");
    } catch {
      return "";
    }
  };
  return { argv: read("cmdline"), environ: read("environ") };
}

/** Live processes whose environment mentions `text` (a test's work root names its agents). */
export function processesMentioning(text: string): number[] {
  return pids().filter((pid) => pid !== process.pid && isAlive(pid) && argvAndEnviron(pid).environ.includes(text));
}

/** A logger whose JSON records the test can read. */
export function capturingLogger(): { logger: Logger; records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      done();
    },
  });
  return { logger: createLogger({ name: "local-runtime", level: "debug", destination }), records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}
