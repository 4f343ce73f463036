//! Runs a server as a subprocess and talks NBD to it over a socket pair
//! (`nbd_connect_command`): here nbdkit with a 1 MiB RAM disk. Writes a
//! pattern with FUA, reads it back, and asks for the allocation status.
//!
//! ```text
//! cargo run --example connect_command
//! ```

use nbd::{CmdFlag, Handle, Shutdown};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let h = Handle::new()?;
    h.add_meta_context("base:allocation")?;
    // -s: NBD on stdin/stdout; --exit-with-parent: never outlive us.
    h.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])?;
    println!(
        "server pid {}, size {}, protocol {}",
        h.subprocess_pid().unwrap_or(0),
        h.size()?,
        h.protocol()?
    );

    let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let flags = if h.can_fua()? {
        CmdFlag::FUA
    } else {
        CmdFlag::empty()
    };
    h.pwrite(&pattern, 0, flags)?;
    let mut back = vec![0u8; pattern.len()];
    h.pread(&mut back, 0, CmdFlag::empty())?;
    println!("read back matches: {}", back == pattern);

    for ctx in h.block_status_extents(h.size()?, 0, CmdFlag::empty())? {
        for e in &ctx.extents {
            println!("{}: {} bytes, flags {}", ctx.context, e.length, e.flags);
        }
    }
    h.shutdown(Shutdown::empty())?;
    Ok(())
}
