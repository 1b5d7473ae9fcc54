//! skiff-pause: the process that holds a pod's namespaces.
//!
//! The node daemon starts it in the pod's new network, IPC and UTS namespaces (and PID
//! namespace when the pod shares one); as long as it lives, the namespaces live. It does
//! nothing else: it sleeps in `sigsuspend`, so it costs no CPU and little memory.
//!
//! # Protocol
//!
//! ```text
//! skiff-pause [--subreaper] [-- CMD [ARGS...]]
//! skiff-pause --version | --help
//! ```
//!
//! - **SIGTERM, SIGINT**: exit with status 0. When pause is PID 1 of a PID namespace, the
//!   kernel then kills every other process in that namespace.
//! - **SIGCHLD**: reap every exited child (`waitpid(-1, WNOHANG)` until none is left), so
//!   that as PID 1 of a pod PID namespace it collects the orphans re-parented to it and no
//!   zombie piles up. Exit statuses are discarded.
//! - **`--subreaper`**: mark pause a child subreaper (`PR_SET_CHILD_SUBREAPER`), so orphaned
//!   descendants are re-parented to pause (and reaped by it) even outside a PID namespace.
//! - **`-- CMD ARGS`**: once signals are set up, fork and exec `CMD` (searched in `PATH`) as
//!   a child of pause, with the signal mask pause inherited and default dispositions. Pause
//!   keeps running when the command exits and reaps it like any other child. Used by the
//!   tests, and by the daemon should it make pause the parent of a pod's processes.
//! - Exit status 2 on a usage error, 1 when setting up signals or forking fails; the child
//!   exits 127 when `CMD` cannot be executed.
//!
//! Every other signal keeps its default action. The handled signals are blocked except
//! while pause sleeps in `sigsuspend`, so none can arrive between checking the flags and
//! going to sleep.
//!
//! # Why so spare
//!
//! One pause runs per pod, so its footprint is multiplied by the pod count. The binary has
//! no `std` runtime start-up (`no_main`), never allocates, never formats: it talks to the
//! kernel through raw `libc` calls on the `argv` the C runtime hands to `main`. Built
//! statically (see `pause/README.md`) its whole resident set stays under 1 MiB, of which
//! about 55 KiB is its own; the rest is shared page-cache text.

#![no_main]

use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_char, c_int};

/// Set by the handler when SIGTERM or SIGINT arrived.
static STOP: AtomicBool = AtomicBool::new(false);

/// The signals pause handles.
const HANDLED: [c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD];

const USAGE: &[u8] =
    b"usage: skiff-pause [--subreaper] [-- CMD [ARGS...]]\n       skiff-pause --version | --help\n";

const VERSION: &[u8] = concat!("skiff-pause ", env!("CARGO_PKG_VERSION"), "\n").as_bytes();

/// Exit status for a command line pause does not understand.
const EXIT_USAGE: c_int = 2;
/// Exit status when the kernel refuses a setup call.
const EXIT_SETUP: c_int = 1;

