// The page's entry: PatternFly 4 base styles (Debian 12's Cockpit 287 shell is built on
// PatternFly 4, so PF4 components look native inside it) and the app.
import "@patternfly/react-core/dist/styles/base.css";
import "./console.css";
import { createRoot } from "react-dom/client";
import { App } from "./app.jsx";

document.addEventListener("DOMContentLoaded", () => {
  createRoot(document.getElementById("app")).render(<App />);
});
