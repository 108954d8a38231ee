-- A per-connect return path was never offered: every connect returns to FRONTEND_URL. The
-- column only invited an open redirect; a return path, if one is wanted, comes back with an
-- allow-list.
ALTER TABLE oauth_states DROP COLUMN redirect_to;
