//! Reading attachments: the size and MD5 that DingTalk's upload pre-check wants.

use std::path::Path;

use md5::{Digest, Md5};
use tokio::io::AsyncReadExt;

use super::error::StepError;

/// Read buffer for hashing; large enough to keep syscalls cheap, small enough for memory.
const HASH_CHUNK_BYTES: usize = 256 * 1024;

/// Streams the file once: its size and hex MD5. Never holds the whole file in memory.
pub async fn fingerprint(path: &Path) -> Result<(u64, String), StepError> {
    let unreadable =
        |e: std::io::Error| StepError::permanent(format!("attachment {}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0_u8; HASH_CHUNK_BYTES];
    let mut size = 0_u64;
    loop {
        let read = file.read(&mut buffer).await.map_err(unreadable)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}
