//! Rate limits as a service: sibling services (chat, uploads) consume a named policy for a key
//! of theirs, and get the same answer and headers the API's own limits give.

use jobs::Timestamp;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};

use super::{Result, Tag};
use crate::{ApiState, auth::Service, error::ApiError, limits};

pub struct LimitsApi(pub ApiState);

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct ConsumeRequest {
    /// Whose budget: a user id, an IP, anything the caller chooses.
    #[oai(validator(min_length = 1, max_length = 200))]
    key: String,
}

#[derive(Object)]
struct Consumed {
    /// Always true here: a request over the limit gets 429 `RATE_LIMIT_EXCEEDED`.
    allowed: bool,
    limit: u32,
    remaining: u32,
    /// Seconds until the current window ends.
    reset_seconds: u64,
}

#[OpenApi(tag = "Tag::Limits")]
impl LimitsApi {
    /// Consume one unit of a rate-limit policy (sibling services)
    ///
    /// Policies are configured by `RATE_LIMITS`; by default `chat` (100 / 5 min) and `upload`
    /// (20 / h) are offered, besides the API's own. Shared by every API process.
    #[oai(path = "/limits/:policy/consume", method = "post", operation_id = "consume_limit")]
    async fn consume(&self, _service: Service, policy: Path<String>, body: Json<ConsumeRequest>) -> Result<Json<Consumed>> {
        let p = self.0.config.policies.get(&policy.0).ok_or_else(|| ApiError::not_found("rate-limit policy"))?;
        let d = limits::hit(&self.0.store, &policy.0, p, &format!("service:{}", body.0.key), Timestamp::now()).await?;
        if !d.allowed {
            return Err(d.error());
        }
        Ok(Json(Consumed { allowed: true, limit: d.limit, remaining: d.remaining, reset_seconds: d.reset_secs }))
    }
}
