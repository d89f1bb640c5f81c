//! The container start contract of the bundled templates (`templates/base/`): the real
//! `kolla_set_configs` (host `python3`), `kolla_start` and `kolla_copy_cacerts` (host `bash`), run
//! against a scratch root through `KOLLA_TEST_ROOT`. Ownership checks need root (as in CI).

#[path = "support/start_contract.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use serde_json::json;
use support::{Root, Run, base_script, nobody, write_script};

const CFG: &str = "/var/lib/kolla/config_files";

#[test]
fn glob_source_into_directory_dest_gets_owner_and_perm() {
    let root = Root::new();
    root.write(&format!("{CFG}/a.conf"), "alpha\n");
    root.write(&format!("{CFG}/b.conf"), "beta\n");
    root.write(&format!("{CFG}/c.ini"), "not matched\n");
    root.config(&json!({
        "command": "svc",
        "config_files": [{
            "source": format!("{CFG}/*.conf"), "dest": "/etc/svc/",
            "owner": "nobody:nogroup", "perm": "0600"
        }]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);

    let (uid, gid) = nobody();
    assert_eq!(root.read("/etc/svc/a.conf"), "alpha\n");
    assert_eq!(root.read("/etc/svc/b.conf"), "beta\n");
    assert!(!root.exists("/etc/svc/c.ini"), "a file the glob does not match was copied");
    assert_eq!(root.props("/etc/svc/a.conf"), (0o600, uid, gid));
    assert_eq!(root.props("/etc/svc/b.conf"), (0o600, uid, gid));
}

#[test]
fn dest_without_slash_is_the_target_and_directories_get_x_where_r() {
    let root = Root::new();
    root.write(&format!("{CFG}/main.conf"), "main\n");
    root.write(&format!("{CFG}/conf.d/one.conf"), "one\n");
    root.write(&format!("{CFG}/conf.d/deeper/two.conf"), "two\n");
    root.config(&json!({
        "command": "svc",
        "config_files": [
            {"source": format!("{CFG}/main.conf"), "dest": "/etc/svc/renamed.conf",
             "owner": "root:", "perm": "644"},
            {"source": format!("{CFG}/conf.d"), "dest": "/etc/svc/conf.d",
             "owner": "nobody:nogroup", "perm": "0o640"}
        ]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);

    let (uid, gid) = nobody();
    assert_eq!(root.read("/etc/svc/renamed.conf"), "main\n");
    assert!(!root.exists("/etc/svc/main.conf"));
    assert_eq!(root.props("/etc/svc/renamed.conf"), (0o644, 0, 0));
    assert_eq!(root.read("/etc/svc/conf.d/deeper/two.conf"), "two\n");
    assert_eq!(root.props("/etc/svc/conf.d"), (0o750, uid, gid));
    assert_eq!(root.props("/etc/svc/conf.d/deeper"), (0o750, uid, gid));
    assert_eq!(root.props("/etc/svc/conf.d/one.conf"), (0o640, uid, gid));
    assert_eq!(root.props("/etc/svc/conf.d/deeper/two.conf"), (0o640, uid, gid));
}

#[test]
fn unknown_owner_and_malformed_perm_exit_2_with_a_message() {
    let root = Root::new();
    root.write(&format!("{CFG}/a.conf"), "a");
    // "nobody" alone means group "nobody", which Debian does not have (it has "nogroup").
    root.config(&json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/a.conf"), "dest": "/etc/a.conf",
                          "owner": "no-such-user-kolla", "perm": "0600"}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(2).expect_stderr("no user named \"no-such-user-kolla\"");

    root.config(&json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/a.conf"), "dest": "/etc/a.conf",
                          "owner": "root", "perm": "rw-r--r--"}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(2).expect_stderr("perm 'rw-r--r--' is not an octal mode");
}

#[test]
fn optional_missing_source_is_skipped() {
    let root = Root::new();
    root.config(&json!({
        "command": "svc --flag",
        "config_files": [{"source": format!("{CFG}/absent*.conf"), "dest": "/etc/svc/",
                          "owner": "root", "perm": "0600", "optional": true}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    assert!(!root.exists("/etc/svc"));
    assert_eq!(root.read("/run_command"), "svc --flag");
}

#[test]
fn required_missing_source_exits_1_naming_it() {
    let root = Root::new();
    root.config(&json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/absent.conf"), "dest": "/etc/svc/absent.conf",
                          "owner": "root", "perm": "0600"}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[])
        .expect_code(1)
        .expect_stderr("MissingSource")
        .expect_stderr(&format!("{CFG}/absent.conf matches no file"));
    assert!(!root.exists("/run_command"), "the command was written despite the failure");
}

#[test]
fn directory_dest_is_replaced_unless_merge() {
    for merge in [false, true] {
        let root = Root::new();
        root.write(&format!("{CFG}/conf.d/new.conf"), "new\n");
        root.write(&format!("{CFG}/conf.d/shared.conf"), "from config\n");
        root.write("/etc/svc/conf.d/stale.conf", "stale\n");
        root.write("/etc/svc/conf.d/shared.conf", "from image\n");
        root.config(&json!({
            "command": "svc",
            "config_files": [{"source": format!("{CFG}/conf.d"), "dest": "/etc/svc/conf.d",
                              "owner": "root", "perm": "0644", "merge": merge}]
        }));
        root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
        assert_eq!(root.read("/etc/svc/conf.d/new.conf"), "new\n");
        assert_eq!(root.read("/etc/svc/conf.d/shared.conf"), "from config\n");
        assert_eq!(
            root.exists("/etc/svc/conf.d/stale.conf"),
            merge,
            "merge={merge}: a file only the image had must survive a merge and only a merge"
        );
    }
}

#[test]
fn preserve_properties_keeps_mode_owner_and_times() {
    let root = Root::new();
    let src = root.write(&format!("{CFG}/keyring"), "secret\n");
    let (uid, gid) = nobody();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(&src, Some(uid), Some(gid)).unwrap();
    let mtime = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(&src, mtime).unwrap();
    root.config(&json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/keyring"), "dest": "/etc/svc/keyring",
                          "preserve_properties": true}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    assert_eq!(root.read("/etc/svc/keyring"), "secret\n");
    assert_eq!(root.props("/etc/svc/keyring"), (0o751, uid, gid));
    let meta = fs::metadata(root.path("/etc/svc/keyring")).unwrap();
    assert_eq!(filetime::FileTime::from_last_modification_time(&meta), mtime);
}

#[test]
fn preserve_properties_with_merge_copies_links_as_links() {
    let root = Root::new();
    root.write(&format!("{CFG}/tree/real.conf"), "real\n");
    symlink("real.conf", root.path(&format!("{CFG}/tree/alias.conf"))).unwrap();
    root.config(&json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/tree"), "dest": "/etc/tree",
                          "preserve_properties": true, "merge": true}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    let link = fs::read_link(root.path("/etc/tree/alias.conf")).expect("alias.conf is a link");
    assert_eq!(link, std::path::Path::new("real.conf"));
    assert_eq!(root.read("/etc/tree/alias.conf"), "real\n");
}

#[test]
fn permissions_recurse_exclude_and_links_are_not_followed() {
    let root = Root::new();
    root.write("/var/lib/svc/data/a", "a");
    root.write("/var/lib/svc/data/sub/b", "b");
    root.write("/var/lib/svc/cache/c", "c");
    root.write("/var/lib/other/d", "d");
    root.write("/outside/secret", "s");
    symlink(root.path("/outside/secret"), root.path("/var/lib/svc/data/link")).unwrap();
    root.config(&json!({
        "command": "svc",
        "permissions": [
            {"path": "/var/lib/svc", "owner": "nobody:nogroup", "perm": "0640",
             "recurse": true, "exclude": ["/cache"]},
            {"path": "/var/lib/oth*", "owner": "nobody:nogroup"},
            {"path": "/var/lib/absent", "owner": "nobody:nogroup"}
        ]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0).expect_stderr("/var/lib/absent does not exist");

    let (uid, gid) = nobody();
    assert_eq!(root.props("/var/lib/svc"), (0o750, uid, gid));
    assert_eq!(root.props("/var/lib/svc/data"), (0o750, uid, gid));
    assert_eq!(root.props("/var/lib/svc/data/a"), (0o640, uid, gid));
    assert_eq!(root.props("/var/lib/svc/data/sub/b"), (0o640, uid, gid));
    // Excluded by the expression: left alone.
    assert_eq!(root.props("/var/lib/svc/cache").1, 0);
    assert_eq!(root.props("/var/lib/svc/cache/c").1, 0);
    // A link below the path gets its own owner; its target is never touched.
    assert_eq!(root.props("/var/lib/svc/data/link").1, uid);
    assert_eq!(root.props("/outside/secret"), (0o644, 0, 0));
    // Without recurse only the matched path itself changes; perm is optional.
    let (mode, o_uid, _) = root.props("/var/lib/other");
    assert_eq!((mode, o_uid), (0o755, uid));
    assert_eq!(root.props("/var/lib/other/d").1, 0);
}

#[test]
fn copy_once_configures_once_then_changes_nothing() {
    let root = Root::new();
    root.write(&format!("{CFG}/svc.conf"), "first\n");
    let config = json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/svc.conf"), "dest": "/etc/svc.conf",
                          "owner": "root", "perm": "0600"}]
    });
    root.config(&config);
    root.set_configs(Some("COPY_ONCE"), &[]).expect_code(0);
    assert!(root.exists("/configured"), "COPY_ONCE must leave the /configured marker");
    assert_eq!(root.read("/etc/svc.conf"), "first\n");

    root.write(&format!("{CFG}/svc.conf"), "second\n");
    let mut changed = config.clone();
    changed["command"] = json!("other");
    root.config(&changed);
    root.set_configs(Some("COPY_ONCE"), &[]).expect_code(0).expect_stderr("AlreadyConfigured");
    assert_eq!(root.read("/etc/svc.conf"), "first\n");
    assert_eq!(root.read("/run_command"), "svc");

    // COPY_ALWAYS ignores the marker.
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    assert_eq!(root.read("/etc/svc.conf"), "second\n");
    assert_eq!(root.read("/run_command"), "other");
}

#[test]
fn missing_or_unknown_strategy_exits_1() {
    let root = Root::new();
    root.config(&json!({"command": "svc"}));
    root.set_configs(Some("COPY_SOMETIMES"), &[])
        .expect_code(1)
        .expect_stderr("KOLLA_CONFIG_STRATEGY must be COPY_ALWAYS or COPY_ONCE, not 'COPY_SOMETIMES'");
    root.set_configs(None, &[]).expect_code(1).expect_stderr("not None");
    assert!(!root.exists("/run_command"));
}

#[test]
fn invalid_config_exits_1_naming_the_problem() {
    let root = Root::new();
    root.write(&format!("{CFG}/config.json"), "{\"command\": \"svc\",\n  oops}\n");
    root.set_configs(Some("COPY_ALWAYS"), &[])
        .expect_code(1)
        .expect_stderr("config.json is not valid JSON")
        .expect_stderr("line 2");

    root.config(&json!({"config_files": []}));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(1).expect_stderr("\"command\" is missing");

    root.config(&json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/x"), "dest": "/etc/x", "owner": "root"}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[])
        .expect_code(1)
        .expect_stderr("config_files[0]")
        .expect_stderr("needs \"owner\" and \"perm\" unless \"preserve_properties\"");
}

#[test]
fn run_command_is_written_verbatim_with_mode_0644() {
    let root = Root::new();
    root.config(&json!({"command": "/usr/bin/svc --config-file /etc/svc.conf  --debug"}));
    // A restrictive umask must not leak into /run_command: the service user reads it.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 077 && exec python3 \"$0\"")
        .arg(base_script("set_configs.py"))
        .env("KOLLA_TEST_ROOT", root.top())
        .env("KOLLA_CONFIG_STRATEGY", "COPY_ALWAYS")
        .env_remove("SUDO_UID");
    Run::of(&mut cmd).expect_code(0);
    assert_eq!(root.read("/run_command"), "/usr/bin/svc --config-file /etc/svc.conf  --debug");
    assert_eq!(root.props("/run_command"), (0o644, 0, 0));
}

#[test]
fn directories_and_files_entries_are_created_with_properties() {
    let root = Root::new();
    fs::create_dir_all(root.path("/var/log/kolla")).unwrap();
    root.config(&json!({
        "command": "svc",
        "directories": [{"path": "/var/log/kolla/svc/deep", "owner": "nobody:nogroup", "perm": "0700"}],
        "files": [{"path": "/var/log/kolla/svc.log", "owner": "nobody:nogroup", "perm": "0600"}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    let (uid, gid) = nobody();
    assert_eq!(root.props("/var/log/kolla/svc/deep"), (0o700, uid, gid));
    assert_eq!(root.props("/var/log/kolla/svc.log"), (0o600, uid, gid));
    assert_eq!(root.read("/var/log/kolla/svc.log"), "");

    root.config(&json!({
        "command": "svc",
        "files": [{"path": "/var/log/nowhere/svc.log", "owner": "root", "perm": "0600"}]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(2).expect_stderr("the parent directory does not exist");
}

#[test]
fn image_defaults_come_back_when_dropped_from_the_config() {
    let root = Root::new();
    root.write("/etc/svc/svc.conf", "image default\n");
    root.write(&format!("{CFG}/svc.conf"), "operator\n");
    root.write(&format!("{CFG}/extra.conf"), "extra\n");
    root.config(&json!({
        "command": "svc",
        "config_files": [
            {"source": format!("{CFG}/svc.conf"), "dest": "/etc/svc/svc.conf", "owner": "root", "perm": "0600"},
            {"source": format!("{CFG}/extra.conf"), "dest": "/etc/svc/", "owner": "root", "perm": "0600"}
        ]
    }));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    assert_eq!(root.read("/etc/svc/svc.conf"), "operator\n");
    assert_eq!(root.read("/etc/kolla/defaults/etc/svc/svc.conf"), "image default\n");

    // The entries are dropped: the image's file returns, the file the image lacked goes away.
    root.config(&json!({"command": "svc"}));
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    assert_eq!(root.read("/etc/svc/svc.conf"), "image default\n");
    assert!(!root.exists("/etc/svc/extra.conf"));
}

#[test]
fn check_mode_reports_drift() {
    let root = Root::new();
    root.write(&format!("{CFG}/svc.conf"), "v1\n");
    let config = json!({
        "command": "svc",
        "config_files": [{"source": format!("{CFG}/svc.conf"), "dest": "/etc/svc.conf",
                          "owner": "nobody:nogroup", "perm": "0600"}]
    });
    root.config(&config);
    root.set_configs(None, &["--check"]).expect_code(1).expect_stderr("/run_command is missing");
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);
    root.set_configs(None, &["--check"]).expect_code(0);

    fs::set_permissions(root.path("/etc/svc.conf"), fs::Permissions::from_mode(0o644)).unwrap();
    root.set_configs(None, &["--check"]).expect_code(1).expect_stderr("has mode 0644, expected 0600");
    root.set_configs(Some("COPY_ALWAYS"), &[]).expect_code(0);

    root.write(&format!("{CFG}/svc.conf"), "v2\n");
    root.set_configs(None, &["--check"]).expect_code(1).expect_stderr("differs from");

    let mut changed = config.clone();
    changed["command"] = json!("svc --new");
    root.config(&changed);
    root.set_configs(None, &["--check"]).expect_code(1).expect_stderr("running command differs");
}

#[test]
fn test_root_is_refused_under_sudo_from_a_service_user() {
    let root = Root::new();
    root.config(&json!({"command": "svc"}));
    let mut cmd = Command::new("python3");
    cmd.arg(base_script("set_configs.py"))
        .env("KOLLA_TEST_ROOT", root.top())
        .env("KOLLA_CONFIG_STRATEGY", "COPY_ALWAYS")
        .env("SUDO_UID", "42425");
    Run::of(&mut cmd).expect_code(1).expect_stderr("KOLLA_TEST_ROOT is for tests and is refused under sudo");
    assert!(!root.exists("/run_command"));
}

/// A PATH for `kolla_start`: a `sudo` that logs and runs its command directly, the real scripts,
/// an extend hook that sets ARGS and leaves a marker, and a command that records its pid and args.
fn start_env(root: &Root) -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    let b = bin.path();
    write_script(
        &b.join("sudo"),
        "#!/bin/sh\necho \"$*\" >> \"$KOLLA_TEST_ROOT/sudo.log\"\n[ \"$1\" = -E ] && shift\nexec \"$@\"\n",
    );
    write_script(
        &b.join("kolla_set_configs"),
        &format!("#!/bin/sh\nexec python3 '{}' \"$@\"\n", base_script("set_configs.py").display()),
    );
    write_script(
        &b.join("kolla_copy_cacerts"),
        &format!("#!/bin/sh\nexec bash '{}' \"$@\"\n", base_script("copy_cacerts.sh").display()),
    );
    // Sourced, so it is not executable (as in the images).
    fs::write(b.join("kolla_extend_start"), "echo sourced > \"$KOLLA_TEST_ROOT/hook\"\nARGS=\"from-hook  last\"\n")
        .unwrap();
    write_script(
        &b.join("record"),
        "#!/bin/sh\n{ echo \"pid $$\"; for a in \"$@\"; do echo \"arg $a\"; done; } > \"$KOLLA_TEST_ROOT/record\"\n",
    );
    root.config(&json!({"command": format!("{}/record one   two", b.display())}));
    bin
}

fn kolla_start(root: &Root, bin: &std::path::Path, skip_extend: bool) -> (u32, Run) {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.arg(base_script("start.sh"))
        .env("PATH", path)
        .env("KOLLA_TEST_ROOT", root.top())
        .env("KOLLA_CONFIG_STRATEGY", "COPY_ALWAYS")
        .env_remove("SUDO_UID")
        .env_remove("KOLLA_SKIP_EXTEND_START")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if skip_extend {
        cmd.env("KOLLA_SKIP_EXTEND_START", "");
    }
    let child = cmd.spawn().expect("bash");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (pid, run)
}

#[test]
fn kolla_start_configures_sources_the_hook_and_execs_the_command() {
    let root = Root::new();
    let bin = start_env(&root);
    let (pid, run) = kolla_start(&root, bin.path(), false);
    run.expect_code(0);

    assert_eq!(root.read("/sudo.log"), "-E kolla_set_configs\nkolla_copy_cacerts\n");
    assert_eq!(root.read("/hook"), "sourced\n");
    // exec: the command replaced the shell (same pid); CMD and ARGS were split on whitespace.
    assert_eq!(
        root.read("/record"),
        format!("pid {pid}\narg one\narg two\narg from-hook\narg last\n"),
        "stderr:\n{}",
        run.stderr
    );
}

#[test]
fn kolla_start_skips_the_hook_when_asked_even_with_an_empty_value() {
    let root = Root::new();
    let bin = start_env(&root);
    let (pid, run) = kolla_start(&root, bin.path(), true);
    run.expect_code(0);
    assert!(!root.exists("/hook"), "the hook was sourced despite KOLLA_SKIP_EXTEND_START");
    assert_eq!(root.read("/record"), format!("pid {pid}\narg one\narg two\n"));
}

#[test]
fn kolla_start_stops_when_configuration_fails() {
    let root = Root::new();
    let bin = start_env(&root);
    root.config(&json!({
        "command": format!("{}/record", bin.path().display()),
        "config_files": [{"source": format!("{CFG}/absent"), "dest": "/etc/absent",
                          "owner": "root", "perm": "0600"}]
    }));
    let (_, run) = kolla_start(&root, bin.path(), false);
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    assert!(!root.exists("/record"), "the service started without its configuration");
    assert!(!root.exists("/hook"));
}

#[test]
fn copy_cacerts_replaces_previous_kolla_certificates() {
    let root = Root::new();
    root.write("/etc/debian_version", "12.0\n");
    root.write(&format!("{CFG}/ca-certificates/site-ca.crt"), "PEM\n");
    root.write("/usr/local/share/ca-certificates/kolla-customca-withdrawn.crt", "old\n");
    root.write("/usr/local/share/ca-certificates/local.crt", "not ours\n");
    let mut cmd = Command::new("bash");
    cmd.arg(base_script("copy_cacerts.sh")).env("KOLLA_TEST_ROOT", root.top()).env_remove("SUDO_UID");
    Run::of(&mut cmd).expect_code(0);
    assert_eq!(root.read("/usr/local/share/ca-certificates/kolla-customca-site-ca.crt"), "PEM\n");
    assert!(!root.exists("/usr/local/share/ca-certificates/kolla-customca-withdrawn.crt"));
    assert_eq!(root.read("/usr/local/share/ca-certificates/local.crt"), "not ours\n");
}
