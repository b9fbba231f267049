import { submitRunLimits } from "./submit-run-limits.ts";
import { hasControlCharacterOrWhitespace } from "./text-checks.ts";

const supportedSchemes = new Set(["https:", "http:", "ssh:", "git:", "file:"]);
const supportedForms = "a https://, http://, ssh://, git:// or file:// URL or the scp-like form user@host:path";

// [user@]host:path, as git reads it when there is no "://" and no "/" before the first ":".
// The host must start with a letter or digit so it can never become an ssh option.
const scpLike = /^(?:([^@/]*)@)?([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(.*)$/s;

const embeddedCredentials = "must not embed credentials; the scheduler provides git credentials to the run";

/**
 * Why `url` is not an acceptable repository location, or undefined when it is.
 *
 * The answer never quotes the URL: a rejected URL may carry a token, and violations are
 * shown to clients and written to logs.
 */
export function repositoryUrlProblem(url: string): string | undefined {
  if (url === "") return "is required";
  if (url.length > submitRunLimits.repositoryUrlLength) return `must be at most ${submitRunLimits.repositoryUrlLength} characters`;
  if (hasControlCharacterOrWhitespace(url)) return "must not contain whitespace or control characters";
  return url.includes("://") ? schemeUrlProblem(url) : scpLikeProblem(url);
}

function schemeUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // A malformed URL with a token in it still hears why that is wrong.
    const authority = url.slice(url.indexOf("://") + 3).split(/[/?#]/, 1)[0] ?? "";
    return /:.*@/.test(authority) ? embeddedCredentials : `must be ${supportedForms}`;
  }
  if (!supportedSchemes.has(parsed.protocol)) return `must be ${supportedForms}`;
  // Only ssh has a legitimate user name ("git@"); over http a lone user name is usually a
  // token (https://<token>@github.com/...), so any user name counts as a credential there.
  if (parsed.password !== "" || (parsed.username !== "" && parsed.protocol !== "ssh:")) return embeddedCredentials;
  // A query can carry an access token too, and git has no use for either part.
  if (url.includes("?") || url.includes("#")) return "must not have a query or a fragment";
  if (parsed.protocol === "file:") {
    if (parsed.hostname !== "" && parsed.hostname !== "localhost") return "a file:// URL must not name a remote host";
    if (parsed.pathname === "/" || parsed.pathname === "") return "must name a repository path";
    return undefined;
  }
  if (parsed.hostname === "") return "must name a host";
  // ssh would read "-oProxyCommand=..." as an option (CVE-2017-1000117).
  if (parsed.hostname.startsWith("-") || parsed.username.startsWith("-")) return "host and user must not start with '-'";
  if (parsed.pathname === "/" || parsed.pathname === "") return "must name a repository path";
  return undefined;
}

function scpLikeProblem(url: string): string | undefined {
  // "user:secret@host..." is refused however git would read it: even where git sees a host
  // "user" and a path "secret@...", the secret would be stored and shown with the run.
  if (/^[^@/]*:[^@/]*@/.test(url)) return embeddedCredentials;
  const match = scpLike.exec(url);
  if (match === null) return `must be ${supportedForms}`;
  const [, user, , path = ""] = match;
  if (user === "") return "must name a user before '@'";
  if (user !== undefined && user.startsWith("-")) return "host and user must not start with '-'";
  if (path === "") return "must name a repository path after ':'";
  // "<transport>::<address>" runs a git remote helper (ext:: runs any command).
  if (path.startsWith(":")) return `must be ${supportedForms}`;
  if (path.startsWith("-")) return "the repository path must not start with '-'";
  return undefined;
}
