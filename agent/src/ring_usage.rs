//! How full the events ring buffer is, for `aiwatch_ringbuf_used_bytes`.
//!
//! A BPF ring buffer exposes its consumer position (page 0) and producer
//! position (page 1) to user space through `mmap` of the map's fd; the
//! difference is the bytes written and not yet read. This maps both pages
//! read-only on a duplicate of the map's fd, so sampling never touches the
//! reader task or the kernel programs.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

pub struct RingUsage {
    consumer: NonNull<AtomicU64>,
    producer: NonNull<AtomicU64>,
    page: usize,
    _fd: OwnedFd,
}

// SAFETY: the mappings are read-only and read atomically.
unsafe impl Send for RingUsage {}
unsafe impl Sync for RingUsage {}

impl RingUsage {
    /// Maps the position pages of the ring buffer behind `map_fd`.
    pub fn new(map_fd: RawFd) -> io::Result<RingUsage> {
        // SAFETY: dup of a descriptor we were handed; the copy is ours.
        let fd = unsafe { libc::dup(map_fd) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let consumer = map_page(fd.as_raw_fd(), page, 0)?;
        let producer = match map_page(fd.as_raw_fd(), page, page) {
            Ok(producer) => producer,
            Err(err) => {
                // SAFETY: unmapping the page mapped just above.
                unsafe { libc::munmap(consumer.as_ptr() as *mut _, page) };
                return Err(err);
            }
        };
        Ok(RingUsage {
            consumer,
            producer,
            page,
            _fd: fd,
        })
    }

    /// Bytes written by the kernel and not yet consumed.
    pub fn used_bytes(&self) -> u64 {
        // SAFETY: both pointers are live mappings of u64 positions.
        let (consumer, producer) = unsafe {
            (
                self.consumer.as_ref().load(Ordering::Acquire),
                self.producer.as_ref().load(Ordering::Acquire),
            )
        };
        producer.saturating_sub(consumer)
    }
}

impl Drop for RingUsage {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mappings once.
        unsafe {
            libc::munmap(self.consumer.as_ptr() as *mut _, self.page);
            libc::munmap(self.producer.as_ptr() as *mut _, self.page);
        }
    }
}

fn map_page(fd: RawFd, page: usize, offset: usize) -> io::Result<NonNull<AtomicU64>> {
    // SAFETY: a fresh read-only shared mapping of one page of the map.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            offset as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr as *mut AtomicU64).ok_or_else(|| io::Error::other("mmap returned null"))
}
