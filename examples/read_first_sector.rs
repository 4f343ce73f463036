//! Reads the first 512-byte sector of an NBD export and prints it as a
//! hex dump (offset, 16 bytes in hexadecimal, the printable ones as text).
//!
//! ```text
//! cargo run --example read_first_sector -- nbd://localhost/
//! ```

use nbd::{CmdFlag, Handle, Shutdown};

fn main() {
    let Some(uri) = std::env::args().nth(1) else {
        eprintln!("usage: read_first_sector NBD-URI");
        std::process::exit(2);
    };
    // nbd::Error's Display is libnbd's message and strerror's text.
    if let Err(e) = run(&uri) {
        eprintln!("read_first_sector: {e}");
        std::process::exit(1);
    }
}

fn run(uri: &str) -> nbd::Result<()> {
    let h = Handle::new()?;
    h.connect_uri(uri)?;
    let mut sector = [0u8; 512];
    h.pread(&mut sector, 0, CmdFlag::empty())?;
    h.shutdown(Shutdown::empty())?;

    for (i, line) in sector.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = line
            .iter()
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
            .collect();
        println!("{:08x}  {}  |{}|", i * 16, hex.join(" "), text);
    }
    Ok(())
}
