//! Large values split into small pieces, so that sled never holds a value, or a leaf of values,
//! over its blob threshold.
//!
//! sled 0.34 writes any log record over a quarter of its segment (131,020 bytes with the default
//! 512 KiB segment) to a file of its own in `blobs/`, and deletes a replaced blob only once the
//! current log segment fills. Blob-sized values leave only pointers in the log, so under steady
//! replacement the segment almost never fills, and the list of blobs to delete lives in memory
//! only: a restart orphans them for good. A project whose plugin returned an 8 MiB state grew the
//! data directory by its outbox entry and state on every run, without end.
//!
//! So the outbox, parked entries, committed state and plugin components never go into sled whole: a value up to
//! [`CHUNK_BYTES`] is stored inline under its key, behind a tag byte; a larger one is stored as
//! pieces of [`CHUNK_BYTES`] in a companion tree, under `<key> 0x00 <index>`, with a header under
//! its key. A full leaf of such pieces (17 items) stays far below the threshold, so sled's log
//! holds the data and its segment cleaner reclaims what is replaced or removed. Pieces are written
//! and removed in the same transaction as their header, so a value is always whole.

use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::{Result, StoreError};

/// The largest piece, and the largest value stored inline.
pub(super) const CHUNK_BYTES: usize = 4 << 10;

const INLINE: u8 = 0;
const SPLIT: u8 = 1;

/// The key of one piece of a split value.
fn piece_key(key: &[u8], index: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 5);
    out.extend_from_slice(key);
    out.push(0);
    out.extend_from_slice(&index.to_be_bytes());
    out
}

/// What is stored under a value's own key.
enum Stored<'a> {
    Inline(&'a [u8]),
    Split { len: u64, pieces: u32 },
}

fn parse<'a>(key: &[u8], raw: &'a [u8]) -> Result<Stored<'a>> {
    let corrupt = || StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: "unreadable value header".into(),
    };
    match raw.split_first() {
        Some((&INLINE, value)) => Ok(Stored::Inline(value)),
        Some((&SPLIT, rest)) if rest.len() == 12 => {
            let len = u64::from_be_bytes(rest[..8].try_into().map_err(|_| corrupt())?);
            let pieces = u32::from_be_bytes(rest[8..].try_into().map_err(|_| corrupt())?);
            Ok(Stored::Split { len, pieces })
        }
        _ => Err(corrupt()),
    }
}

fn pieces_of(len: usize) -> u32 {
    len.div_ceil(CHUNK_BYTES) as u32
}

/// Stores `value` under `key` inside a transaction, replacing any earlier value and its pieces.
/// Returns the length of the value it replaced.
pub(super) fn put(
    main: &TransactionalTree,
    chunks: &TransactionalTree,
    key: &[u8],
    value: &[u8],
) -> Result<Option<u64>, UnabortableTransactionError> {
    let old = remove(main, chunks, key)?;
    if value.len() <= CHUNK_BYTES {
        let mut inline = Vec::with_capacity(value.len() + 1);
        inline.push(INLINE);
        inline.extend_from_slice(value);
        main.insert(key, inline)?;
        return Ok(old);
    }
    let pieces = pieces_of(value.len());
    for (index, piece) in value.chunks(CHUNK_BYTES).enumerate() {
        chunks.insert(piece_key(key, index as u32), piece)?;
    }
    let mut header = vec![SPLIT];
    header.extend_from_slice(&(value.len() as u64).to_be_bytes());
    header.extend_from_slice(&pieces.to_be_bytes());
    main.insert(key, header)?;
    Ok(old)
}

/// Stores `value` under `key` outside a transaction when that is safe: the value fits inline and
/// whatever it replaces has no pieces, which is every small state and outbox entry. Such a write
/// is one key, atomic by itself, and avoids sled's process-wide transaction lock on the hot
/// path. Anything else goes through [`put`] in a transaction. Returns the replaced length.
///
/// Callers serialize writes to one key (a project's runs and deliveries do), since a concurrent
/// writer of pieces could slip between the check and the write.
pub(super) fn put_single(main: &sled::Tree, chunks: &sled::Tree, key: &[u8], value: &[u8]) -> Result<Option<u64>> {
    let old = main.get(key)?;
    let old_is_split = old.as_ref().is_some_and(|raw| matches!(parse(key, raw), Ok(Stored::Split { .. })));
    if value.len() <= CHUNK_BYTES && !old_is_split {
        let mut inline = Vec::with_capacity(value.len() + 1);
        inline.push(INLINE);
        inline.extend_from_slice(value);
        let replaced = main.insert(key, inline)?;
        return Ok(replaced.map(|raw| stored_len(key, &raw)));
    }
    use sled::Transactional;
    Ok((main, chunks).transaction(|(main, chunks)| {
        Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(put(main, chunks, key, value)?)
    })?)
}

