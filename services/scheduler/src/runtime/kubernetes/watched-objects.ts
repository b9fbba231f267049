import { makeInformer, type KubeConfig, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "@corral/plumbing/logger.ts";

export interface WatchedObjects<T extends KubernetesObject> {
  /** Resolves once the first list has filled the cache; facts read before then would be wrong. */
  readonly synced: Promise<void>;
  get(name: string): T | undefined;
  list(): readonly T[];
  stop(): Promise<void>;
}

const RESTART_DELAY_MS = { first: 500, max: 30_000 };

/**
 * A list-then-watch cache of one kind of object in one namespace (an informer). Facts come
 * from here rather than from polling: an apiserver sees one watch per kind, however many runs.
 * The informer stops on an error (an expired watch, an apiserver restart); this restarts it
 * with backoff, and it lists afresh when its resource version is gone.
 */
export function watchObjects<T extends KubernetesObject>(options: {
  kubeConfig: KubeConfig;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector: string;
  namespace: string;
  logger: Logger;
  onChange(object: T, deleted: boolean): void;
}): WatchedObjects<T> {
  let listed = false;
  const informer = makeInformer<T>(
    options.kubeConfig,
    options.path,
    async () => {
      const list = await options.list();
      listed = true;
      return list;
    },
    options.labelSelector,
  );
  let markSynced!: () => void;
  const synced = new Promise<void>((resolve) => (markSynced = resolve));
  // start() also resolves after a failed list (it reports the failure as an "error" event).
  const start = () =>
    informer.start().then(
      () => listed && markSynced(),
      () => undefined,
    );
  let stopped = false;
  let delay = RESTART_DELAY_MS.first;
  let timer: NodeJS.Timeout | undefined;
  informer.on("add", (object) => options.onChange(object, false));
  informer.on("update", (object) => options.onChange(object, false));
  informer.on("delete", (object) => options.onChange(object, true));
  informer.on("connect", () => {
    delay = RESTART_DELAY_MS.first;
  });
  informer.on("error", (error) => {
    if (stopped) return;
    options.logger.warn({ err: error, path: options.path, retryInMs: delay }, "kubernetes watch failed; restarting it");
    // One restart pending at a time (an informer may report several errors for one failure),
    // and never one that keeps the process alive on its own.
    clearTimeout(timer);
    timer = setTimeout(() => stopped || void start(), delay).unref();
    delay = Math.min(delay * 2, RESTART_DELAY_MS.max);
  });
  void start();
  return {
    synced,
    get: (name) => informer.get(name, options.namespace),
    list: () => informer.list(options.namespace),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await informer.stop();
    },
  };
}
