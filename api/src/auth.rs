//! Who is calling: a user by bearer JWT (HS256, `sub` = user id, `exp` required), ops tools by
//! `X-Cron-Secret`, sibling services by `X-Service-Token`. Secrets are compared in constant
//! time. A failure is an `UNAUTHORIZED` error; the guard in `lib.rs` counts it against the
//! caller's IP (the `auth` rate-limit policy). An address past that policy is refused every
//! request that does not carry a valid credential ([`carries_valid_credential`]).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use jobs::Secret;
use poem::Request;
use poem_openapi::{SecurityScheme, auth::{ApiKey, Bearer}};
use serde::{Deserialize, Serialize};

use crate::{ApiState, error::ApiError};

/// The longest user id (`sub`) accepted: it keys rate limits and rows.
const MAX_SUB_LEN: usize = 200;

/// Verifies (and, for the development demo page, issues) the platform's user JWTs.
#[derive(Clone)]
pub struct Jwt {
    decode: DecodingKey,
    encode: EncodingKey,
    validation: Validation,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

impl Jwt {
    pub fn new(secret: &Secret) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Clock skew between the platform backend and us.
        validation.leeway = 30;
        Jwt {
            decode: DecodingKey::from_secret(secret.expose().as_bytes()),
            encode: EncodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// The user id of a valid token.
    pub fn verify(&self, token: &str) -> Result<String, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decode, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (sub, exp)",
                ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
                _ => "the token is malformed",
            };
            ApiError::unauthorized(why)
        })?;
        let sub = data.claims.sub;
        if sub.is_empty() || sub.len() > MAX_SUB_LEN || sub.chars().any(char::is_control) {
            return Err(ApiError::unauthorized("the token's subject is not a valid user id"));
        }
        Ok(sub)
    }

    /// A token for `sub`, valid for `ttl_secs` (the demo page's, and tests').
    pub fn issue(&self, sub: &str, ttl_secs: u64) -> String {
        let exp = jsonwebtoken::get_current_timestamp() + ttl_secs;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &Claims { sub: sub.into(), exp }, &self.encode)
            .expect("HS256 signing does not fail")
    }
}

/// Constant-time equality of two secrets (their lengths may leak, their contents do not).
pub fn secrets_match(given: &str, expected: &Secret) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(expected.expose().as_bytes()).into()
}

fn state(req: &Request) -> &ApiState {
    req.data::<ApiState>().expect("the app attaches its state")
}

/// Whether `req` carries a credential that verifies: a user's JWT, the cron secret or the
/// service token, or is a platform's callback whose signature verifies. An address locked out
/// after failed authentications is still served for such a request (one bad client behind a
/// shared address must not shut out everyone behind it); guessing any of these is hopeless,
/// unlike a password, so serving them is no oracle.
pub fn carries_valid_credential(req: &Request, body: &[u8], config: &crate::ApiConfig) -> bool {
    valid_platform_event(req, body, config) || carries_valid_secret(req, config)
}

fn carries_valid_secret(req: &Request, config: &crate::ApiConfig) -> bool {
    let bearer = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
    let jwt_ok = matches!((bearer, &config.jwt), (Some(token), Some(jwt)) if jwt.verify(token.trim()).is_ok());
    let secret_ok = |header: &str, expected: Option<&Secret>| matches!((req.header(header), expected), (Some(given), Some(secret)) if secrets_match(given, secret));
    jwt_ok || secret_ok("x-cron-secret", config.cron_secret.as_ref()) || secret_ok("x-service-token", config.service_token.as_ref())
}

/// A platform's callback whose signature verifies (a platform sends every user's events from
/// few addresses; one forged event from a shared one must not stop the real ones).
fn valid_platform_event(req: &Request, body: &[u8], config: &crate::ApiConfig) -> bool {
    let clients = &config.jobs.clients;
    match req.original_uri().path() {
        "/api/v1/platforms/tiktok/webhook" => {
            let now = config.jobs.now();
            jobs::events::tiktok_webhook(clients.tiktok.client_secret(), req.header("tiktok-signature"), body, now, config.webhook_tolerance_secs).is_ok()
        }
        "/api/v1/platforms/instagram/deauthorize" | "/api/v1/platforms/instagram/data-deletion" => url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "signed_request")
            .is_some_and(|(_, v)| jobs::events::verify_signed_request(clients.instagram.app_secret(), &v).is_ok()),
        _ => false,
    }
}

/// A user, from `Authorization: Bearer <JWT>`.
#[derive(SecurityScheme)]
#[oai(rename = "UserJwt", ty = "bearer", bearer_format = "JWT", checker = "check_user")]
pub struct User(pub String);

async fn check_user(req: &Request, bearer: Bearer) -> poem::Result<String> {
    match &state(req).config.jwt {
        Some(jwt) => Ok(jwt.verify(&bearer.token)?),
        None => Err(ApiError::unauthorized("user authentication is not configured (JWT_SECRET)").into()),
    }
}

/// Ops tooling, from `X-Cron-Secret`.
#[derive(SecurityScheme)]
#[oai(rename = "CronSecret", ty = "api_key", key_in = "header", key_name = "X-Cron-Secret", checker = "check_cron")]
pub struct Cron(pub ());

async fn check_cron(req: &Request, key: ApiKey) -> poem::Result<()> {
    let expected = state(req).config.cron_secret.as_ref();
    Ok(check_shared_secret(&key.key, expected, "X-Cron-Secret", "manual triggers are disabled: CRON_JOB_SECRET is not set")?)
}

/// A header that must carry a configured shared secret.
fn check_shared_secret(given: &str, expected: Option<&Secret>, header: &str, unset: &str) -> Result<(), ApiError> {
    match expected {
        Some(secret) if secrets_match(given, secret) => Ok(()),
        Some(_) => Err(ApiError::unauthorized(format!("wrong {header}"))),
        None => Err(ApiError::unauthorized(unset)),
    }
}

/// A sibling service, from `X-Service-Token`.
#[derive(SecurityScheme)]
#[oai(rename = "ServiceToken", ty = "api_key", key_in = "header", key_name = "X-Service-Token", checker = "check_service")]
pub struct Service(pub ());

async fn check_service(req: &Request, key: ApiKey) -> poem::Result<()> {
    let expected = state(req).config.service_token.as_ref();
    Ok(check_shared_secret(&key.key, expected, "X-Service-Token", "the limits service is disabled: SERVICE_TOKEN is not set")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_secret_and_before_expiry() {
        let jwt = Jwt::new(&Secret::from("s3cret-for-tests"));
        assert_eq!(jwt.verify(&jwt.issue("user-1", 60)).unwrap(), "user-1");
        let other = Jwt::new(&Secret::from("another"));
        assert_eq!(jwt.verify(&other.issue("user-1", 60)).unwrap_err().message, "the token's signature does not verify");
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims { sub: "u".into(), exp: jsonwebtoken::get_current_timestamp() - 120 },
            &EncodingKey::from_secret(b"s3cret-for-tests"),
        )
        .unwrap();
        assert_eq!(jwt.verify(&expired).unwrap_err().message, "the token has expired");
        assert_eq!(jwt.verify("not.a.jwt").unwrap_err().code, "UNAUTHORIZED");
        assert!(jwt.verify(&jwt.issue("", 60)).is_err(), "an empty subject is no user");
    }

    #[test]
    fn secrets_compare_whole() {
        let s = Secret::from("abc");
        assert!(secrets_match("abc", &s));
        assert!(!secrets_match("ab", &s));
        assert!(!secrets_match("abd", &s));
    }
}