/// Removes the value under `key` and its pieces inside a transaction. Returns its length.
pub(super) fn remove(
    main: &TransactionalTree,
    chunks: &TransactionalTree,
    key: &[u8],
) -> Result<Option<u64>, UnabortableTransactionError> {
    let Some(raw) = main.remove(key)? else { return Ok(None) };
    // An unreadable header is left to the reader to report; its pieces, if any, cannot be found.
    match parse(key, &raw) {
        Ok(Stored::Inline(value)) => Ok(Some(value.len() as u64)),
        Ok(Stored::Split { len, pieces }) => {
            for index in 0..pieces {
                chunks.remove(piece_key(key, index))?;
            }
            Ok(Some(len))
        }
        Err(_) => Ok(Some(raw.len() as u64)),
    }
}

/// The whole value whose header (as read from a scan of the main tree) is `raw`.
pub(super) fn assemble(chunks: &sled::Tree, key: &[u8], raw: &[u8]) -> Result<Vec<u8>> {
    match parse(key, raw)? {
        Stored::Inline(value) => Ok(value.to_vec()),
        Stored::Split { len, pieces } => {
            let mut value = Vec::with_capacity(len as usize);
            for index in 0..pieces {
                let piece = chunks.get(piece_key(key, index))?.ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    message: format!("piece {index} of {pieces} is missing"),
                })?;
                value.extend_from_slice(&piece);
            }
            if value.len() as u64 != len {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    message: format!("{} bytes stored of {len}", value.len()),
                });
            }
            Ok(value)
        }
    }
}

/// The value under `key`, read outside a transaction.
pub(super) fn get(main: &sled::Tree, chunks: &sled::Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
    main.get(key)?.map(|raw| assemble(chunks, key, &raw)).transpose()
}

/// The length of the value whose header is `raw`, without reading its pieces.
pub(super) fn stored_len(key: &[u8], raw: &[u8]) -> u64 {
    match parse(key, raw) {
        Ok(Stored::Inline(value)) => value.len() as u64,
        Ok(Stored::Split { len, .. }) => len,
        Err(_) => raw.len() as u64,
    }
}

/// Wraps a value written before values were split (schema version 1) in the inline or split
/// form, for the migration in `SledStore::open`.
pub(super) fn rewrite_tree(main: &sled::Tree, chunks: &sled::Tree) -> Result<()> {
    use sled::Transactional;
    for item in main.iter() {
        let (key, old) = item?;
        (main, chunks).transaction(|(main, chunks)| {
            put(main, chunks, &key, &old)?;
            Ok::<(), sled::transaction::ConflictableTransactionError<StoreError>>(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sled::Transactional;

    use super::*;

    fn put_plain(main: &sled::Tree, chunks: &sled::Tree, key: &[u8], value: &[u8]) -> Option<u64> {
        (main, chunks)
            .transaction(|(m, c)| Ok::<_, sled::transaction::ConflictableTransactionError<()>>(put(m, c, key, value)?))
            .unwrap()
    }

    #[test]
    fn values_of_every_size_round_trip_and_leave_no_pieces_behind() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (main, chunks) = (db.open_tree("main").unwrap(), db.open_tree("chunks").unwrap());
        let sizes = [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES, 1 << 20, 10];
        let mut previous = None;
        for size in sizes {
            let value: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            assert_eq!(put_plain(&main, &chunks, b"k", &value), previous, "the replaced length");
            assert_eq!(get(&main, &chunks, b"k").unwrap().as_deref(), Some(value.as_slice()), "{size}");
            assert_eq!(chunks.len(), pieces_of(size) as usize * usize::from(size > CHUNK_BYTES), "{size}");
            assert_eq!(stored_len(b"k", &main.get(b"k").unwrap().unwrap()), size as u64);
            previous = Some(size as u64);
        }
        let removed = (&main, &chunks)
            .transaction(|(m, c)| Ok::<_, sled::transaction::ConflictableTransactionError<()>>(remove(m, c, b"k")?))
            .unwrap();
        assert_eq!(removed, Some(10));
        assert!(main.is_empty() && chunks.is_empty());
    }

    #[test]
    fn single_writes_stay_outside_transactions_only_while_nothing_is_split() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (main, chunks) = (db.open_tree("main").unwrap(), db.open_tree("chunks").unwrap());
        assert_eq!(put_single(&main, &chunks, b"k", b"small").unwrap(), None);
        assert_eq!(put_single(&main, &chunks, b"k", &[1; 3 * CHUNK_BYTES]).unwrap(), Some(5));
        assert_eq!(chunks.len(), 3);
        assert_eq!(put_single(&main, &chunks, b"k", b"small again").unwrap(), Some(3 * CHUNK_BYTES as u64));
        assert!(chunks.is_empty(), "the split value's pieces went with it");
        assert_eq!(get(&main, &chunks, b"k").unwrap().as_deref(), Some(&b"small again"[..]));
    }

    #[test]
    fn a_missing_piece_is_reported_not_misread() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (main, chunks) = (db.open_tree("main").unwrap(), db.open_tree("chunks").unwrap());
        put_plain(&main, &chunks, b"k", &[7; 3 * CHUNK_BYTES]);
        chunks.remove(piece_key(b"k", 1)).unwrap();
        let error = get(&main, &chunks, b"k").unwrap_err();
        assert!(error.to_string().contains("piece 1 of 3 is missing"), "{error}");
    }
}
