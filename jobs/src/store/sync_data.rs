//! `account_snapshots` and `posts`: what a sync brings home.

use super::{Result, Store};
use crate::{domain::AccountId, time::Timestamp};

/// An account's numbers at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Snapshot {
    pub taken_at: Timestamp,
    pub followers_count: Option<i64>,
    pub following_count: Option<i64>,
    pub media_count: Option<i64>,
    pub likes_count: Option<i64>,
}

/// One post or video, as the platform last reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Post {
    pub platform_post_id: String,
    pub caption: Option<String>,
    pub media_type: Option<String>,
    pub permalink: Option<String>,
    pub thumbnail_url: Option<String>,
    pub published_at: Option<Timestamp>,
    pub like_count: Option<i64>,
    pub comment_count: Option<i64>,
    pub view_count: Option<i64>,
    pub share_count: Option<i64>,
}

const INSERT_SNAPSHOT: &str = "
    INSERT INTO account_snapshots (account_id, taken_at, followers_count, following_count,
        media_count, likes_count)
    VALUES ($1, $2, $3, $4, $5, $6)";

const UPSERT_POST: &str = "
    INSERT INTO posts (account_id, platform_post_id, caption, media_type, permalink, thumbnail_url,
        published_at, like_count, comment_count, view_count, share_count, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (account_id, platform_post_id) DO UPDATE SET
        caption = excluded.caption, media_type = excluded.media_type,
        permalink = excluded.permalink, thumbnail_url = excluded.thumbnail_url,
        published_at = excluded.published_at, like_count = excluded.like_count,
        comment_count = excluded.comment_count, view_count = excluded.view_count,
        share_count = excluded.share_count, updated_at = excluded.updated_at";

// Names the platform reports replace ours; an empty username (a platform that did not say) keeps ours.
const MARK_SYNCED: &str = "
    UPDATE social_accounts SET last_synced_at = $2, last_sync_error = NULL, updated_at = $2,
        username = COALESCE(NULLIF($3, ''), username), display_name = COALESCE($4, display_name)
    WHERE id = $1";

impl Store {
    /// Writes a sync's result in one transaction: the snapshot, every post (upserted), the
    /// profile's `names` (username, display name) and `last_synced_at`. A sync that fails
    /// half-way therefore leaves the previous state whole, and running it twice leaves one post
    /// per platform id.
    pub async fn save_sync(&self, account: AccountId, names: Option<(&str, Option<&str>)>, snap: &Snapshot, posts: &[Post], now: Timestamp) -> Result<()> {
        let (username, display_name) = names.unwrap_or(("", None));
        write_tx!(self, tx => {
            sqlx::query(INSERT_SNAPSHOT)
                .bind(account).bind(snap.taken_at).bind(snap.followers_count)
                .bind(snap.following_count).bind(snap.media_count).bind(snap.likes_count)
                .execute(&mut *tx).await?;
            for post in posts {
                sqlx::query(UPSERT_POST)
                    .bind(account).bind(&post.platform_post_id).bind(&post.caption)
                    .bind(&post.media_type).bind(&post.permalink).bind(&post.thumbnail_url)
                    .bind(post.published_at).bind(post.like_count).bind(post.comment_count)
                    .bind(post.view_count).bind(post.share_count).bind(now)
                    .execute(&mut *tx).await?;
            }
            sqlx::query(MARK_SYNCED).bind(account).bind(now).bind(username).bind(display_name).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Notes a failed sync (its error class), leaving the last good data in place.
    pub async fn record_sync_error(&self, account: AccountId, error_class: &str, now: Timestamp) -> Result<()> {
        const SQL: &str = "UPDATE social_accounts SET last_sync_error = $2, updated_at = $3 WHERE id = $1";
        on_pool!(self, p => sqlx::query(SQL).bind(account).bind(error_class).bind(now).execute(p).await?.rows_affected());
        Ok(())
    }

    /// The account's snapshots, newest first.
    pub async fn snapshots(&self, account: AccountId, limit: u32) -> Result<Vec<Snapshot>> {
        const SQL: &str = "
            SELECT taken_at, followers_count, following_count, media_count, likes_count
            FROM account_snapshots WHERE account_id = $1 ORDER BY taken_at DESC, id DESC LIMIT $2";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(account).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// The account's posts, newest published first.
    pub async fn posts(&self, account: AccountId, limit: u32) -> Result<Vec<Post>> {
        const SQL: &str = "
            SELECT platform_post_id, caption, media_type, permalink, thumbnail_url, published_at,
                like_count, comment_count, view_count, share_count
            FROM posts WHERE account_id = $1
            ORDER BY published_at DESC NULLS LAST, platform_post_id LIMIT $2";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(account).bind(i64::from(limit)).fetch_all(p).await?))
    }

    pub async fn post_count(&self, account: AccountId) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM posts WHERE account_id = $1";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).bind(account).fetch_one(p).await?))
    }

    /// Deletes an account's snapshots and posts (a disconnect that keeps no history).
    pub async fn delete_account_history(&self, account: AccountId) -> Result<()> {
        write_tx!(self, tx => {
            sqlx::query("DELETE FROM posts WHERE account_id = $1").bind(account).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM account_snapshots WHERE account_id = $1").bind(account).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
