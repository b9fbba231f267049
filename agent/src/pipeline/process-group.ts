import { readdir, readFile } from "node:fs/promises";

/**
 * Whether any member of a process group is still running. Zombies do not count: an orphaned
 * grandchild that already died waits for init to reap it, and some inits (a Node PID 1, the
 * sandbox VM's init) reap lazily or never, so `kill(-pgid, 0)` alone would keep us waiting
 * on processes that hold no resources and can never run again.
 */
export async function isProcessGroupAlive(pgid: number): Promise<boolean> {
  if (!signalProcessGroup(pgid, 0)) return false;
  if (process.platform !== "linux") return true;
  return hasLiveMember(pgid);
}

/** Sends a signal to every process of the group; false when the group no longer exists. */
export function signalProcessGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    // EPERM means the group exists but holds a process we may not signal: still alive.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function hasLiveMember(pgid: number): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    return true;
  }
  const states = await Promise.all(entries.filter((entry) => /^\d+$/.test(entry)).map(readState));
  return states.some((state) => state !== undefined && state.pgrp === pgid && state.state !== "Z" && state.state !== "X");
}

async function readState(pid: string): Promise<{ state: string; pgrp: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "latin1");
    // The command name sits in parentheses and may itself contain spaces or parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0] ?? "", pgrp: Number(fields[2]) };
  } catch {
    return undefined; // exited while we looked
  }
}
