-- `revoked`: the user withdrew the app at the platform (Meta's deauthorize callback, TikTok's
-- authorization.removed). Like `reauth_required` the account needs a new connect, but the status
-- says the user chose this, so the frontend asks rather than apologises.
ALTER TABLE social_accounts DROP CONSTRAINT social_accounts_status_check;
ALTER TABLE social_accounts ADD CONSTRAINT social_accounts_status_check
    CHECK (status IN ('active', 'reauth_required', 'revoked', 'disconnected'));

-- Accounts revoked before this status existed were marked reauth_required with this error.
UPDATE social_accounts SET status = 'revoked' WHERE status = 'reauth_required' AND last_refresh_error = 'revoked';
