// Bundles src/app.js (d3-geo, topojson-client from npm) and copies the page and the Natural Earth
// basemap (world-atlas) into dist/, which `eew dashboard` serves. Nothing is fetched at run time.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/app.js"],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "iife",
  target: ["chrome110", "firefox110", "safari16"],
  outfile: "dist/app.js",
  logLevel: "warning",
});
cpSync("src/index.html", "dist/index.html");
cpSync("src/style.css", "dist/style.css");
cpSync("node_modules/world-atlas/countries-50m.json", "dist/countries-50m.json");
cpSync("node_modules/world-atlas/LICENSE", "dist/world-atlas-LICENSE.txt");
console.log("dashboard front end built in dist/");
