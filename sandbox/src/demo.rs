//! Demo accounts with realistic numbers and hundreds of posts, generated deterministically.

use crate::state::{Account, Net, Post, State, Switches};

const INSTAGRAM: &[(&str, &str, i64)] = &[
    ("acme_studio", "Acme Studio", 15_200),
    ("sunny.bakes", "Sunny Bakes", 98_410),
    ("trailrunner.jo", "Jo Trails", 2_315),
];
const TIKTOK: &[(&str, &str, i64)] = &[
    ("dance.daily", "Dance Daily", 1_204_551),
    ("quickrecipes", "Quick Recipes", 48_902),
    ("van.life.lena", "Lena on the road", 7_730),
];

pub fn seed(state: &mut State) {
    let posts = state.settings.posts_per_account as usize;
    for (u, n, f) in INSTAGRAM {
        create(state, Net::Instagram, u, n, *f, posts);
    }
    for (u, n, f) in TIKTOK {
        create(state, Net::Tiktok, u, n, *f, posts);
    }
}

/// Adds an account; returns its platform id. Ids derive from the username, so the same
/// username always yields the same id.
pub fn create(state: &mut State, net: Net, username: &str, name: &str, followers: i64, posts: usize) -> String {
    let seed = fnv(username);
    let (id, alt_id) = match net {
        Net::Instagram => (format!("1784{:013}", seed % 10_000_000_000_000), format!("{}", 2_000_000_000 + seed % 1_000_000_000)),
        Net::Tiktok => (format!("-000{:x}", seed), format!("u{:x}", seed.rotate_left(17))),
    };
    let now = state.now_ms();
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let posts: Vec<Post> = (0..posts)
        .map(|i| {
            let r = next();
            let views = (followers / 3 + (r % 10_000) as i64) * (1 + (i % 7) as i64);
            Post {
                id: match net {
                    Net::Instagram => format!("{}{:06}", &id[..8], i),
                    Net::Tiktok => format!("7{:018}", (seed % 1_000_000_000) * 1_000_000 + i as u64),
                },
                caption: format!("{name} post #{} — {}", posts_total_minus(i), CAPTIONS[(r % CAPTIONS.len() as u64) as usize]),
                media_type: ["IMAGE", "VIDEO", "CAROUSEL_ALBUM"][(r % 3) as usize],
                // Newest first, one every ~11 hours.
                created_ms: now - (i as i64) * 11 * 3_600_000 - (r % 3_600_000) as i64,
                likes: views / 12,
                comments: views / 300,
                views,
                shares: views / 900,
                duration: 8 + (r % 170) as i64,
            }
        })
        .collect();
    let account = Account {
        net,
        id: id.clone(),
        alt_id,
        username: username.to_owned(),
        name: name.to_owned(),
        followers,
        following: (seed % 900) as i64 + 12,
        likes: followers * 14,
        switches: Switches::default(),
        post_count: posts.len(),
        posts,
    };
    state.accounts.insert((net, id.clone()), account);
    id
}

fn posts_total_minus(i: usize) -> usize {
    10_000 - i
}

const CAPTIONS: &[&str] = &[
    "behind the scenes",
    "new drop today",
    "what do you think?",
    "5 tips that changed everything",
    "golden hour",
    "recipe in the comments",
    "thank you for 10k!",
];

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
