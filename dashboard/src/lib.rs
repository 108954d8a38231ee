//! The ops dashboard. Empty until its issue lands; the crate exists so the dependency
//! direction (`api` → `dashboard` → `jobs`) is fixed from the start.
