// Measures the web app's first load in Chromium against a real server: bytes on the wire and
// the time until the sign-in screen is usable, cold (a fresh browser profile each time) and
// warm (the same profile again: revalidated, 304s). Prints medians with min and max.
//   node web-load.mjs [runs]   (PALAVER_BIN=../target/release/palaver for the release build)
import { chromium } from "playwright-core";
import { startServer } from "./harness.js";

const RUNS = Number(process.argv[2] ?? 15);
const server = await startServer("sqlite");
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });

async function load(page) {
  let bytes = 0;
  const sizes = [];
  page.on("response", async (r) => {
    const length = Number((await r.allHeaders())["content-length"] ?? 0);
    sizes.push(length);
    bytes += length;
  });
  await page.goto(server.base + "/");
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const fcp = performance.getEntriesByName("first-contentful-paint")[0];
    return { usable: performance.now(), domContentLoaded: nav.domContentLoadedEventEnd, fcp: fcp ? fcp.startTime : null };
  });
  return { ...t, bytes };
}

const stat = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return `median ${s[Math.floor(s.length / 2)].toFixed(1)} (min ${s[0].toFixed(1)}, max ${s[s.length - 1].toFixed(1)})`;
};

const cold = [];
const warm = [];
for (let i = 0; i < RUNS; i++) {
  const context = await browser.newContext();
  const page = await context.newPage();
  cold.push(await load(page));
  const again = await context.newPage();
  warm.push(await load(again));
  await context.close();
}
for (const [name, runs] of [["cold", cold], ["warm", warm]]) {
  console.log(`${name} (${RUNS} runs): usable ${stat(runs.map((r) => r.usable))} ms; first contentful paint ${stat(runs.map((r) => r.fcp ?? NaN))} ms; DOMContentLoaded ${stat(runs.map((r) => r.domContentLoaded))} ms; ${runs[0].bytes} bytes transferred`);
}
const sizes = [];
for (const file of ["/", "/app.js", "/app.css"]) {
  const plain = await fetch(server.base + file);
  const body = (await plain.arrayBuffer()).byteLength;
  const packed = await fetch(server.base + file, { headers: { "accept-encoding": "gzip" } });
  sizes.push(`${file === "/" ? "index.html" : file.slice(1)} ${body} B (${packed.headers.get("content-encoding") === "gzip" ? `${packed.headers.get("content-length")} B gzip` : "not compressed"})`);
}
console.log(`files: ${sizes.join(", ")}`);
await browser.close();
await server.stop();
