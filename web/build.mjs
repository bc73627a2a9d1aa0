// Builds the web app into dist/, which is committed and embedded in the binary (so that a
// machine without Node.js serves the app). CI builds it again and fails if dist/ differs.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
const common = { bundle: true, minify: true, target: "es2022", legalComments: "none", logLevel: "warning" };
await build({ ...common, entryPoints: ["src/main.tsx"], outfile: "dist/app.js", format: "esm" });
await build({ ...common, entryPoints: ["src/sw.ts"], outfile: "dist/sw.js", format: "iife" });
await build({ ...common, entryPoints: ["src/app.css"], outfile: "dist/app.css" });
cpSync("static", "dist", { recursive: true });
