// Builds the Cockpit package into dist/: manifest.json, index.html, index.js, index.css and the
// fonts/images PatternFly's CSS refers to. No inline script or style (Cockpit's CSP forbids them);
// cockpit.js is not bundled: index.html loads it from ../base1/cockpit.js at run time.
import * as esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist);

await esbuild.build({
  entryPoints: { index: path.join(here, "src/index.jsx") },
  bundle: true,
  outdir: dist,
  minify: true,
  sourcemap: false,
  target: ["es2020"],
  jsx: "automatic",
  loader: { ".woff": "file", ".woff2": "file", ".ttf": "file", ".eot": "file", ".svg": "file", ".png": "file", ".jpg": "file", ".gif": "file" },
  assetNames: "assets/[name]-[hash]",
  define: { "process.env.NODE_ENV": '"production"' },
  legalComments: "none",
  logLevel: "warning",
});

for (const f of ["index.html", "manifest.json"]) fs.copyFileSync(path.join(here, "src", f), path.join(dist, f));
for (const f of ["index.js", "index.css"])
  if (!fs.existsSync(path.join(dist, f))) throw new Error(`build produced no ${f}`);
console.log(`console: built ${path.relative(process.cwd(), dist) || "."}`);
