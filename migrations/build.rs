// sqlx::migrate! embeds the SQL files at compile time; rebuild when one is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=postgres");
    println!("cargo:rerun-if-changed=sqlite");
}
