//! Helpers of `tests/start_contract.rs`: a scratch root for the real start-contract scripts of
//! `templates/base/`, run with the host's `python3` and `bash` under `KOLLA_TEST_ROOT`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// A script of the bundled `base` image.
pub fn base_script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/base").join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// (uid, gid) of a user and a group of the host, looked up in /etc/passwd and /etc/group.
pub fn host_ids(user: &str, group: &str) -> (u32, u32) {
    let field = |file: &str, name: &str| -> u32 {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name) && f.len() > 2)
            .unwrap_or_else(|| panic!("the tests need `{name}` in {file} (Debian has it)"))[2]
            .parse()
            .expect("numeric id")
    };
    (field("/etc/passwd", user), field("/etc/group", group))
}

/// uid and gid of the user `nobody` and the group `nogroup`, the non-root owner used by the tests.
pub fn nobody() -> (u32, u32) {
    host_ids("nobody", "nogroup")
}

/// A scratch directory standing for `/` of a container.
pub struct Root {
    dir: TempDir,
}

impl Root {
    /// An empty root with the config directory in place.
    pub fn new() -> Root {
        let root = Root { dir: tempfile::tempdir().expect("tempdir") };
        fs::create_dir_all(root.path("/var/lib/kolla/config_files")).unwrap();
        root
    }

    /// The host path of a container path (`/etc/x` → `<tmp>/etc/x`).
    pub fn path(&self, container_path: &str) -> PathBuf {
        assert!(container_path.starts_with('/'), "{container_path} is not absolute");
        self.dir.path().join(&container_path[1..])
    }

    /// The directory standing for `/`.
    pub fn top(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file (creating its parents) at a container path.
    pub fn write(&self, container_path: &str, content: &str) -> PathBuf {
        let path = self.path(container_path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    /// Content of a file at a container path.
    pub fn read(&self, container_path: &str) -> String {
        fs::read_to_string(self.path(container_path)).unwrap_or_else(|e| panic!("reading {container_path}: {e}"))
    }

    /// Whether anything (even a dangling link) is at a container path.
    pub fn exists(&self, container_path: &str) -> bool {
        fs::symlink_metadata(self.path(container_path)).is_ok()
    }

    /// `(mode & 0o7777, uid, gid)` of a container path, not following a final symlink.
    pub fn props(&self, container_path: &str) -> (u32, u32, u32) {
        let m =
            fs::symlink_metadata(self.path(container_path)).unwrap_or_else(|e| panic!("stat {container_path}: {e}"));
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    /// Write `/var/lib/kolla/config_files/config.json`.
    pub fn config(&self, config: &serde_json::Value) {
        self.write("/var/lib/kolla/config_files/config.json", &serde_json::to_string_pretty(config).unwrap());
    }

    /// Run the real `kolla_set_configs` against this root.
    pub fn set_configs(&self, strategy: Option<&str>, args: &[&str]) -> Run {
        let mut cmd = Command::new("python3");
        cmd.arg(base_script("set_configs.py"))
            .args(args)
            .env("KOLLA_TEST_ROOT", self.top())
            .env_remove("KOLLA_CONFIG_FILE")
            .env_remove("SUDO_UID");
        match strategy {
            Some(s) => cmd.env("KOLLA_CONFIG_STRATEGY", s),
            None => cmd.env_remove("KOLLA_CONFIG_STRATEGY"),
        };
        Run::of(&mut cmd)
    }
}

/// The outcome of a script run.
pub struct Run {
    /// Exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error (the scripts log there).
    pub stderr: String,
}

impl Run {
    /// Run a command to completion; failing to start it (python3 or bash missing) fails the test.
    pub fn of(cmd: &mut Command) -> Run {
        let out: Output = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it installed?): {e}"));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Assert the exit status, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "unexpected exit status\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Assert that standard error mentions `text`.
    pub fn expect_stderr(&self, text: &str) -> &Run {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}:\n{}", self.stderr);
        self
    }
}

/// Write an executable script.
pub fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}
