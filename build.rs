//! Studio's assets are compiled in by rust-embed, which makes cargo watch the files it found;
//! watching the folder too rebuilds the binary when a file is added or removed there.
fn main() {
    println!("cargo:rerun-if-changed=studio");
}
