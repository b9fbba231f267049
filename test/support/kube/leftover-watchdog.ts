import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

// Reads "+g pgid", "-g pgid", "+d dir" and "-d dir" lines. At the end of its input, which comes
// however the test process ends (even by SIGKILL, where no 'exit' handler runs), it kills every
// process group still listed, then removes every directory still listed.
const WATCHDOG_SCRIPT = `
groups=""
dirs=""
nl='
'
while IFS= read -r line; do
  case "$line" in
    "+g "*) groups="$groups \${line#+g }" ;;
    "-g "*) kept=""; for g in $groups; do [ "$g" = "\${line#-g }" ] || kept="$kept $g"; done; groups="$kept" ;;
    "+d "*) dirs="$dirs\${line#+d }$nl" ;;
    "-d "*) dirs=$(printf '%s' "$dirs" | grep -vxF -- "\${line#-d }"; printf x); dirs=\${dirs%x} ;;
  esac
done
for g in $groups; do kill -9 "-$g" 2>/dev/null; done
[ -n "$dirs" ] || exit 0
sleep 1 # the processes that write there are dying too
printf '%s' "$dirs" | while IFS= read -r d; do [ -n "$d" ] && rm -rf -- "$d"; done
`;

let watchdog: ChildProcess | undefined;
const groups = new Set<number>();
const dirs = new Set<string>();

/**
 * Makes a process group die with the test process. PR_SET_PDEATHSIG (setpriv) reaches only a
 * direct child; a pod's process may have children of its own (a shell's background job, the
 * agent's git), which this reaches too.
 */
export function watchProcessGroup(pgid: number): void {
  groups.add(pgid);
  send(`+g ${pgid}`);
}

/** The group is gone: forget it, so that a reused id is never killed. */
export function unwatchProcessGroup(pgid: number): void {
  if (groups.delete(pgid)) send(`-g ${pgid}`);
}

/** Removes a temp dir (an etcd data dir is 120 MB) if the test process dies before its owner does. */
export function watchTempDir(dir: string): void {
  if (dir.includes("\n")) return;
  dirs.add(dir);
  send(`+d ${dir}`);
}

export function unwatchTempDir(dir: string): void {
  if (dirs.delete(dir)) send(`-d ${dir}`);
}

function send(line: string): void {
  if (!watchdog) {
    // Its own session, so that a terminal's Ctrl-C does not end it before the test process.
    watchdog = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT], { stdio: ["pipe", "ignore", "ignore"], detached: true });
    watchdog.on("error", () => {});
    watchdog.stdin!.on("error", () => {});
    // Neither the watchdog nor its pipe may keep the test process alive.
    watchdog.unref();
    (watchdog.stdin as unknown as { unref(): void }).unref();
    // On a normal exit, clean up at once, before the watchdog even reads its end of input.
    process.once("exit", () => {
      for (const pgid of groups) {
        try {
          process.kill(-pgid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });
  }
  watchdog.stdin!.write(`${line}\n`);
}
