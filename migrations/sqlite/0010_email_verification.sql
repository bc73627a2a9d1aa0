-- Verified email addresses. A user's address is verified once a link mailed to it was opened
-- (or a password reset mailed to it completed); until then nothing granted to the address
-- (a workspace invitation by email) binds to the account.

ALTER TABLE users ADD COLUMN email_verified_at BIGINT;

-- The links of verification mails, stored hashed, single-use, for the address they were sent to.
CREATE TABLE email_verifications (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);

-- The address a reset mail went to (a reset verifies it only if it is still the user's).
ALTER TABLE password_resets ADD COLUMN email TEXT;

-- Invitations by email to an address not verified yet: they become memberships when it is.
CREATE TABLE invitations (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'member')),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX invitations_user ON invitations (user_id);
