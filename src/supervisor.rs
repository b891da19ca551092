//! PID 1 of the managed plugin.
//!
//! Docker runs a managed plugin as a container: when its PID 1 exits, the
//! kernel kills every process in it, and every FUSE mount it serves dies
//! with them. So PID 1 is this small loop, not the API server: it runs
//! `serve`, starts it again when it dies (the new one adopts the running
//! mount processes from the state directory), reaps the mount processes
//! that a dead `serve` left to it, and on SIGTERM (`docker plugin disable`,
//! dockerd shutting down) asks every process to finish, so mount processes
//! upload what they staged before Docker's SIGKILL 10 s later.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long shutdown waits for the processes; Docker kills at 10 s.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// Delay before restarting `serve` after a crash: doubled on each quick
/// crash so a serve that cannot start does not spin, reset once it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(200);
    pub const MAX: Duration = Duration::from_secs(5);
    /// A serve that ran this long was healthy: the next crash starts over.
    pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff { delay: Self::FIRST }
    }

    /// The delay before the next start, given how long the last one ran.
    pub fn after_exit(&mut self, ran: Duration) -> Duration {
        if ran >= Self::HEALTHY_RUN {
            self.delay = Self::FIRST;
        }
        let now = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        now
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset with valid signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Waits up to `timeout` for one of the blocked signals in `set`.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<libc::c_int> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; siginfo may be null.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Reaps every exited child; returns the exit statuses by pid.
fn reap() -> Vec<(libc::pid_t, libc::c_int)> {
    let mut done = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on any child, without blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return done;
        }
        done.push((pid, status));
    }
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}

fn spawn_serve() -> std::io::Result<Child> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("serve");
    // SAFETY: sigprocmask is async-signal-safe. The signals this process
    // blocks would otherwise stay blocked in serve and in the mount
    // processes it starts, and SIGTERM would never reach them.
    unsafe { command.pre_exec(unblock_all_signals) };
    command.spawn()
}

/// Clears the signal mask (for a child about to exec).
pub fn unblock_all_signals() -> std::io::Result<()> {
    let empty = signal_set(&[]);
    // SAFETY: valid set; only the calling thread's mask changes.
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs until SIGTERM or SIGINT; see the module documentation.
pub fn run() -> anyhow::Result<()> {
    // SAFETY: getpid cannot fail.
    if unsafe { libc::getpid() } != 1 {
        anyhow::bail!(
            "`supervise` is the managed plugin's entrypoint and must be PID 1 of its own PID namespace (it signals every process in it at shutdown); run `opensandbox-volume serve` instead"
        );
    }
    let set = signal_set(&[libc::SIGTERM, libc::SIGINT, libc::SIGCHLD]);
    // SAFETY: blocking signals in this single-threaded process, so they
    // queue for sigtimedwait (PID 1 would otherwise drop them).
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    let mut backoff = Backoff::new();
    let mut serve: Option<(Child, Instant)> = None;
    let mut next_start = Some(Instant::now());
    loop {
        if let Some(at) = next_start
            && Instant::now() >= at
        {
            match spawn_serve() {
                Ok(child) => {
                    eprintln!("supervise: serve started (pid {})", child.id());
                    serve = Some((child, Instant::now()));
                    next_start = None;
                }
                Err(e) => {
                    let delay = backoff.after_exit(Duration::ZERO);
                    eprintln!("supervise: could not start serve: {e}; retrying in {delay:?}");
                    next_start = Some(Instant::now() + delay);
                }
            }
        }
        let timeout = next_start
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(5))
            .max(Duration::from_millis(10));
        match wait_signal(&set, timeout) {
            Some(libc::SIGTERM) | Some(libc::SIGINT) => break,
            _ => {}
        }
        for (pid, status) in reap() {
            let is_serve = serve
                .as_ref()
                .is_some_and(|(child, _)| child.id() as libc::pid_t == pid);
            if is_serve {
                let (_, started) = serve.take().expect("serve is running");
                let delay = backoff.after_exit(started.elapsed());
                eprintln!(
                    "supervise: serve (pid {pid}) ended with {}; restarting in {delay:?}; mounts stay up",
                    describe(status)
                );
                next_start = Some(Instant::now() + delay);
            }
            // Anything else is a mount process whose serve died before it:
            // reaped here so it does not linger as a zombie.
        }
    }
    shutdown(&set);
    Ok(())
}

/// Asks every process in the plugin to finish (serve stops listening,
/// mount processes unmount and upload) and waits for them, within
/// Docker's grace period.
fn shutdown(set: &libc::sigset_t) {
    eprintln!("supervise: stopping; mount processes upload what they staged");
    // SAFETY: as PID 1 of the namespace, -1 reaches exactly the plugin's
    // processes (never PID 1 itself).
    unsafe { libc::kill(-1, libc::SIGTERM) };
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    loop {
        reap();
        // SAFETY: waitpid with WNOHANG: ECHILD once no child is left.
        let left = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if left < 0 {
            eprintln!("supervise: every process has finished");
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            eprintln!(
                "supervise: processes still running after {SHUTDOWN_GRACE:?}; staged data stays in the cache and is uploaded at the next mount"
            );
            return;
        }
        wait_signal(set, (deadline - now).min(Duration::from_millis(200)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_on_quick_crashes_and_resets_after_a_healthy_run() {
        let mut b = Backoff::new();
        let quick = Duration::from_millis(10);
        assert_eq!(b.after_exit(quick), Duration::from_millis(200));
        assert_eq!(b.after_exit(quick), Duration::from_millis(400));
        for _ in 0..10 {
            b.after_exit(quick);
        }
        assert_eq!(b.after_exit(quick), Backoff::MAX);
        assert_eq!(b.after_exit(Backoff::HEALTHY_RUN), Backoff::FIRST);
    }

    #[test]
    fn refuses_to_run_unless_pid_1() {
        let err = run().unwrap_err().to_string();
        assert!(err.contains("must be PID 1"), "{err}");
    }
}
