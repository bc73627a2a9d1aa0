// Signing in: email and password (sign in, create an account, or have a reset link mailed) or
// a phone number and a code sent by SMS; and the two pages mails link to (password reset,
// email verification).

import { useState } from "preact/hooks";
import { call, deviceId, deviceName, signedIn } from "../api";
import { useGuard } from "../guard";
import { t } from "../strings";

/** A form's submit: busy while it runs, the problem's words when it fails. */
function useSubmit() {
  const [busy, setBusy] = useState(false);
  const { error, guard } = useGuard();
  const run = (fn: () => Promise<void>) => (ev: Event) => {
    setBusy(true);
    return guard(fn)(ev).finally(() => setBusy(false));
  };
  return { busy, error, run };
}

/** "Forgot password?": a reset link by mail (the answer is the same whether or not the address has an account). */
function Forgot({ onBack }: { onBack: () => void }) {
  const [email, setEmail] = useState("");
  const [sent, setSent] = useState(false);
  const { busy, error, run } = useSubmit();
  const submit = run(async () => {
    await call("POST", "/auth/password/forgot", { body: { email } });
    setSent(true);
  });
  return (
    <form onSubmit={submit} class="stack" aria-label={t.forgot}>
      {sent ? (
        <p role="status">{t.resetSent}</p>
      ) : (
        <>
          <label>
            {t.email}
            <input name="email" type="email" required autocomplete="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
          </label>
          {error && <p role="alert" class="error">{error}</p>}
          <button class="primary" disabled={busy}>{t.sendResetLink}</button>
        </>
      )}
      <button type="button" class="link" onClick={onBack}>{t.haveAccount}</button>
    </form>
  );
}

function EmailForm() {
  const [creating, setCreating] = useState(false);
  const [forgot, setForgot] = useState(false);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const { busy, error, run } = useSubmit();
  const submit = run(async () => {
    const device = { deviceId: deviceId(), deviceName: deviceName() };
    const answer = creating
      ? await call("POST", "/auth/signup", { body: { email, password, displayName: name, ...device } })
      : await call("POST", "/auth/login", { body: { email, password, ...device } });
    signedIn(answer);
  });
  if (forgot) return <Forgot onBack={() => setForgot(false)} />;
  return (
    <form onSubmit={submit} class="stack">
      {creating && (
        <label>
          {t.displayName}
          <input name="displayName" required autocomplete="name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
      )}
      <label>
        {t.email}
        <input name="email" type="email" required autocomplete="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
      </label>
      <label>
        {t.password}
        <input name="password" type="password" required minLength={8} autocomplete={creating ? "new-password" : "current-password"} value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </label>
      {error && <p role="alert" class="error">{error}</p>}
      <button class="primary" disabled={busy}>{creating ? t.signUp : t.signIn}</button>
      <button type="button" class="link" onClick={() => setCreating(!creating)}>
        {creating ? t.haveAccount : t.noAccount}
      </button>
      {!creating && <button type="button" class="link" onClick={() => setForgot(true)}>{t.forgot}</button>}
    </form>
  );
}

function PhoneForm() {
  const [phone, setPhone] = useState("");
  const [code, setCode] = useState("");
  const [sent, setSent] = useState(false);
  const { busy, error, run } = useSubmit();
  const ask = run(async () => {
    await call("POST", "/auth/otp/request", { body: { phone } });
    setSent(true);
  });
  const verify = run(async () => {
    signedIn(await call("POST", "/auth/otp/verify", { body: { phone, code, deviceId: deviceId(), deviceName: deviceName() } }));
  });
  return (
    <form onSubmit={sent ? verify : ask} class="stack">
      <label>
        {t.phone}
        <input name="phone" type="tel" required autocomplete="tel" value={phone} onInput={(e) => setPhone(e.currentTarget.value)} disabled={sent} />
      </label>
      {sent && (
        <>
          <p>{t.codeSent(phone)}</p>
          <label>
            {t.code}
            <input name="code" inputMode="numeric" pattern="[0-9]{6}" required autocomplete="one-time-code" value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </label>
        </>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      <button class="primary" disabled={busy}>{sent ? t.verify : t.sendCode}</button>
    </form>
  );
}

export function SignIn() {
  const [by, setBy] = useState<"email" | "phone">("email");
  return (
    <main class="auth">
      <div class="card">
        <h1>
          <img src="/icon.svg" alt="" width={40} height={40} /> {t.appName}
        </h1>
        <p class="muted">{t.tagline}</p>
        <div role="tablist" class="tabs">
          <button role="tab" aria-selected={by === "email"} onClick={() => setBy("email")}>{t.withEmail}</button>
          <button role="tab" aria-selected={by === "phone"} onClick={() => setBy("phone")}>{t.withPhone}</button>
        </div>
        {by === "email" ? <EmailForm /> : <PhoneForm />}
      </div>
    </main>
  );
}

/** `/reset-password?token=` and `/verify-email?token=`: the links in Palaver's mails. */
export function MailLink({ kind }: { kind: "reset" | "verify" }) {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [password, setPassword] = useState("");
  const [done, setDone] = useState(false);
  const { busy, error, run } = useSubmit();
  const submit = run(async () => {
    if (kind === "reset") await call("POST", "/auth/password/reset", { body: { token, password } });
    else await call("POST", "/auth/email/verify", { body: { token } });
    setDone(true);
  });
  return (
    <main class="auth">
      <form class="card stack" onSubmit={submit}>
        <h1>{kind === "reset" ? t.resetPassword : t.verifyEmail}</h1>
        {done ? (
          <p role="status">{kind === "reset" ? t.passwordChanged : t.emailVerified}</p>
        ) : (
          <>
            {kind === "reset" && (
              <label>
                {t.newPassword}
                <input type="password" required minLength={8} autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
              </label>
            )}
            {error && <p role="alert" class="error">{error}</p>}
            <button class="primary" disabled={busy}>{kind === "reset" ? t.resetPassword : t.verifyEmail}</button>
          </>
        )}
        <a href="/">{t.toApp}</a>
      </form>
    </main>
  );
}
