import { up } from "./commands/up.ts";

const USAGE = `usage: corral <command> [options]

commands:
  up      start PostgreSQL (embedded unless DATABASE_URL is set), the scheduler, the control
          plane and the artifact service; Ctrl-C stops everything
`;

const [command, ...args] = process.argv.slice(2);
switch (command) {
  case "up":
    process.exitCode = await up(args);
    break;
  case undefined:
  case "help":
  case "--help":
  case "-h":
    process.stdout.write(USAGE);
    break;
  default:
    process.stderr.write(`corral: unknown command "${command}"\n\n${USAGE}`);
    process.exitCode = 2;
}
