import { render } from "preact";
import { App } from "./app.tsx";
import "./styles.css";

const root = document.getElementById("app")!;
// Preact diffs against what is there: drop the "Loading…" placeholder first.
root.replaceChildren();
render(<App />, root);
