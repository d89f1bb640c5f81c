//! `run -t`: the command gets a pseudo-terminal for its stdin, stdout and stderr, as under
//! `podman run -t`. We keep the master side: what the command writes is read from it, what our stdin
//! gives is written to it (`-i`), and our own terminal is put in raw mode meanwhile, so that Ctrl-C
//! reaches the command's terminal as a byte and becomes its SIGINT there, line editing is the
//! command's, and nothing is echoed twice. The command makes the terminal its controlling terminal
//! (`setsid` + `TIOCSCTTY`, in `helper.rs`) before it executes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A pseudo-terminal pair, sized as our own terminal when we have one.
pub(super) struct Terminal {
    master: OwnedFd,
    /// Ours until the helper has its copies: the master reads EIO only once every copy is closed.
    slave: Option<OwnedFd>,
}

impl Terminal {
    /// `openpty(3)`, with the window size of our stdout's terminal (or 80×24).
    pub(super) fn open() -> io::Result<Terminal> {
        // SAFETY: TIOCGWINSZ fills a winsize; a failed call leaves the zeroed default.
        let mut size = unsafe { std::mem::zeroed::<libc::winsize>() };
        if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } != 0 || size.ws_col == 0 {
            size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        }
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two fds; the name buffer and termios are not asked for.
        let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fds that nothing else owns.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        for fd in [&master, &slave] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        }
        Ok(Terminal { master, slave: Some(slave) })
    }

    /// A new fd of the command's side (one per stdio stream of the helper).
    pub(super) fn slave(&self) -> io::Result<OwnedFd> {
        self.slave.as_ref().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?.try_clone()
    }

    /// Closes our own fd of the command's side, once the helper has its copies.
    pub(super) fn release_slave(&mut self) {
        self.slave = None;
    }

    /// Our side, to read the command's output from.
    pub(super) fn master(&self) -> io::Result<File> {
        Ok(File::from(self.master.try_clone()?))
    }

    /// Puts our terminal in raw mode (until the guard drops) and, with `stdin`, copies our standard
    /// input to the command's terminal from a thread of its own.
    pub(super) fn attach(&self, stdin: bool) -> io::Result<RawMode> {
        let raw = RawMode::enter();
        if stdin {
            let mut to = File::from(self.master.try_clone()?);
            std::thread::Builder::new().name("tty-input".into()).spawn(move || {
                let mut buf = [0u8; 4096];
                let mut from = io::stdin().lock();
                // Ends with our stdin, or when the command's terminal is gone (EIO).
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            })?;
        }
        Ok(raw)
    }
}

/// Our stdin's terminal settings before raw mode, put back when dropped (`None`: not a terminal).
pub(super) struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        let fd = io::stdin().as_fd().as_raw_fd();
        // SAFETY: tcgetattr fills a termios for a terminal fd; anything else fails and is left alone.
        let mut saved = unsafe { std::mem::zeroed::<libc::termios>() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return RawMode(None);
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the local copy; tcsetattr applies it to our own terminal.
        unsafe {
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(fd, libc::TCSANOW, &raw);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `enter` on the same fd.
            unsafe { libc::tcsetattr(io::stdin().as_fd().as_raw_fd(), libc::TCSANOW, saved) };
        }
    }
}
