//! The consent pages a person clicks through (Allow / Deny), and the redirects they produce.

use std::collections::HashMap;

use poem::{
    IntoResponse, Response, handler,
    http::{StatusCode, header},
    web::{Data, Form, Html, Query},
};

use crate::{
    INSTAGRAM_CLIENT_ID, Sandbox, TIKTOK_CLIENT_KEY,
    state::{Code, Net, random_token},
};

type Params = HashMap<String, String>;

const INSTAGRAM_CODE_TTL_MS: i64 = 3_600_000;
const TIKTOK_CODE_TTL_MS: i64 = 600_000;

#[handler]
pub fn instagram_page(Query(q): Query<Params>, sandbox: Data<&Sandbox>) -> Response {
    page(Net::Instagram, &q, &sandbox)
}

#[handler]
pub fn tiktok_page(Query(q): Query<Params>, sandbox: Data<&Sandbox>) -> Response {
    page(Net::Tiktok, &q, &sandbox)
}

#[handler]
pub fn instagram_decide(Form(f): Form<Params>, sandbox: Data<&Sandbox>) -> Response {
    decide(Net::Instagram, &f, &sandbox)
}

#[handler]
pub fn tiktok_decide(Form(f): Form<Params>, sandbox: Data<&Sandbox>) -> Response {
    decide(Net::Tiktok, &f, &sandbox)
}

/// The request parameters a consent needs, with the platform's names.
struct Ask<'a> {
    client: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    state: &'a str,
    challenge: Option<&'a str>,
}

fn ask(net: Net, p: &Params) -> Result<Ask<'_>, String> {
    let get = |k: &str| p.get(k).map(String::as_str);
    let (client_field, expected) = match net {
        Net::Instagram => ("client_id", INSTAGRAM_CLIENT_ID),
        Net::Tiktok => ("client_key", TIKTOK_CLIENT_KEY),
    };
    let client = get(client_field).ok_or_else(|| format!("{client_field} is missing"))?;
    if client != expected {
        return Err(format!("invalid {client_field}: the app is not registered"));
    }
    if get("response_type") != Some("code") {
        return Err("response_type must be code".into());
    }
    let redirect_uri = get("redirect_uri").filter(|r| url::Url::parse(r).is_ok()).ok_or("redirect_uri is missing or invalid")?;
    let challenge = get("code_challenge").filter(|c| !c.is_empty());
    if challenge.is_some() && get("code_challenge_method") != Some("S256") {
        return Err("code_challenge_method must be S256".into());
    }
    Ok(Ask { client, redirect_uri, scope: get("scope").unwrap_or(""), state: get("state").unwrap_or(""), challenge })
}

fn page(net: Net, q: &Params, sandbox: &Sandbox) -> Response {
    let a = match ask(net, q) {
        Ok(a) => a,
        Err(e) => return Html(format!("<!doctype html><title>Error</title><h1>Error</h1><p>{}</p>", esc(&e))).with_status(StatusCode::BAD_REQUEST).into_response(),
    };
    let (title, client_field) = match net {
        Net::Instagram => ("Instagram (sandbox)", "client_id"),
        Net::Tiktok => ("TikTok (sandbox)", "client_key"),
    };
    let mut accounts: Vec<_> = sandbox.lock().accounts.values().filter(|x| x.net == net).map(|x| (x.username.clone(), x.id.clone())).collect();
    accounts.sort();
    let options: String = accounts
        .iter()
        .map(|(u, id)| format!("<option value=\"{}\">@{}</option>", esc(id), esc(u)))
        .collect();
    let hidden: String = [
        (client_field, a.client),
        ("redirect_uri", a.redirect_uri),
        ("scope", a.scope),
        ("state", a.state),
        ("code_challenge", a.challenge.unwrap_or("")),
        ("code_challenge_method", if a.challenge.is_some() { "S256" } else { "" }),
        ("response_type", "code"),
    ]
    .iter()
    .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
    .collect();
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}}select{{font-size:1rem;margin:.5rem 0 1rem}}</style></head>
<body><h1>{title}</h1><p>An app asks for access to your account.</p><p>Permissions: <code>{scope}</code></p>
<form method="post"><label>Log in as <select id="account" name="account">{options}</select></label>{hidden}
<div><button id="allow" name="decision" value="allow">Allow</button><button id="deny" name="decision" value="deny">Deny</button></div></form></body></html>"#,
        scope = esc(a.scope),
    ))
    .into_response()
}

fn decide(net: Net, f: &Params, sandbox: &Sandbox) -> Response {
    let a = match ask(net, f) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let mut target = url::Url::parse(a.redirect_uri).expect("checked in ask");
    if f.get("decision").map(String::as_str) != Some("allow") {
        let mut q = target.query_pairs_mut();
        q.append_pair("error", "access_denied");
        if net == Net::Instagram {
            q.append_pair("error_reason", "user_denied");
        }
        q.append_pair("error_description", "The user denied your request.");
        q.append_pair("state", a.state);
        drop(q);
        return redirect(target.as_str());
    }
    let mut s = sandbox.lock();
    let Some(account) = f.get("account").and_then(|id| s.account(net, id)) else {
        return (StatusCode::BAD_REQUEST, "unknown account").into_response();
    };
    let requested: Vec<String> = a.scope.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect();
    let granted: Vec<String> = requested.into_iter().filter(|x| !account.switches.declined_scopes.contains(x)).collect();
    let account_id = account.id.clone();
    let code = random_token(24);
    let ttl = if net == Net::Instagram { INSTAGRAM_CODE_TTL_MS } else { TIKTOK_CODE_TTL_MS };
    let expires_ms = s.now_ms() + ttl;
    s.codes.insert(
        code.clone(),
        Code {
            net,
            account: account_id,
            redirect_uri: a.redirect_uri.to_owned(),
            scopes: granted.clone(),
            challenge: a.challenge.filter(|c| !c.is_empty()).map(str::to_owned),
            expires_ms,
            used: false,
        },
    );
    drop(s);
    {
        let mut q = target.query_pairs_mut();
        q.append_pair("code", &code);
        if net == Net::Tiktok {
            q.append_pair("scopes", &granted.join(","));
        }
        q.append_pair("state", a.state);
    }
    // Instagram appends `#_` to the redirect; clients must strip it.
    let location = if net == Net::Instagram { format!("{target}#_") } else { target.to_string() };
    redirect(&location)
}

fn redirect(location: &str) -> Response {
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location).finish()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
