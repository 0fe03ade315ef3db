//! The event loop's mechanics: one epoll instance, one signalfd, the clock.
//!
//! The reactor knows file descriptors, interests, tokens and deadlines; it
//! never knows about paths, headers or frames. Epoll is level-triggered: a
//! handler that leaves bytes unread is simply woken again, which is what lets
//! every read be capped by a budget without losing readiness.
//!
//! Signals: SIGINT, SIGTERM and SIGCHLD are blocked for the whole process and
//! read from a signalfd inside the loop, so no handler ever runs at an
//! arbitrary point. SIGPIPE cannot hurt us: every socket write is a
//! `sendmsg` with `MSG_NOSIGNAL` (and Rust binaries start with SIGPIPE
//! ignored anyway), so a vanished peer gives `EPIPE` for that client only.
//! `std::process::Command` resets the signal mask and SIGPIPE disposition in children, so capture tools still die
//! on SIGTERM (a test in `tests/` keeps us honest about that).

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Most readiness events taken from the kernel per wait; more simply wait for
/// the next turn (level-triggered, so none is lost).
const MAX_EVENTS_PER_WAIT: usize = 256;

/// The epoll `u64` user data. Its meaning belongs to the caller (the server
/// packs a slot and a generation into it); the reactor only carries it.
pub type Token = u64;

/// Token reserved for the signalfd.
pub const SIGNAL_TOKEN: Token = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Registered but not interested (a listener paused after `EMFILE`).
    None,
    Read,
    ReadWrite,
    /// Output pending to a peer that has closed its side: reading again
    /// would only report the same EOF (level-triggered) and spin.
    Write,
}

impl Interest {
    fn flags(self) -> EpollFlags {
        match self {
            Interest::None => EpollFlags::empty(),
            Interest::Read => EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP,
            Interest::ReadWrite => {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP
            }
            Interest::Write => EpollFlags::EPOLLOUT,
        }
    }
}

/// One readiness report. `hangup` and `error` are reported whatever the
/// interest; handlers treat them as "read to find out" (EOF or an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
    pub hangup: bool,
    pub error: bool,
}

/// Signals the loop cares about, as read from the signalfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGINT or SIGTERM: stop gracefully.
    Stop,
    /// SIGCHLD: some child changed state; reap with `waitpid(WNOHANG)`.
    Child,
}

pub struct Reactor {
    epoll: Epoll,
    signals: SignalFd,
    events: Vec<EpollEvent>,
}

impl Reactor {
    /// Blocks INT/TERM/CHLD and registers the signalfd that reads them.
    pub fn new() -> io::Result<Reactor> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGCHLD);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL_TOKEN))?;
        Ok(Reactor {
            epoll,
            signals,
            events: vec![EpollEvent::empty(); MAX_EVENTS_PER_WAIT],
        })
    }

    pub fn add(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(interest.flags(), token))?;
        Ok(())
    }

    pub fn modify(&self, fd: impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        self.epoll
            .modify(fd, &mut EpollEvent::new(interest.flags(), token))?;
        Ok(())
    }

    /// Deregistration is optional before closing an fd that was never
    /// duplicated (closing removes it), but explicit removal keeps a stale
    /// event from arriving for a slot that is about to be reused.
    pub fn remove(&self, fd: impl AsFd) {
        // ENOENT/EBADF only mean it was already gone: nothing to undo.
        let _ = self.epoll.delete(fd);
    }

    /// Waits until an fd is ready or `deadline` passes; appends readiness to
    /// `out` (cleared first). An interrupted wait returns no events.
    pub fn wait(&mut self, deadline: Option<Instant>, out: &mut Vec<Ready>) -> io::Result<()> {
        out.clear();
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                // Round up so we never wake a hair before the deadline and spin.
                let left = at.saturating_duration_since(now());
                let ms = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms.min(i32::MAX as u128) as u64).unwrap_or(PollTimeout::MAX)
            }
        };
        let n = match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        for ev in self.events.iter().take(n) {
            let f = ev.events();
            out.push(Ready {
                token: ev.data(),
                readable: f.contains(EpollFlags::EPOLLIN),
                writable: f.contains(EpollFlags::EPOLLOUT),
                hangup: f.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP),
                error: f.contains(EpollFlags::EPOLLERR),
            });
        }
        Ok(())
    }

    /// Drains the signalfd.
    pub fn take_signals(&self, out: &mut Vec<SignalEvent>) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                out.push(SignalEvent::Child);
            } else if sig == libc::SIGINT || sig == libc::SIGTERM {
                out.push(SignalEvent::Stop);
            }
        }
    }
}

/// The monotonic clock. Only the reactor reads clocks; everything else gets
/// `now` passed in, so state machines are tested with made-up instants.
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock microseconds since the Unix epoch (the test pattern's clock and
/// the latency stamp benchmarks read).
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}
