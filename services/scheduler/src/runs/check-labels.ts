import { mapEntryField } from "./map-entry-field.ts";
import { submitRunLimits } from "./submit-run-limits.ts";
import { characterCount, hasControlCharacter } from "./text-checks.ts";
import type { Violations } from "./violations.ts";

// Close to Kubernetes label keys, so labels can be copied onto the run's Job as they are.
const labelKey = /^[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?$/;

/** Checks spec.labels: short keys of a safe charset, short printable values. */
export function checkLabels(labels: Readonly<Record<string, string>>, violations: Violations): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > submitRunLimits.labels) violations.add("spec.labels", `must have at most ${submitRunLimits.labels} labels`);
  for (const [key, value] of entries) {
    const field = mapEntryField("spec.labels", key);
    if (key.length > submitRunLimits.labelKeyLength || !labelKey.test(key)) {
      violations.add(field, `key must be 1 to ${submitRunLimits.labelKeyLength} letters, digits, '.', '_', '/' or '-', starting and ending with a letter or digit`);
    }
    if (characterCount(value) > submitRunLimits.labelValueLength) {
      violations.add(field, `value must be at most ${submitRunLimits.labelValueLength} characters`);
    } else if (hasControlCharacter(value)) {
      violations.add(field, "value must not contain control characters");
    }
  }
  return Object.fromEntries(entries);
}
