//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!` embeds
//! `migrations/sqlite/` (and the PostgreSQL store will embed `migrations/postgres/`) at
//! compile time, and without this cargo does not notice a new file there (sqlx's own advice:
//! `sqlx migrate build-script`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
