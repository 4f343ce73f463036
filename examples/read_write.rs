//! Writes a sector to an in-memory nbdkit server and reads it back,
//! with the safe Rust API. Run with `cargo run --example read_write`.

use nbd::Handle;

fn main() -> Result<(), nbd::Error> {
    let h = Handle::new()?;
    h.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])?;
    println!("connected: {} bytes, {}", h.size()?, h.protocol()?);

    let written: Vec<u8> = (0..512u32).map(|i| (i % 13) as u8).collect();
    h.pwrite(&written, 0, nbd::CmdFlag::empty())?;
    let mut read = vec![0u8; 512];
    h.pread(&mut read, 0, nbd::CmdFlag::empty())?;
    assert_eq!(read, written, "read data differs from written data");
    println!("read back {} bytes: ok", read.len());

    h.shutdown(nbd::Shutdown::empty())?;
    Ok(())
}
