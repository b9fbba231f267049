import { readFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";

export interface ProcStat {
  /** Field 3: R, S, D, Z (zombie), ... */
  state: string;
  /** Field 5: the process group. */
  pgrp: number;
  /** Field 22: when the process started, in clock ticks after boot. Fixed for the process's life. */
  startTime: number;
}

/** /proc/<pid>/stat, or undefined when there is no such process. */
export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  return parse(await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined));
}

/**
 * The synchronous form, for the moment right after spawn(): before the event loop turns, the
 * child cannot have been reaped, so its entry is certainly there even if it already exited.
 */
export function readProcStatSync(pid: number): ProcStat | undefined {
  try {
    return parse(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

function parse(text: string | undefined): ProcStat | undefined {
  if (!text) return undefined;
  // Field 2 is the command name in parentheses, which may itself hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const startTime = Number(fields[22 - 3]);
  return fields[0] && Number.isSafeInteger(startTime) ? { state: fields[0], pgrp: Number(fields[5 - 3]), startTime } : undefined;
}

/**
 * Whether pid still names the process that started at startTime: "alive", "gone" (no such
 * process, or only its zombie), or "other" (the pid was recycled).
 */
export async function processIdentity(pid: number, startTime: number): Promise<"alive" | "gone" | "other"> {
  const stat = await readProcStat(pid);
  if (!stat) return "gone";
  if (stat.startTime !== startTime) return "other";
  return stat.state === "Z" || stat.state === "X" ? "gone" : "alive";
}

/** Whether any process of the group is still alive (zombies, dead but not yet reaped, are not). */
export async function groupAlive(pgid: number): Promise<boolean> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readProcStat(Number(entry));
    if (stat?.pgrp === pgid && stat.state !== "Z" && stat.state !== "X") return true;
  }
  return false;
}
