// One way for every screen to run an action and say how it went: the problem's words (or the
// fields it names) on failure, an optional confirmation on success.

import { useState } from "preact/hooks";
import { Problem } from "./api";
import { t } from "./strings";

export function problemText(e: unknown): string {
  if (e instanceof Problem) return e.errors.length ? e.errors.map((x) => `${x.field}: ${x.message}`).join("; ") : e.message;
  return t.problem;
}

export function useGuard() {
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  /** Runs `fn`; an event passed in is kept from its default (a form's submit). */
  const guard =
    (fn: () => Promise<unknown>, done?: string) =>
    async (ev?: Event) => {
      ev?.preventDefault?.();
      setError(null);
      setStatus(null);
      try {
        await fn();
        if (done) setStatus(done);
      } catch (e) {
        setError(problemText(e));
      }
    };
  return { error, status, guard, setError };
}
