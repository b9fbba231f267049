import type { CommitSpec } from "@corral/contract/corral/common/v1/run_spec_pb.ts";
import { submitRunLimits } from "./submit-run-limits.ts";
import { characterCount, hasControlCharacter, utf8Bytes } from "./text-checks.ts";
import type { ResolvedRunSpec, SchedulerDefaults } from "./validated-submission.ts";
import type { Violations } from "./violations.ts";

// Deliberately loose: git accepts any local@domain, and "user@localhost" is a real address.
const emailShape = /^[^\s@<>,"]+@[^\s@<>,"]+$/;

/**
 * Checks spec.commit and resolves it: an empty author field takes the configured author,
 * field by field (as the proto says), and an empty message becomes the prompt's first line.
 */
export function checkCommit(
  commit: CommitSpec | undefined,
  prompt: string,
  defaultAuthor: SchedulerDefaults["commitAuthor"],
  violations: Violations,
): ResolvedRunSpec["commit"] {
  const authorName = commit?.authorName ?? "";
  const authorEmail = commit?.authorEmail ?? "";
  const message = commit?.message ?? "";
  if (authorName !== "") {
    if (characterCount(authorName) > submitRunLimits.commitAuthorNameLength) {
      violations.add("spec.commit.author_name", `must be at most ${submitRunLimits.commitAuthorNameLength} characters`);
    } else if (hasControlCharacter(authorName) || /[<>]/.test(authorName)) {
      // git's ident format is "name <email>"; these would corrupt it.
      violations.add("spec.commit.author_name", "must not contain control characters, '<' or '>'");
    } else if (authorName.trim() === "") {
      violations.add("spec.commit.author_name", "must not be blank");
    }
  }
  if (authorEmail !== "") {
    if (authorEmail.length > submitRunLimits.commitAuthorEmailLength) {
      violations.add("spec.commit.author_email", `must be at most ${submitRunLimits.commitAuthorEmailLength} characters`);
    } else if (!emailShape.test(authorEmail) || hasControlCharacter(authorEmail)) {
      violations.add("spec.commit.author_email", "must look like name@domain");
    }
  }
  if (utf8Bytes(message) > submitRunLimits.commitMessageBytes) {
    violations.add("spec.commit.message", `must be at most ${submitRunLimits.commitMessageBytes} bytes`);
  } else if (message.includes("\0")) {
    violations.add("spec.commit.message", "must not contain NUL characters");
  }
  return {
    authorName: authorName === "" ? defaultAuthor.name : authorName,
    authorEmail: authorEmail === "" ? defaultAuthor.email : authorEmail,
    message: message.trim() === "" ? subjectFromPrompt(prompt) : message,
  };
}

/** The prompt's first non-blank line, cut to a git subject's usual width. */
function subjectFromPrompt(prompt: string): string {
  const line = prompt.split(/\r\n|\r|\n/).find((l) => l.trim() !== "")?.trim() ?? "";
  return [...line].slice(0, submitRunLimits.derivedCommitSubjectLength).join("");
}
