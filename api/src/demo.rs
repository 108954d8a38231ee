//! `/demo`: the first five minutes. A page where a person connects a sandbox Instagram or
//! TikTok account, watches it get synced, and asks for another sync — through the real API.
//! Only in development (`up` without `JWT_SECRET`): the page signs its visitor in as the demo
//! user with a token it mints; otherwise it says how to get there.

use poem::{handler, web::{Data, Html}};

use crate::ApiState;

/// How long the demo page's token lasts.
const TOKEN_TTL_SECS: u64 = 12 * 3600;

#[handler]
pub async fn page(state: Data<&ApiState>) -> Html<String> {
    let cfg = &state.config;
    let token = match (&cfg.demo_user, &cfg.jwt) {
        (Some(user), Some(jwt)) => jwt.issue(user, TOKEN_TTL_SECS),
        _ => {
            return Html(format!(
                "{HEAD}{TOP}<p>The demo page is only served by <code>socialsync up</code> in development \
                 (without <code>JWT_SECRET</code>). The API and its docs are at <a href=\"/docs\">/docs</a>.</p>"
            ))
        }
    };
    // The token is an attribute, not part of the script, so the script is the same on every
    // visit and the Content-Security-Policy admits it by its hash. It holds only base64url and dots.
    Html(format!("{HEAD}<meta name=\"socialsync-token\" content=\"{token}\">{TOP}{BODY}<script>{SCRIPT}</script>"))
}

/// The page's inline parts, for its Content-Security-Policy.
pub fn html() -> String {
    format!("{HEAD}{TOP}{BODY}<script>{SCRIPT}</script>")
}

