//! The vault against real storage: rotation (resumable) and no plaintext anywhere.

use std::time::Duration;

use jobs::{
    Platform, Secret, Timestamp, Vault, VaultKey,
    store::{NewAccount, NewOAuthState},
    vault::Aad,
};
use testkit::{both_backends, scan::find_plaintext};

const T0: Timestamp = Timestamp(1_767_225_600_000);

fn key() -> VaultKey {
    VaultKey::parse(VaultKey::generate().expose()).unwrap()
}

/// Stores `n` accounts and `n` OAuth states under `v`; returns every plaintext it sealed.
async fn fill(store: &jobs::Store, v: &Vault, n: usize) -> Vec<String> {
    let mut secrets = vec![];
    for i in 0..n {
        let puid = format!("open-{i}");
        let (access, refresh) = (format!("act.plain-{i}-aaaa"), format!("rft.plain-{i}-bbbb"));
        let a = NewAccount {
            user_id: "u".into(),
            platform: Platform::Tiktok,
            platform_user_id: puid.clone(),
            username: puid.clone(),
            display_name: None,
            scopes: String::new(),
            access_token: v.seal(&Aad::account(Platform::Tiktok, &puid, "access_token"), &Secret::from(access.as_str())),
            refresh_token: Some(v.seal(&Aad::account(Platform::Tiktok, &puid, "refresh_token"), &Secret::from(refresh.as_str()))),
            access_expires_at: T0,
            refresh_expires_at: None,
            next_refresh_at: None,
        };
        store.upsert_account(&a, T0).await.unwrap();
        let hash = format!("state-{i}");
        let verifier = format!("verifier-plain-{i}-cccc");
        store
            .create_oauth_state(
                &NewOAuthState {
                    state_hash: hash.clone(),
                    user_id: "u".into(),
                    platform: Platform::Tiktok,
                    pkce_verifier: Some(v.seal(&Aad::oauth_state(&hash, "pkce_verifier"), &Secret::from(verifier.as_str()))),
                    expires_at: T0.plus(Duration::from_secs(600)),
                },
                T0,
            )
            .await
            .unwrap();
        let code = format!("code-plain-{i}-dddd");
        let sealed = v.seal(&Aad::oauth_state(&hash, "code"), &Secret::from(code.as_str()));
        store.consume_oauth_state(&hash, Platform::Tiktok, Some(&sealed), T0).await.unwrap().unwrap();
        secrets.extend([access, refresh, verifier, code]);
    }
    secrets
}

/// Every sealed value in the database, with what it must open to.
async fn sealed_values(store: &jobs::Store) -> Vec<(Aad, jobs::Sealed, String)> {
    let mut out = vec![];
    for a in store.accounts_of_user("u").await.unwrap() {
        let n = a.platform_user_id.trim_start_matches("open-");
        out.push((Aad::account(a.platform, &a.platform_user_id, "access_token"), a.access_token.clone().unwrap(), format!("act.plain-{n}-aaaa")));
        out.push((Aad::account(a.platform, &a.platform_user_id, "refresh_token"), a.refresh_token.clone().unwrap(), format!("rft.plain-{n}-bbbb")));
        let hash = format!("state-{n}");
        let s = store.oauth_state(&hash).await.unwrap().unwrap();
        out.push((Aad::oauth_state(&hash, "pkce_verifier"), s.pkce_verifier.unwrap(), format!("verifier-plain-{n}-cccc")));
        out.push((Aad::oauth_state(&hash, "code"), s.code.unwrap(), format!("code-plain-{n}-dddd")));
    }
    out
}

both_backends! {
    async fn no_table_holds_a_plaintext_secret(db: TestDb) {
        let v = Vault::new(key(), vec![]);
        let secrets = fill(&db.store, &v, 3).await;
        let hits = find_plaintext(&db.store, &secrets).await;
        assert!(hits.is_empty(), "plaintext found: {hits:?}");
        // The scan itself works: a value written in plaintext is found.
        db.store.record_sync_error(jobs::AccountId(1), "act.plain-0-aaaa", T0).await.unwrap();
        let hits = find_plaintext(&db.store, &secrets).await;
        assert_eq!(hits.len(), 1);
        assert!(hits[0].0.ends_with("social_accounts") && hits[0].1 == "act.plain-0-aaaa", "{hits:?}");
    }

    async fn rotation_reencrypts_everything_and_resumes(db: TestDb) {
        let old = key();
        let secrets = fill(&db.store, &Vault::new(old.clone(), vec![]), 5).await;
        let new = key();
        let rotated = Vault::new(new.clone(), vec![old.clone()]);

        // Interrupt the first pass after its first batch (as a crash or Ctrl-C would).
        let store = db.store.clone();
        let r = rotated.clone();
        let interrupted = tokio::spawn(async move {
            store.rotate_secrets(&r, 2, |_| panic!("interrupted after one batch")).await
        }).await;
        assert!(interrupted.is_err());
        let partly: Vec<_> = sealed_values(&db.store).await.into_iter().filter(|(_, s, _)| s.key_id() == new.id()).collect();
        assert!(!partly.is_empty() && partly.len() < 20, "one batch done, {} values rotated", partly.len());

        let mut batches = 0;
        let done = db.store.rotate_secrets(&rotated, 2, |_| batches += 1).await.unwrap();
        assert_eq!(done.reencrypted as usize, 20 - partly.len());
        assert_eq!(done.unreadable, 0);
        assert!(batches >= 2);

        let only_new = Vault::new(new.clone(), vec![]);
        for (aad, sealed, plain) in sealed_values(&db.store).await {
            assert_eq!(sealed.key_id(), new.id(), "no value carries the old key id");
            assert_eq!(only_new.open(&aad, &sealed).unwrap().expose(), &plain, "opens without the old key");
        }
        let again = db.store.rotate_secrets(&rotated, 2, |_| {}).await.unwrap();
        assert_eq!(again.reencrypted, 0, "a second run is a no-op");
        assert!(find_plaintext(&db.store, &secrets).await.is_empty());
    }
}
