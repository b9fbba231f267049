import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "runs"; query: URLSearchParams }
  | { page: "run"; id: string }
  | { page: "submit" }
  | { page: "runtimes" }
  | { page: "missing"; path: string };

const NAVIGATED = "corral:navigate";

export function parseRoute(url: URL): Route {
  const path = url.pathname.replace(/\/+$/, "") || "/";
  if (path === "/") return { page: "runs", query: url.searchParams };
  if (path === "/submit") return { page: "submit" };
  if (path === "/runtimes") return { page: "runtimes" };
  const run = /^\/runs\/([0-9a-fA-F-]{36})$/.exec(path);
  if (run) return { page: "run", id: run[1]!.toLowerCase() };
  return { page: "missing", path };
}

/** Moves to another page of the app without reloading it (history API). */
export function navigate(href: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  dispatchEvent(new Event(NAVIGATED));
}

/** The current route; re-renders on links, back and forward. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(new URL(location.href)));
  useEffect(() => {
    const update = () => setRoute(parseRoute(new URL(location.href)));
    addEventListener("popstate", update);
    addEventListener(NAVIGATED, update);
    return () => {
      removeEventListener("popstate", update);
      removeEventListener(NAVIGATED, update);
    };
  }, []);
  return route;
}

/** A real link (it opens in a new tab, copies, works without this app) that navigates in place on a plain click. */
export function Link(props: { href: string; children: ComponentChildren; class?: string; "aria-current"?: "page"; "aria-label"?: string }) {
  const { href, children, ...rest } = props;
  const onClick = (event: MouseEvent) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(href);
  };
  return (
    <a {...rest} href={href} onClick={onClick}>
      {children}
    </a>
  );
}
