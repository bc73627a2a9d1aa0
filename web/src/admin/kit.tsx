// Pieces the admin screens share: loading a resource (and again after a change), the messages
// of an action, a download that needs the token, a bar chart.

import { useEffect, useState } from "preact/hooks";
import { blobUrl, get } from "../api";

/** GETs `path` (again when it changes or `reload` is called). */
export function useLoad<T>(path: string | null): [T | null, () => void, string | null] {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    if (!path) return;
    let live = true;
    get<T>(path)
      .then((d) => live && (setData(d), setError(null)))
      .catch((e) => live && setError(e?.message ?? String(e)));
    return () => void (live = false);
  }, [path, n]);
  return [data, () => setN(n + 1), error];
}

export function Messages({ error, status }: { error: string | null; status?: string | null }) {
  return (
    <>
      {error && <p role="alert" class="error">{error}</p>}
      {status && <p role="status" class="ok">{status}</p>}
    </>
  );
}

/** Saves a protected file (a CSV export) under `name`. */
export async function download(path: string, name: string) {
  const url = await blobUrl("/api/v1" + path);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Vertical bars, one group per label, one bar per series; values labelled for screen readers. */
export function Bars({ labels, series, title }: { labels: string[]; series: { name: string; color: string; values: number[] }[]; title: string }) {
  const max = Math.max(1, ...series.flatMap((x) => x.values));
  const W = 640;
  const H = 160;
  const group = W / Math.max(1, labels.length);
  const bar = Math.max(1, (group - 2) / series.length);
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H + 18}`} role="img" aria-label={title}>
        {labels.map((label, i) =>
          series.map((x, j) => {
            const h = (x.values[i] / max) * H;
            return (
              <rect x={i * group + 1 + j * bar} y={H - h} width={bar} height={h} fill={x.color}>
                <title>{`${label} — ${x.name}: ${x.values[i]}`}</title>
              </rect>
            );
          }),
        )}
        <line x1="0" y1={H} x2={W} y2={H} stroke="#9aa5ab" />
        {labels.length > 0 && <text x="0" y={H + 14} font-size="11" fill="#4f5b62">{labels[0]}</text>}
        {labels.length > 1 && <text x={W} y={H + 14} font-size="11" fill="#4f5b62" text-anchor="end">{labels[labels.length - 1]}</text>}
      </svg>
      <figcaption>
        {series.map((x) => (
          <span class="legend"><span class="swatch" style={{ background: x.color }} /> {x.name}</span>
        ))}
      </figcaption>
    </figure>
  );
}
