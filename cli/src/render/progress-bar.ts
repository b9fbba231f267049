/** Bytes as a person reads them: "512 B", "3.4 KiB", "120.0 MiB", "1.00 GiB". */
export function bytesText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 && unit >= 2 ? 2 : 1)} ${units[unit]}`;
}

/**
 * A one-line progress bar redrawn in place (carriage return) on a terminal:
 *
 *     report.tar [###########.............]  46%  118.0 MiB / 256.0 MiB  92.1 MiB/s
 *
 * Redrawn at most every `intervalMs`, so a fast transfer does not spend its time drawing.
 */
export function createProgressBar(options: {
  label: string;
  total: number;
  write: (text: string) => void;
  /** Terminal width; the bar shrinks to fit. */
  columns?: number;
  intervalMs?: number;
  now?: () => number;
}) {
  const now = options.now ?? (() => performance.now());
  const interval = options.intervalMs ?? 100;
  const started = now();
  let lastDraw = Number.NEGATIVE_INFINITY;
  let done = 0;

  const line = () => {
    const fraction = options.total > 0 ? Math.min(1, done / options.total) : 1;
    const seconds = (now() - started) / 1000;
    const rate = seconds > 0 ? `${bytesText(done / seconds)}/s` : "";
    const tail = `${String(Math.floor(fraction * 100)).padStart(3)}%  ${bytesText(done)} / ${bytesText(options.total)}  ${rate}`;
    const label = options.label.length > 30 ? `…${options.label.slice(-29)}` : options.label;
    const width = Math.max(10, Math.min(40, (options.columns ?? 80) - label.length - tail.length - 5));
    const filled = Math.round(fraction * width);
    return `${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${tail}`;
  };

  return {
    /** `bytes` more were transferred. */
    advance(bytes: number): void {
      done += bytes;
      if (now() - lastDraw < interval) return;
      lastDraw = now();
      options.write(`\r${line()}`);
    },
    /** Draws the final state and ends the line. */
    finish(): void {
      options.write(`\r${line()}\n`);
    },
  };
}
