//! How full the kernel ring buffer is: `aiwatch_ringbuf_used_bytes`.
//!
//! A BPF ring buffer exposes its consumer position on its first page and its
//! producer position on the second; the bytes waiting are the difference.
//! The reader owns the ring buffer, so this maps those two pages a second
//! time, read-only, from a duplicate of its fd, and samples them without
//! touching the reader.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

/// Read-only views of a ring buffer's consumer and producer positions.
pub struct RingUsage {
    consumer: Page,
    producer: Page,
    _fd: OwnedFd,
}

// SAFETY: the pages are only read, through atomics; the mapping lives as
// long as the value and is unmapped once, on drop.
unsafe impl Send for RingUsage {}
// SAFETY: as for `Send`: shared access only ever reads the pages atomically.
unsafe impl Sync for RingUsage {}

impl RingUsage {
    /// Maps the position pages of the ring buffer behind `ring`.
    pub fn new(ring: &impl AsFd) -> std::io::Result<RingUsage> {
        let fd = ring.as_fd().try_clone_to_owned()?;
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_size = usize::try_from(page_size).map_err(|_| std::io::Error::last_os_error())?;
        let consumer = Page::map(&fd, 0, page_size)?;
        let producer = Page::map(&fd, page_size, page_size)?;
        Ok(RingUsage {
            consumer,
            producer,
            _fd: fd,
        })
    }

    /// Bytes written by the kernel and not yet consumed by the reader.
    pub fn used_bytes(&self) -> u64 {
        // Read the consumer first: it only grows towards the producer, so
        // the difference never goes below zero by more than a race.
        let consumer = self.consumer.position().load(Ordering::Acquire);
        let producer = self.producer.position().load(Ordering::Acquire);
        producer.saturating_sub(consumer)
    }
}

/// One mapped page whose first 8 bytes are a ring position.
struct Page {
    addr: NonNull<libc::c_void>,
    len: usize,
}

impl Page {
    fn map(fd: &OwnedFd, offset: usize, len: usize) -> std::io::Result<Page> {
        let offset =
            libc::off_t::try_from(offset).map_err(|_| std::io::Error::from_raw_os_error(22))?;
        // SAFETY: a fresh shared read-only mapping of a ring buffer page; the
        // kernel refuses anything but ring buffer offsets.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let addr = NonNull::new(addr).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Page { addr, len })
    }

    fn position(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped, page-aligned, and its first 8 bytes
        // are the position the kernel (or the reader) updates atomically.
        unsafe { &*(self.addr.as_ptr() as *const AtomicU64) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped, once.
        unsafe { libc::munmap(self.addr.as_ptr(), self.len) };
    }
}
