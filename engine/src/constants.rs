//! Every bound the engine enforces, named, with the reason for its value.
//!
//! Relations between limits are checked at compile time at the bottom of this
//! file, so changing one number cannot silently break another.

/// Unit of direct I/O. Every write starts and ends on this boundary and every
/// read is issued aligned to it. 4 KiB is the logical block size of every
/// NVMe and virtio disk we target and the page size of x86_64; a device with a
/// larger logical block would need a larger value (glommio reports it).
pub const SECTOR_BYTES: usize = 4096;

/// Size of one coalescing write buffer. Appends are copied into the current
/// buffer; a buffer is submitted as one direct write. 1 MiB matches the
/// `max_sectors_kb` of common block devices, so one buffer is one device
/// request, and is large enough to reach sequential bandwidth.
pub const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Buffer of the open chunk of a log that has not been appended to since it
/// was opened: room for the partial last sector read back from disk, and no
/// more. The first append swaps it for a whole write buffer. An idle
/// partition so holds one sector instead of a write buffer; on huge pages
/// (`dma_alloc`) touching a write buffer's first bytes would make the
/// whole 2 MiB page resident, for every partition opened at start-up.
pub const IDLE_OPEN_BUFFER_BYTES: usize = SECTOR_BYTES;

/// Bytes staged (accepted, offset assigned, not yet written) per partition
/// before `append` waits for the writer: the append path's backpressure. Four
/// buffers lets the next write fill while the current one is in flight.
pub const STAGED_BYTES_MAX: usize = 4 * WRITE_BUFFER_BYTES;

/// Write buffers a log keeps for reuse once their write completed. Enough for
/// a full staging area plus the open buffer and the carry of the partial tail
/// sector, so a steady stream of appends allocates no new buffer: a fresh one
/// costs page faults when first touched and an munmap when dropped (most of
/// the append path's CPU before buffers were recycled). At 1 MiB each this is
/// 6 MiB per partition at most, held only by partitions that were busy.
pub const FREE_WRITE_BUFFERS_MAX: usize = STAGED_BYTES_MAX / WRITE_BUFFER_BYTES + 2;

/// Write rounds in flight per partition. The first round takes everything
/// staged; while it is in flight, full write buffers are submitted in
/// further rounds as they fill, instead of waiting for the first round to
/// end (one round at a time left no write in flight for 45% of an append
/// run). Rounds publish in order, and a rewrite of the partial tail sector
/// waits for the earlier rounds to complete.
pub const WRITE_ROUNDS_IN_FLIGHT_MAX: u32 = 4;

/// Segment files grow by fallocate, not all at once: pre-allocating a whole
/// `segment.bytes` (1 GiB by default) for each of thousands of partitions
/// would reserve terabytes. A new segment reserves
/// [`PREALLOCATE_INITIAL_BYTES`]; each growth doubles the reservation, at
/// most by [`PREALLOCATE_STEP_BYTES`] at a time and not past `segment.bytes`,
/// so idle partitions cost 1 MiB and busy ones grow in 256 MiB steps.
///
/// Growth is rare on purpose: on ext4 an fallocate takes the inode lock
/// exclusively and waits for every direct write in flight, and a write
/// submitted meanwhile is refused under RWF_NOWAIT and goes to io_uring's
/// worker threads, which run one file's writes one at a time. With 32 MiB
/// steps, 10% of the writes of a 2 GiB append run went that way
/// (bench/RESULTS.md).
pub const PREALLOCATE_STEP_BYTES: u64 = 256 * 1024 * 1024;
pub const PREALLOCATE_INITIAL_BYTES: u64 = 1024 * 1024;

/// Default `segment.bytes`, as Kafka.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;

/// Largest `segment.bytes` accepted: batch positions in the index are u32.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// Smallest `segment.bytes` accepted (Kafka's lower bound is 14 bytes, which
/// only makes sense for its tests; one sector keeps every segment useful).
pub const SEGMENT_BYTES_MIN: u64 = SECTOR_BYTES as u64;

/// Default `segment.ms` and `retention.ms`: 7 days, as Kafka.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Default `max.message.bytes`: Kafka's 1048588 (1 MiB plus the 12-byte
/// offset and length prefix of a batch), so that the same producer settings
/// that work against Kafka work here.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1024 * 1024 + 12;

/// Largest `max.message.bytes` accepted. A batch must fit in the staging area
/// with room for the tail page carried from the previous write.
pub const MAX_MESSAGE_BYTES_LIMIT: u32 = (STAGED_BYTES_MAX - 2 * SECTOR_BYTES) as u32;

/// A sparse index entry is added every this many log bytes (Kafka's
/// `index.interval.bytes` default). With direct I/O a read is at least one
/// sector anyway, so a denser index would not save I/O, only memory.
pub const INDEX_INTERVAL_BYTES: u32 = 4096;

/// Read-ahead for cold sequential reads: one read of this size fills the
/// cache with the batches a sequential consumer asks for next.
pub const READ_AHEAD_BYTES: usize = 512 * 1024;

/// Largest disk read one fetch issues for one partition. A fetch's
/// `max_bytes` is an i32 on the wire and may ask for 2 GiB; a direct read
/// allocates its whole buffer, so a read stops here and the consumer fetches
/// again (Kafka allows answering with less than `max_bytes`). A batch larger
/// than this is still read whole.
pub const FETCH_READ_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Chunk size of the recovery scan. Large reads keep the scan at disk speed.
pub const RECOVERY_READ_BYTES: usize = 8 * 1024 * 1024;

/// Read size when checking a producer-state snapshot's fingerprint: from
/// the index entry at or before one batch, to its header.
pub const FINGERPRINT_READ_BYTES: usize = 64 * 1024;

/// The active segment's index is checkpointed after this many new durable
/// bytes, so that recovery after a crash scans at most this much (plus what
/// was written since the last fdatasync).
pub const CHECKPOINT_INTERVAL_BYTES: u64 = 128 * 1024 * 1024;

/// Default per-core batch cache budget.
pub const DEFAULT_CACHE_BYTES_MAX: usize = 256 * 1024 * 1024;

const _: () = assert!(WRITE_BUFFER_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(IDLE_OPEN_BUFFER_BYTES >= SECTOR_BYTES && IDLE_OPEN_BUFFER_BYTES <= WRITE_BUFFER_BYTES);
const _: () = assert!(STAGED_BYTES_MAX.is_multiple_of(WRITE_BUFFER_BYTES));
const _: () = assert!(PREALLOCATE_STEP_BYTES.is_multiple_of(SECTOR_BYTES as u64));
const _: () = assert!(PREALLOCATE_INITIAL_BYTES.is_multiple_of(SECTOR_BYTES as u64));
const _: () = assert!(PREALLOCATE_INITIAL_BYTES <= PREALLOCATE_STEP_BYTES);
const _: () = assert!(DEFAULT_SEGMENT_BYTES <= SEGMENT_BYTES_MAX);
const _: () = assert!(DEFAULT_MAX_MESSAGE_BYTES <= MAX_MESSAGE_BYTES_LIMIT);
const _: () = assert!(READ_AHEAD_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(RECOVERY_READ_BYTES.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(FETCH_READ_BYTES_MAX.is_multiple_of(SECTOR_BYTES));
const _: () = assert!(FETCH_READ_BYTES_MAX >= READ_AHEAD_BYTES);
const _: () = assert!(RECOVERY_READ_BYTES as u64 >= DEFAULT_MAX_MESSAGE_BYTES as u64 * 2);
