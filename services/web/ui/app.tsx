import { useEffect, useRef } from "preact/hooks";
import { Link, useRoute, type Route } from "./router.tsx";
import { RunPage } from "./pages/run-page.tsx";
import { RunsPage } from "./pages/runs-page.tsx";
import { RuntimesPage } from "./pages/runtimes-page.tsx";
import { SubmitPage } from "./pages/submit-page.tsx";

const NAV: { href: string; label: string; active: (route: Route) => boolean }[] = [
  { href: "/", label: "Runs", active: (r) => r.page === "runs" || r.page === "run" },
  { href: "/submit", label: "Submit a run", active: (r) => r.page === "submit" },
  { href: "/runtimes", label: "Runtimes", active: (r) => r.page === "runtimes" },
];

export function App() {
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  const key = route.page === "run" ? `run:${route.id}` : route.page;
  const first = useRef(true);
  useEffect(() => {
    // After a navigation (not the first load), keyboard and screen-reader users start at the new page.
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [key]);

  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          Corral
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.map((item) => (
              <li key={item.href}>
                <Link href={item.href} aria-current={item.active(route) ? "page" : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      <main id="main" ref={main}>
        {route.page === "runs" && <RunsPage query={route.query} />}
        {route.page === "run" && <RunPage key={route.id} runId={route.id} />}
        {route.page === "submit" && <SubmitPage />}
        {route.page === "runtimes" && <RuntimesPage />}
        {route.page === "missing" && <NotFound path={route.path} />}
      </main>
    </>
  );
}

function NotFound({ path }: { path: string }) {
  useEffect(() => {
    document.title = "Not found · Corral";
  }, []);
  return (
    <section>
      <h1 tabIndex={-1}>Not found</h1>
      <p>
        There is no page at <code>{path}</code>. <Link href="/">See the runs</Link>.
      </p>
    </section>
  );
}
