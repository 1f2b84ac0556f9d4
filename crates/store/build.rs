// `sqlx::migrate!` embeds ./migrations at compile time; without this, adding a migration file
// does not rebuild the crate (sqlx's documented workaround).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