extern "C" fn on_signal(sig: c_int) {
    // SIGCHLD only needs to wake `sigsuspend`; the main loop reaps after every wake-up.
    if sig != libc::SIGCHLD {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// The C entry point: `no_main` skips Rust's runtime start-up, which pause does not need.
///
/// # Safety
///
/// Called once by the C runtime with a valid, NULL-terminated `argv` of `argc` entries.
#[no_mangle]
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    let mut subreaper = false;
    // Index into argv of the command to spawn, if `--` was given.
    let mut command: Option<usize> = None;
    let argc = usize::try_from(argc).unwrap_or(0);
    let mut i = 1;
    while i < argc {
        let arg = CStr::from_ptr(*argv.add(i)).to_bytes();
        match arg {
            b"--version" | b"-V" => {
                write_all(1, &[VERSION]);
                return 0;
            }
            b"--help" | b"-h" => {
                write_all(1, &[USAGE]);
                return 0;
            }
            b"--subreaper" => subreaper = true,
            b"--" => {
                if i + 1 >= argc {
                    write_all(2, &[b"skiff-pause: missing command after --\n", USAGE]);
                    return EXIT_USAGE;
                }
                command = Some(i + 1);
                break;
            }
            _ => {
                write_all(2, &[b"skiff-pause: unknown argument ", arg, b"\n", USAGE]);
                return EXIT_USAGE;
            }
        }
        i += 1;
    }
    run(subreaper, command.map(|at| argv.add(at)))
}

/// Sets up signals, optionally becomes a subreaper and spawns the command, then sleeps and
/// reaps until told to stop.
///
/// # Safety
///
/// `command`, if given, points into a NULL-terminated argv of valid C strings.
unsafe fn run(subreaper: bool, command: Option<*const *const c_char>) -> c_int {
    // Block the handled signals first so none is lost or handled before pause is ready.
    let mut handled: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut handled);
    for sig in HANDLED {
        libc::sigaddset(&mut handled, sig);
    }
    let mut original: libc::sigset_t = std::mem::zeroed();
    if libc::sigprocmask(libc::SIG_BLOCK, &handled, &mut original) != 0 {
        return fail(b"cannot block SIGTERM, SIGINT and SIGCHLD");
    }

    // A handler is needed even for SIGTERM: as PID 1 of a PID namespace, signals left at
    // their default action are dropped by the kernel, so pause could never be stopped.
    for sig in HANDLED {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        // Stopped children are none of pause's business; only exits wake it.
        action.sa_flags = if sig == libc::SIGCHLD {
            libc::SA_NOCLDSTOP
        } else {
            0
        };
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(sig, &action, ptr::null_mut()) != 0 {
            return fail(b"cannot install the signal handlers");
        }
    }

    if subreaper && libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
        return fail(b"cannot become a child subreaper");
    }

    if let Some(command) = command {
        if let Err(code) = spawn(command, &original) {
            return code;
        }
    }

    // Sleep with whatever mask was inherited, minus the signals pause handles.
    let mut sleep_mask = original;
    for sig in HANDLED {
        libc::sigdelset(&mut sleep_mask, sig);
    }
    loop {
        // Reaping on every wake-up (and once before the first sleep, for children that
        // exited before the handler existed) never misses one: SIGCHLDs coalesce.
        reap_all();
        if STOP.load(Ordering::SeqCst) {
            return 0;
        }
        // Returns -1/EINTR once a handler has run, with the blocking mask restored.
        libc::sigsuspend(&sleep_mask);
    }
}

/// Collects every exited child without blocking.
fn reap_all() {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid only writes to the status integer we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 || (pid < 0 && errno() == libc::EINTR) {
            continue;
        }
        // 0: children exist but none has exited; -1/ECHILD: no children at all.
        return;
    }
}

/// Forks and execs `command` with the inherited signal mask and default dispositions.
///
/// # Safety
///
/// `command` points into a NULL-terminated argv of valid C strings with at least one entry.
unsafe fn spawn(
    command: *const *const c_char,
    original_mask: &libc::sigset_t,
) -> Result<(), c_int> {
    match libc::fork() {
        -1 => Err(fail(b"cannot fork to run the command")),
        0 => {
            // The child. Pause is single-threaded, so no lock can be held by a vanished thread.
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut default.sa_mask);
            for sig in HANDLED {
                libc::sigaction(sig, &default, ptr::null_mut());
            }
            libc::sigprocmask(libc::SIG_SETMASK, original_mask, ptr::null_mut());
            libc::execvp(*command, command);
            let reason = CStr::from_ptr(libc::strerror(errno())).to_bytes();
            let name = CStr::from_ptr(*command).to_bytes();
            write_all(
                2,
                &[b"skiff-pause: cannot execute ", name, b": ", reason, b"\n"],
            );
            libc::_exit(127)
        }
        _ => Ok(()),
    }
}

/// Reports a failed setup call with the kernel's reason and returns the exit status.
fn fail(what: &[u8]) -> c_int {
    let code = errno();
    // SAFETY: strerror returns a valid C string; pause is single-threaded, so the static
    // buffer it may use is not shared.
    let reason = unsafe { CStr::from_ptr(libc::strerror(code)) }.to_bytes();
    write_all(2, &[b"skiff-pause: ", what, b": ", reason, b"\n"]);
    EXIT_SETUP
}

fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's valid errno slot.
    unsafe { *libc::__errno_location() }
}

/// Writes every part to `fd`, retrying short writes and EINTR; gives up silently on other
/// errors, as there is nowhere left to report them.
fn write_all(fd: c_int, parts: &[&[u8]]) {
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            // SAFETY: the pointer and length describe a live byte slice.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            match usize::try_from(n) {
                Ok(n) if n > 0 => rest = rest.get(n..).unwrap_or_default(),
                _ => break,
            }
        }
    }
}