const HEAD: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>socialsync demo</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222 }
button { font: inherit; padding: .3rem .8rem; margin-right: .5rem; cursor: pointer }
table { border-collapse: collapse; width: 100%; margin-top: 1rem }
td, th { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #ddd }
.note { padding: .5rem .8rem; background: #eef6ff; border-radius: 4px }
.error { background: #ffeeee }
code { background: #f3f3f3; padding: 0 .2rem }
</style>"#;

const TOP: &str = "</head><body><h1>socialsync demo</h1>";

const BODY: &str = r#"<p>Connect an account of the <strong>sandbox</strong> platform (simulated Instagram and TikTok),
watch the workers sync it, and ask for another sync. Everything goes through the real API
(<a href="/docs">/docs</a>) as the demo user.</p>
<p id="flash" class="note" hidden></p>
<p><button id="connect-instagram">Connect Instagram</button><button id="connect-tiktok">Connect TikTok</button></p>
<table><thead><tr><th>Account</th><th>Platform</th><th>Status</th><th>Followers</th><th>Posts</th><th>Last synced</th><th></th></tr></thead>
<tbody id="accounts"><tr><td colspan="7">Loading…</td></tr></tbody></table>"#;

const SCRIPT: &str = r#"
const TOKEN = document.querySelector('meta[name=socialsync-token]').content;
// Polling as a frontend should, inside the API's per-address budget (`general`, 100 requests
// per 15 min): one request per refresh. While a connect or a sync is in flight, its job, every
// 2 s at first and slower the longer it takes (up to 30 s); otherwise the accounts list every
// 15 s (60 of the 100), so an account revoked at the platform shows as such within seconds.
// After a 429, nothing before its Retry-After. A hidden tab does not poll.
const IDLE_MS = 15000, FIRST_MS = 2000, SLOWEST_MS = 30000;
class ApiError extends Error {
  constructor(message, status, retryAfter) { super(message); this.status = status; this.retryAfter = retryAfter; }
}
async function api(path, method = 'GET') {
  const r = await fetch('/api/v1' + path, { method, headers: { Authorization: 'Bearer ' + TOKEN } });
  const body = r.status === 204 ? null : await r.json();
  if (!r.ok) throw new ApiError(body.error.message, r.status, Number(r.headers.get('retry-after')) || 0);
  return body;
}
const flash = (text, error) => { const f = document.getElementById('flash'); f.textContent = text; f.hidden = false; f.className = error ? 'note error' : 'note'; };
const pending = new Map();   // job id -> what it stands for, oldest first
const synced = new Map();    // account id -> the last_synced_at whose numbers are shown
const numbers = new Map();   // account id -> its stats
let delay = FIRST_MS, listDue = true, timer = null;
const schedule = ms => { clearTimeout(timer); timer = setTimeout(tick, ms); };
const watch = (jobId, what) => { pending.set(jobId, what); delay = FIRST_MS; schedule(FIRST_MS); };
const finished = j => j.status === 'Done' || j.status === 'Killed' || (j.status === 'Failed' && j.attempts >= j.max_attempts);

const params = new URLSearchParams(location.search);
if (params.get('connect') === 'pending' && params.get('job_id')) {
  flash('Connecting your ' + params.get('platform') + ' account… it appears below once the worker has finished.');
  pending.set(params.get('job_id'), 'Connecting your ' + params.get('platform') + ' account');
}
if (params.get('connect') === 'error') flash('The connect did not happen: ' + params.get('reason'), true);
history.replaceState(null, '', location.pathname);
for (const p of ['instagram', 'tiktok']) {
  document.getElementById('connect-' + p).onclick = () =>
    api('/social-media/' + p + '/connect', 'POST').then(r => { location.href = r.authorization_url; }).catch(e => flash(e.message, true));
}

async function tick() {
  timer = null;
  if (document.hidden) return;
  let next = IDLE_MS;
  try {
    if (listDue || !pending.size) {
      await showAccounts();
      listDue = false;
      if (pending.size) next = delay;
    } else {
      const [id, what] = pending.entries().next().value;
      // A job no longer known (its connect's state expired) has finished long ago.
      const job = await api('/jobs/' + encodeURIComponent(id)).catch(e => { if (e.status === 404) return null; throw e; });
      if (job === null) {
        pending.delete(id);
        listDue = true;
        next = 0;
      } else if (finished(job)) {
        pending.delete(id);
        flash(job.status === 'Done' ? what + ': done.' : what + ' failed: ' + (job.last_error ?? job.status), job.status !== 'Done');
        listDue = true;
        next = 0;
      } else {
        next = delay;
        delay = Math.min(delay * 1.5, SLOWEST_MS);
      }
    }
  } catch (e) {
    if (e.status === 429) next = Math.max(next, e.retryAfter * 1000);
    flash(e.message, true);
  }
  schedule(next);
}
document.addEventListener('visibilitychange', () => { if (!document.hidden && timer === null) schedule(0); });

const cell = text => { const td = document.createElement('td'); td.textContent = text ?? '—'; return td; };
// The list, and the stats of an account only when its last sync changed since they were fetched.
async function showAccounts() {
  const accounts = await api('/social-media/accounts');
  for (const a of accounts) {
    if (a.last_synced_at && synced.get(a.id) !== a.last_synced_at) {
      numbers.set(a.id, await api('/social-media/accounts/' + a.id + '/stats?history=1'));
      synced.set(a.id, a.last_synced_at);
    }
  }
  const rows = accounts.map(a => {
    const stats = numbers.get(a.id);
    const tr = document.createElement('tr');
    tr.dataset.account = a.id;
    tr.append(cell('@' + a.username), cell(a.platform), cell(a.status), cell(stats?.latest?.followers_count),
      cell(stats?.posts_count), cell(a.last_synced_at ? new Date(a.last_synced_at).toLocaleString() : 'not yet'));
    const td = document.createElement('td'); const b = document.createElement('button'); b.textContent = 'Sync now';
    b.onclick = () => api('/social-media/accounts/' + a.id + '/sync', 'POST')
      .then(j => { flash('Sync of @' + a.username + ' queued (job ' + j.job_id + ').'); watch(j.job_id, 'Sync of @' + a.username); })
      .catch(e => flash(e.message, true));
    td.append(b); tr.append(td); return tr;
  });
  const body = document.getElementById('accounts');
  body.replaceChildren(...rows);
  if (!rows.length) body.innerHTML = '<tr><td colspan="7">No account connected yet.</td></tr>';
}
schedule(0);
"#;
