//! Reading and writing concurrently over several connections with tokio.
//!
//! Starts its own server (`nbdkit memory`) for each connection, or uses the
//! NBD URI given as the first argument (which must be writable; its first
//! CONNS MiB are overwritten). Each connection gets TASKS tasks; each task
//! writes a pattern into its own 64 KiB blocks and reads it back, all
//! pipelined on the connections.
//!
//! ```text
//! cargo run --example async_concurrent [URI]
//! ```

use std::sync::Arc;

use nbd::{AsyncHandle, CmdFlag};

const CONNS: usize = 4;
const TASKS: usize = 16;
const BLOCK: usize = 65536;

#[tokio::main]
async fn main() -> nbd::Result<()> {
    let uri = std::env::args().nth(1);
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let nbd = AsyncHandle::new()?;
        match &uri {
            Some(uri) => nbd.connect_uri(uri).await?,
            None => {
                nbd.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "64M"])
                    .await?
            }
        }
        conns.push(Arc::new(nbd));
    }
    println!("export size: {} bytes", conns[0].size()?);

    let mut tasks = Vec::new();
    for (c, nbd) in conns.iter().enumerate() {
        for t in 0..TASKS {
            let nbd = Arc::clone(nbd);
            tasks.push(tokio::spawn(async move {
                // Blocks t, t + TASKS, ... of this connection's MiB.
                let mut buf = vec![0; BLOCK];
                for i in (t..1024 * 1024 / BLOCK).step_by(TASKS) {
                    let offset = (c * 1024 * 1024 + i * BLOCK) as u64;
                    let byte = (c * 16 + i) as u8;
                    buf.fill(byte);
                    // The buffer is handed over and given back.
                    buf = nbd.pwrite(buf, offset, CmdFlag::empty()).await?;
                    buf = nbd.pread(buf, offset, CmdFlag::empty()).await?;
                    assert!(buf.iter().all(|&b| b == byte), "block {i} reads back wrong");
                }
                nbd::Result::Ok(())
            }));
        }
    }
    for task in tasks {
        task.await.expect("task panicked")?;
    }
    for nbd in &conns {
        nbd.flush(CmdFlag::empty()).await?;
        nbd.shutdown().await?;
    }
    println!("wrote and read back {CONNS} MiB over {CONNS} connections");
    Ok(())
}
