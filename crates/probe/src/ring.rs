//! What aya's `RingBuf` does not give: how full the ring buffer is, and a wait for it to become
//! readable.

use std::{
    os::fd::AsRawFd,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use crate::ProbeError;

/// The ring buffer's consumer and producer positions, mapped read-only a second time: aya's
/// `RingBuf` keeps its own mapping private. The kernel lays them out as one page each, the
/// consumer's first (Linux 5.8+, `kernel/bpf/ringbuf.c`), and allows read-only maps of both.
pub(crate) struct RingPositions {
    base: std::ptr::NonNull<libc::c_void>,
    page: usize,
    pub(crate) size: u64,
}

impl RingPositions {
    pub(crate) fn map(ring_fd: i32, size: u32) -> Result<RingPositions, ProbeError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a new read-only shared mapping of the ring buffer's fd; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring_fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(ProbeError::Read(format!(
                "mmap of the ring buffer's positions: {}",
                std::io::Error::last_os_error()
            )));
        }
        let base = std::ptr::NonNull::new(base).expect("mmap succeeded");
        Ok(RingPositions {
            base,
            page,
            size: u64::from(size),
        })
    }

    pub(crate) fn used(&self) -> u64 {
        let at = |offset: usize| {
            // SAFETY: both words lie in the mapping (offsets 0 and one page, of two pages), are
            // aligned, and are only written by the kernel and the consumer with atomic stores.
            unsafe {
                (*self
                    .base
                    .as_ptr()
                    .cast::<u8>()
                    .add(offset)
                    .cast::<AtomicU64>())
                .load(Ordering::Acquire)
            }
        };
        let (consumer, producer) = (at(0), at(self.page));
        producer.wrapping_sub(consumer).min(self.size)
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of this length, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr(), 2 * self.page) };
    }
}

// SAFETY: the mapping is only read, with atomic loads; the pointer is owned by this value.
unsafe impl Send for RingPositions {}

/// Waits for the ring buffer's fd to become readable.
pub(crate) struct Epoll(std::os::fd::OwnedFd);

impl Epoll {
    pub(crate) fn new(ring_fd: i32) -> Result<Epoll, ProbeError> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls on fds we own; the result is checked before use.
        unsafe {
            let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if fd < 0 {
                return Err(ProbeError::Read(format!(
                    "epoll_create1: {}",
                    std::io::Error::last_os_error()
                )));
            }
            let epoll = Epoll(std::os::fd::OwnedFd::from_raw_fd(fd));
            let mut interest = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: 0,
            };
            if libc::epoll_ctl(fd, libc::EPOLL_CTL_ADD, ring_fd, &mut interest) < 0 {
                return Err(ProbeError::Read(format!(
                    "epoll_ctl: {}",
                    std::io::Error::last_os_error()
                )));
            }
            Ok(epoll)
        }
    }

    pub(crate) fn wait(&self, timeout: Duration) -> Result<(), ProbeError> {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }];
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `ready` outlives the call and its length is passed.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), ready.as_mut_ptr(), 1, millis) };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(ProbeError::Read(format!("epoll_wait: {error}")));
            }
        }
        Ok(())
    }
}
