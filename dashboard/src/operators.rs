//! Named operators (`OPS_USERS`): each signs in with a name and a password of their own, stored
//! as an Argon2id hash (PHC string), so the audit trail says who did what. `socialsync ops
//! add-user NAME` prints the line to add ([`line`]).

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::SaltString,
};
use jobs::Secret;

/// One `OPS_USERS` entry.
#[derive(Clone)]
pub struct Operator {
    pub name: String,
    /// `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
    hash: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The name a session signed in with the shared `OPS_PASSWORD` acts under.
pub const SHARED: &str = "ops";

/// A name: letters, digits, `.`, `_`, `-`, up to 64; never [`SHARED`], which the shared
/// password acts under.
fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(format!("operator name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"));
    }
    if name == SHARED {
        return Err(format!("operator name {SHARED:?} is the shared OPS_PASSWORD's; choose another"));
    }
    Ok(())
}

/// Parses `OPS_USERS`: `name:hash` entries separated by spaces, newlines or `;`.
pub fn parse(text: &str) -> Result<Vec<Operator>, String> {
    let mut out: Vec<Operator> = vec![];
    for entry in text.split(|c: char| c.is_whitespace() || c == ';').filter(|e| !e.is_empty()) {
        let Some((name, hash)) = entry.split_once(':') else {
            return Err("OPS_USERS: each entry is NAME:HASH (from `socialsync ops add-user NAME`)".into());
        };
        valid_name(name).map_err(|e| format!("OPS_USERS: {e}"))?;
        PasswordHash::new(hash).map_err(|e| format!("OPS_USERS: {name}'s hash is not a password hash ({e}); make it with `socialsync ops add-user {name}`"))?;
        if out.iter().any(|o| o.name == name) {
            return Err(format!("OPS_USERS: {name} is listed twice"));
        }
        out.push(Operator { name: name.to_owned(), hash: hash.to_owned() });
    }
    Ok(out)
}

/// The `OPS_USERS` entry of `name` with `password`: `name:$argon2id$…` (Argon2id with the
/// crate's default cost: 19 MiB, 2 passes).
pub fn line(name: &str, password: &Secret) -> Result<String, String> {
    valid_name(name)?;
    if password.expose().chars().count() < 12 {
        return Err("the password is shorter than 12 characters".into());
    }
    let salt = SaltString::encode_b64(&jobs::vault::random_bytes::<16>()).map_err(|e| e.to_string())?;
    let hash = Argon2::default().hash_password(password.expose().as_bytes(), &salt).map_err(|e| e.to_string())?;
    Ok(format!("{name}:{hash}"))
}

/// A hash of nothing anyone knows, at the default cost, verified for unknown names.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29jaWFsc3luYy1kZWNveQ$2Kx8GJb2z5y8d1i6Y0G2bJ5b5m1x8wJ8m7C0r9o6q1E";

/// Whether `password` is `name`'s. An unknown name costs the same work as a known one, so the
/// answer's timing does not say which names exist. CPU-bound (tens of milliseconds): call it
/// off the async threads.
pub fn verify(operators: &[Operator], name: &str, password: &str) -> bool {
    let (hash, known) = match operators.iter().find(|o| o.name == name) {
        Some(o) => (o.hash.as_str(), true),
        None => (DECOY, false),
    };
    let verified = PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
    verified && known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_from_add_user_signs_its_operator_in_and_no_one_else() {
        let entry = line("ana", &Secret::from("correct horse battery")).unwrap();
        assert!(entry.starts_with("ana:$argon2id$v=19$"), "{entry}");
        assert!(!entry.contains("correct horse"), "no password in the line");
        let bo = line("bo", &Secret::from("another long password")).unwrap();
        let ops = parse(&format!("{entry}\n{bo}")).unwrap();
        assert_eq!(ops.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["ana", "bo"]);
        assert!(verify(&ops, "ana", "correct horse battery"));
        assert!(!verify(&ops, "ana", "another long password"), "bo's password is not ana's");
        assert!(!verify(&ops, "cy", "correct horse battery"), "an unknown name");
        assert!(PasswordHash::new(DECOY).is_ok(), "the decoy is verified as a real hash would be");
        assert!(format!("{:?}", ops[0]).contains("ana") && !format!("{:?}", ops[0]).contains("argon2"), "no hash in logs");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let good = line("ana", &Secret::from("correct horse battery")).unwrap();
        assert!(parse("ana").unwrap_err().contains("NAME:HASH"));
        assert!(parse("ana:plaintext").unwrap_err().contains("ana's hash is not a password hash"));
        assert!(parse(&format!("{good};{good}")).unwrap_err().contains("listed twice"));
        assert!(parse(&good.replacen("ana", "a b", 1)).is_err());
        assert!(line("ops", &Secret::from("correct horse battery")).unwrap_err().contains("shared"));
        assert!(line("ana", &Secret::from("short")).unwrap_err().contains("12 characters"));
        assert!(parse("").unwrap().is_empty());
    }
}
