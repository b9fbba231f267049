/**
 * Names of a generated enum's values as Corral stores and shows them: the value's name in
 * lower case (RunStatus.QUEUED is "queued", Phase.AGENT is "agent"). Generated enums are plain
 * objects without a reverse mapping (erasable syntax), so both directions are built here once.
 */
export function enumNames<V extends number>(e: Record<string, string | V>) {
  const byName = new Map<string, V>();
  const byValue = new Map<V, string>();
  for (const [key, value] of Object.entries(e)) {
    if (typeof value !== "number") continue;
    byName.set(key.toLowerCase(), value);
    byValue.set(value, key.toLowerCase());
  }
  return {
    value: (name: string): V | undefined => byName.get(name),
    name: (value: V): string | undefined => byValue.get(value),
  };
}
