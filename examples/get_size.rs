//! Prints the size of an NBD export, in bytes.
//!
//! ```text
//! cargo run --example get_size -- nbd+unix:///?socket=/tmp/sock
//! ```

use nbd::{Handle, Shutdown};

fn main() {
    let Some(uri) = std::env::args().nth(1) else {
        eprintln!("usage: get_size NBD-URI");
        std::process::exit(2);
    };
    // nbd::Error's Display is libnbd's message and strerror's text.
    if let Err(e) = run(&uri) {
        eprintln!("get_size: {e}");
        std::process::exit(1);
    }
}

fn run(uri: &str) -> nbd::Result<()> {
    let h = Handle::new()?;
    h.connect_uri(uri)?;
    println!("{}", h.size()?);
    h.shutdown(Shutdown::empty())?;
    Ok(())
}
