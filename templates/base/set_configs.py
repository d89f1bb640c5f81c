#!/usr/bin/python3 -I
"""kolla_set_configs: install a service's configuration before it starts.

kolla_start runs this as root (``sudo -E kolla_set_configs``) in every
kolla-oci container. It reads the Kolla config file of the container --
/var/lib/kolla/config_files/config.yaml when it exists, config.json beside it
otherwise -- and, as KOLLA_CONFIG_STRATEGY says,

* COPY_ALWAYS: on every start,
* COPY_ONCE: on the first start only (later starts find the /configured
  marker, change nothing and exit 0),

creates the ``directories`` and ``files`` entries, puts back the image's own
files that the previous start replaced, copies the ``config_files``, writes
the ``command`` to /run_command (mode 0644, read by kolla_start) and applies
the ``permissions``.

Config keys (Kolla's config.json format):

command       the service command line (required).
config_files  [{source, dest, owner, perm, optional, merge, preserve_properties}]
              ``source`` is a glob; matching nothing is an error unless
              ``optional``. A ``dest`` ending in "/" receives each source under
              its own name. Without ``merge`` an existing dest (file or tree) is
              replaced; with it a source directory is merged into the dest
              tree. ``owner`` is "user", "user:" (the group named like the
              user) or "user:group"; ``perm`` is octal ("640", "0640",
              "0o640") and directories also get x wherever they get r.
              ``preserve_properties`` keeps the source's mode, times and
              ownership instead (``owner`` and ``perm`` are then optional); with
              ``merge`` too, a symbolic link is copied as a link.
permissions   [{path, owner, perm, recurse, exclude}]: ``path`` is a glob
              (matching nothing only warns), ``perm`` is optional, ``recurse``
              also applies to everything below the path, ``exclude`` is a list
              of regular expressions searched in each path below it: a path is
              left alone only when every expression matches (as in Kolla).
              Symbolic links found below the path get their own owner changed
              and are never followed.
directories   [{path, owner, perm}]: created when missing, then as permissions.
files         [{path, owner, perm}]: created empty when missing (the parent
              must exist), then as permissions.

The first time a config file replaces a file the image has, the image's
version is saved under /etc/kolla/defaults (recorded in its ``state`` file);
every later start first restores those versions, and deletes the files the
image did not have, so a file dropped from the config does not linger.

--check compares instead of copying: /run_command must hold the command, every
file recorded in the defaults state must still be in the config, and every
config file must match its source in content, mode and owner.

Environment:
KOLLA_CONFIG_STRATEGY  COPY_ALWAYS or COPY_ONCE (not needed with --check).
KOLLA_CONFIG_FILE      use this config file instead (.yaml/.yml: YAML, else
                       JSON). When a non-root user invokes us through sudo it
                       must lie in /var/lib/kolla/config_files/.
KOLLA_TEST_ROOT        for tests only: the directory that stands for "/" for
                       every path of the config, /run_command, /configured and
                       /etc/kolla/defaults (user and group names still come
                       from the real system). Refused when a non-root user
                       invokes us through sudo (SUDO_UID, or the real uid of
                       our parent, which sudo keeps as the caller's), so a
                       service cannot use it to make root copy files of its
                       choosing.

Exit status: 0 done, or nothing to do under COPY_ONCE; 1 invalid config or
environment, missing required source, or a --check mismatch; 2 anything else
(unknown user or group, malformed perm, unusable target, I/O error).
"""

import argparse
import filecmp
import glob
import grp
import json
import logging
import os
import pwd
import re
import shutil
import sys

LOG = logging.getLogger("kolla_set_configs")

CONFIG_DIR = "/var/lib/kolla/config_files"
DEFAULTS_DIR = "/etc/kolla/defaults"
RUN_COMMAND = "/run_command"
CONFIGURED = "/configured"
STRATEGIES = ("COPY_ALWAYS", "COPY_ONCE")

CONFIG_FILE_KEYS = {"source", "dest", "owner", "perm", "optional", "merge",
                    "preserve_properties"}
PERMISSION_KEYS = {"path", "owner", "perm", "recurse", "exclude"}
PERM_RE = re.compile(r"(?:0o)?([0-7]{3,4})")
GLOB_RE = re.compile(r"[*?[]")


class Failure(Exception):
    """Ends the run with this message and ``status`` as exit status."""

    status = 1


class AlreadyConfigured(Failure):
    """COPY_ONCE, and an earlier start configured the container."""

    status = 0


class InvalidConfig(Failure):
    """The config file or the environment is wrong."""


class MissingSource(Failure):
    """A required config_files source matches nothing."""


class CheckFailed(Failure):
    """--check found the container out of step with its config."""


class BadTarget(Failure):
    """An owner or perm cannot be applied, or a path is of the wrong kind."""

    status = 2


def invoked_by_unprivileged_sudo():
    """True when we run as root on behalf of a non-root user (through sudo).

    sudo sets SUDO_UID, but sudoers' ``setenv`` lets the caller pass a forged
    one on the command line; the real uid of our parent cannot be forged (sudo
    keeps the caller's). When it cannot be read, assume the worst.
    """
    uid = os.environ.get("SUDO_UID")
    if uid is not None and uid != "0":
        return True
    if os.geteuid() != 0:
        return False
    try:
        with open(f"/proc/{os.getppid()}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return line.split()[1] != "0"
    except OSError:
        pass
    return True


class Root:
    """Maps the absolute paths of the config onto the file system.

    The mapping is the identity except under KOLLA_TEST_ROOT, where every
    path is taken below that directory.
    """

    def __init__(self, prefix=""):
        self.prefix = prefix.rstrip("/")

    def real(self, path):
        """The file system path for a path of the config."""
        if not self.prefix:
            return path
        if not path.startswith("/"):
            raise InvalidConfig(f"{path!r} is not an absolute path")
        return self.prefix + path

    def logical(self, real):
        """The config's name for a file system path (for messages and matching)."""
        if self.prefix and real.startswith(self.prefix + "/"):
            return real[len(self.prefix):]
        return real

    def glob(self, pattern):
        """File system paths matching a glob of the config, sorted."""
        if self.prefix:
            self.real(pattern)  # checks that it is absolute
            pattern = glob.escape(self.prefix) + pattern
        return sorted(glob.glob(pattern))


def test_root():
    """The Root given by KOLLA_TEST_ROOT (identity when unset)."""
    prefix = os.environ.get("KOLLA_TEST_ROOT", "")
    if not prefix:
        return Root()
    if invoked_by_unprivileged_sudo():
        raise InvalidConfig("KOLLA_TEST_ROOT is for tests and is refused under sudo")
    if not os.path.isdir(prefix):
        raise InvalidConfig(f"KOLLA_TEST_ROOT={prefix} is not a directory")
    return Root(prefix)


def config_path(root):
    """Which config file to read (see the module documentation)."""
    override = os.environ.get("KOLLA_CONFIG_FILE")
    if override:
        if invoked_by_unprivileged_sudo():
            allowed = os.path.realpath(CONFIG_DIR) + os.sep
            if not os.path.realpath(override).startswith(allowed):
                raise InvalidConfig(
                    f"KOLLA_CONFIG_FILE={override} is outside {CONFIG_DIR}: "
                    "refused when invoked through sudo")
        return override
    yaml_path = root.real(CONFIG_DIR + "/config.yaml")
    if os.path.exists(yaml_path):
        return yaml_path
    return root.real(CONFIG_DIR + "/config.json")


def load_config(path):
    """Read and validate the config file at ``path``."""
    LOG.info("Loading config file at %s", path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InvalidConfig(f"cannot read {path}: {e.strerror}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise InvalidConfig(
                f"{path} is YAML but PyYAML (python3-yaml) is not installed") from None
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InvalidConfig(f"{path} is not valid YAML: {e}") from None
    else:
        try:
            config = json.loads(text)
        except ValueError as e:
            raise InvalidConfig(f"{path} is not valid JSON: {e}") from None
    validate(config, path)
    return config


def validate(config, path):
    """Reject a config that cannot be applied, naming the offending entry."""
    def bad(message):
        raise InvalidConfig(f"{path}: {message}")

    if not isinstance(config, dict):
        bad("the top level must be a mapping with at least \"command\"")
    if "command" not in config:
        bad('"command" is missing')
    if not isinstance(config["command"], str):
        bad('"command" must be a string')
    for section in ("config_files", "permissions", "directories", "files"):
        entries = config.get(section, [])
        if not isinstance(entries, list):
            bad(f'"{section}" must be a list')
        for i, entry in enumerate(entries):
            where = f"{section}[{i}]"
            if not isinstance(entry, dict):
                bad(f"{where} must be a mapping")
            if section == "config_files":
                unknown = set(entry) - CONFIG_FILE_KEYS
                if unknown:
                    bad(f"{where} has unknown keys {sorted(unknown)}")
                for key in ("source", "dest"):
                    if not isinstance(entry.get(key), str) or not entry[key]:
                        bad(f'{where} needs a "{key}" string')
                if not entry.get("preserve_properties") and (
                        entry.get("owner") is None or entry.get("perm") is None):
                    bad(f'{where} ({entry["source"]}) needs "owner" and "perm" '
                        'unless "preserve_properties" is true')
            else:
                unknown = set(entry) - PERMISSION_KEYS
                if unknown:
                    LOG.warning("%s: %s: ignoring unknown keys %s", path, where,
                                sorted(unknown))
                required = ("path", "owner") if section == "permissions" else (
                    "path", "owner", "perm")
                for key in required:
                    if entry.get(key) is None:
                        bad(f'{where} needs "{key}"')
                if not isinstance(entry["path"], str):
                    bad(f'{where}: "path" must be a string')
                if section != "permissions" and GLOB_RE.search(entry["path"]):
                    bad(f'{where}: "path" cannot be a glob in {section} ({entry["path"]})')
                exclude = entry.get("exclude", [])
                if not isinstance(exclude, list):
                    bad(f'{where}: "exclude" must be a list of regular expressions')
                for pattern in exclude:
                    try:
                        re.compile(pattern)
                    except (re.error, TypeError) as e:
                        bad(f"{where}: bad exclude expression {pattern!r}: {e}")
            owner = entry.get("owner")
            if owner is not None and (not isinstance(owner, str) or not owner):
                bad(f'{where}: "owner" must be "user", "user:" or "user:group"')


def resolve_owner(owner):
    """(uid, gid) for "user", "user:" or "user:group" (names, as in Kolla)."""
    user, _, group = owner.partition(":")
    group = group or user
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise BadTarget(f'owner "{owner}": there is no user named "{user}"') from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise BadTarget(f'owner "{owner}": there is no group named "{group}"') from None
    return uid, gid


def parse_perm(perm):
    """The mode for "640", "0640" or "0o640"."""
    match = PERM_RE.fullmatch(perm) if isinstance(perm, str) else None
    if match is None:
        raise BadTarget(f'perm {perm!r} is not an octal mode such as "0640" or "0o640"')
    return int(match.group(1), 8)


def dir_mode(mode):
    """A directory gets search (x) wherever it gets read (r)."""
    return mode | ((mode & 0o444) >> 2)


def set_owner_and_mode(path, uid, gid, mode, follow=True):
    """chown, then chmod (chown clears set-id bits).

    Failures are logged and the run goes on, as in Kolla: the service may
    still work, and read-only mounts are common. With ``follow`` false a
    symbolic link gets its own owner and keeps its (meaningless) mode.
    """
    try:
        os.chown(path, uid, gid, follow_symlinks=follow)
    except OSError as e:
        LOG.error("Cannot change the owner of %s to %d:%d: %s", path, uid, gid, e.strerror)
    if mode is None or (not follow and os.path.islink(path)):
        return
    if os.path.isdir(path):
        mode = dir_mode(mode)
    try:
        os.chmod(path, mode)
    except OSError as e:
        LOG.error("Cannot change the mode of %s to %o: %s", path, mode, e.strerror)


def apply_permissions(root, entry):
    """One ``permissions`` entry (also used by directories, files and copies)."""
    matches = root.glob(entry["path"])
    if not matches:
        LOG.warning("%s does not exist: no permissions set", entry["path"])
        return
    uid, gid = resolve_owner(entry["owner"])
    perm = entry.get("perm")
    mode = None if perm is None else parse_perm(perm)
    excludes = [re.compile(p) for p in entry.get("exclude", [])]
    for top in matches:
        LOG.info("Setting permissions of %s", root.logical(top))
        set_owner_and_mode(top, uid, gid, mode)
        if not (entry.get("recurse") and os.path.isdir(top)):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                logical = root.logical(path)
                if excludes and all(p.search(logical) for p in excludes):
                    LOG.debug("Excluded %s", logical)
                    continue
                set_owner_and_mode(path, uid, gid, mode, follow=False)


class Properties:
    """How the files copied for one config_files entry get owner and mode."""

    def __init__(self, entry):
        self.preserve = bool(entry.get("preserve_properties"))
        self.merge = bool(entry.get("merge"))
        self.owner = entry.get("owner")
        self.perm = entry.get("perm")
        self._resolved = None

    def _target(self):
        if self._resolved is None:
            uid, gid = resolve_owner(self.owner)
            self._resolved = (uid, gid, parse_perm(self.perm))
        return self._resolved

    def apply(self, src, dst):
        """Give ``dst`` (a copy of ``src``) its owner and mode."""
        if self.preserve:
            shutil.copystat(src, dst)
            st = os.stat(src)
            set_owner_and_mode(dst, st.st_uid, st.st_gid, None)
        else:
            uid, gid, mode = self._target()
            set_owner_and_mode(dst, uid, gid, mode)

    def mismatch(self, src, dst):
        """What is wrong with the owner or mode of ``dst``, or None."""
        st = os.stat(dst)
        if self.preserve:
            ref = os.stat(src)
            uid, gid, mode = ref.st_uid, ref.st_gid, ref.st_mode & 0o7777
        else:
            uid, gid, mode = self._target()
            if os.path.isdir(dst):
                mode = dir_mode(mode)
        actual = st.st_mode & 0o7777
        if actual != mode:
            return f"{dst} has mode {actual:04o}, expected {mode:04o}"
        if (st.st_uid, st.st_gid) != (uid, gid):
            return f"{dst} is owned by {st.st_uid}:{st.st_gid}, expected {uid}:{gid}"
        return None


PRESERVE = Properties({"preserve_properties": True})


def remove(path):
    """Delete a file, link or tree (a link is never followed)."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        LOG.info("Deleting %s", path)
        os.unlink(path)
    elif os.path.isdir(path):
        LOG.info("Deleting %s", path)
        shutil.rmtree(path)


def install_tree(src, dst, props):
    """Copy ``src`` (file or tree) onto ``dst``, merging into a directory there."""
    if os.path.isdir(src):
        if os.path.islink(dst) or (os.path.lexists(dst) and not os.path.isdir(dst)):
            remove(dst)
        if not os.path.isdir(dst):
            os.mkdir(dst)
        props.apply(src, dst)
        for name in sorted(os.listdir(src)):
            install_tree(os.path.join(src, name), os.path.join(dst, name), props)
        return
    remove(dst)
    if props.merge and props.preserve and os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    shutil.copy(src, dst)
    props.apply(src, dst)


def destination(entry, source):
    """The config's dest for one source (a dest ending in "/" is a directory)."""
    dest = entry["dest"]
    if dest.endswith("/"):
        return dest + os.path.basename(source)
    return dest


def copy_config_file(root, entry):
    """One ``config_files`` entry."""
    sources = root.glob(entry["source"])
    if not sources:
        if entry.get("optional"):
            LOG.info("%s matches nothing; it is optional", entry["source"])
            return
        raise MissingSource(
            f'{entry["source"]} matches no file (mark the entry "optional": true '
            "if it may be absent)")
    props = Properties(entry)
    for src in sources:
        dest = destination(entry, src)
        real = root.real(dest)
        LOG.info("Copying %s to %s", root.logical(src), dest)
        if not props.merge:
            remove(real)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        install_tree(src, real, props)


def read_state(path):
    """The defaults state: {dest: {"source": dest, "dest": backup or None, ...}}."""
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise BadTarget(f"{path} is not valid JSON: {e}") from None
    if not isinstance(state, dict):
        raise BadTarget(f"{path} is not a JSON object")
    return state


def handle_image_defaults(root, config):
    """Restore what earlier starts replaced; save what this start will replace."""
    state_path = root.real(DEFAULTS_DIR + "/state")
    os.makedirs(os.path.dirname(state_path), exist_ok=True)
    state = read_state(state_path)
    for path, record in sorted(state.items()):
        real = root.real(path)
        backup = record.get("dest") if isinstance(record, dict) else None
        if backup is None:
            if os.path.lexists(real):
                LOG.info("Removing %s: the image does not have it", path)
                remove(real)
        elif os.path.lexists(root.real(backup)):
            LOG.info("Restoring the image's %s", path)
            remove(real)
            os.makedirs(os.path.dirname(real), exist_ok=True)
            install_tree(root.real(backup), real, PRESERVE)
        else:
            LOG.warning("The image's %s was saved as %s, which is gone", path, backup)
    for entry in config.get("config_files", []):
        # Only literal sources are tracked (as in Kolla): a glob names no file.
        if not os.path.exists(root.real(entry["source"])):
            continue
        dest = destination(entry, entry["source"])
        if dest in state:
            continue
        real = root.real(dest)
        record = {"source": dest, "dest": None, "preserve_properties": True}
        if os.path.exists(real):
            backup = DEFAULTS_DIR + dest
            LOG.info("Saving the image's %s as %s", dest, backup)
            backup_real = root.real(backup)
            remove(backup_real)
            os.makedirs(os.path.dirname(backup_real), exist_ok=True)
            install_tree(real, backup_real, PRESERVE)
            record["dest"] = backup
        state[dest] = record
    tmp = state_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=4, sort_keys=True)
    os.replace(tmp, state_path)


def create_directories(root, config):
    """The ``directories`` entries."""
    for entry in config.get("directories", []):
        LOG.info("Creating directory %s", entry["path"])
        os.makedirs(root.real(entry["path"]), exist_ok=True)
        apply_permissions(root, entry)


def create_files(root, config):
    """The ``files`` entries."""
    for entry in config.get("files", []):
        real = root.real(entry["path"])
        if os.path.islink(real):
            raise BadTarget(f"{entry['path']} is a symbolic link, expected a regular file")
        if os.path.isdir(real):
            raise BadTarget(f"{entry['path']} is a directory, expected a regular file")
        parent = os.path.dirname(real)
        if not os.path.isdir(parent):
            raise BadTarget(f"{entry['path']}: the parent directory does not exist")
        if not os.path.exists(real):
            LOG.info("Creating file %s", entry["path"])
            open(real, "a").close()
        apply_permissions(root, entry)


def write_run_command(root, command):
    """Write /run_command (world-readable: kolla_start reads it as the service user)."""
    path = root.real(RUN_COMMAND)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(command)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    LOG.info("Wrote %s", RUN_COMMAND)


def apply(root, config):
    """Configure the container as KOLLA_CONFIG_STRATEGY says."""
    strategy = os.environ.get("KOLLA_CONFIG_STRATEGY")
    LOG.info("Kolla config strategy: %s", strategy)
    if strategy not in STRATEGIES:
        raise InvalidConfig(
            f"KOLLA_CONFIG_STRATEGY must be COPY_ALWAYS or COPY_ONCE, not {strategy!r}")
    marker = root.real(CONFIGURED)
    if strategy == "COPY_ONCE" and os.path.lexists(marker):
        raise AlreadyConfigured(
            f"{CONFIGURED} exists and the strategy is COPY_ONCE: configuration left as it is")
    create_directories(root, config)
    create_files(root, config)
    handle_image_defaults(root, config)
    for entry in config.get("config_files", []):
        copy_config_file(root, entry)
    write_run_command(root, config["command"])
    for entry in config.get("permissions", []):
        apply_permissions(root, entry)
    if strategy == "COPY_ONCE":
        open(marker, "x").close()


def tree_mismatch(src, dst, props):
    """The first way ``dst`` differs from a fresh copy of ``src``, or None."""
    if os.path.isdir(src):
        if os.path.islink(dst) or not os.path.isdir(dst):
            return f"{dst} is not a directory"
        problem = props.mismatch(src, dst)
        for name in sorted(os.listdir(src)):
            if problem:
                break
            problem = tree_mismatch(os.path.join(src, name), os.path.join(dst, name), props)
        return problem
    if props.merge and props.preserve and os.path.islink(src):
        if os.path.islink(dst) and os.readlink(dst) == os.readlink(src):
            return None
        return f"{dst} is not a link to {os.readlink(src)}"
    if os.path.islink(dst) or not os.path.isfile(dst):
        return f"{dst} is missing or not a regular file"
    if not filecmp.cmp(src, dst, shallow=False):
        return f"{dst} differs from {src}"
    return props.mismatch(src, dst)


def check(root, config):
    """--check: does the container still match its config?"""
    try:
        with open(root.real(RUN_COMMAND), encoding="utf-8") as f:
            running = f.read()
    except FileNotFoundError:
        raise CheckFailed(f"{RUN_COMMAND} is missing: the container was never configured") from None
    if running != config["command"]:
        raise CheckFailed(f"the running command differs: {config['command']!r} != {running!r}")
    state = read_state(root.real(DEFAULTS_DIR + "/state"))
    dests = {destination(entry, entry["source"]) for entry in config.get("config_files", [])}
    stale = sorted(set(state) - dests)
    if stale:
        raise CheckFailed(
            f"{DEFAULTS_DIR}/state tracks files the config no longer has, which a "
            f"restart would restore or remove: {stale}")
    problems = []
    for entry in config.get("config_files", []):
        sources = root.glob(entry["source"])
        if not sources and not entry.get("optional"):
            raise MissingSource(f'{entry["source"]} matches no file')
        props = Properties(entry)
        for src in sources:
            problem = tree_mismatch(src, root.real(destination(entry, src)), props)
            if problem:
                LOG.error("%s", problem)
                problems.append(root.logical(src))
    if problems:
        raise CheckFailed(f"these config files are not in place: {problems}")


def main(argv=None):
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kolla_set_configs",
        description="Install the container's configuration (see the module documentation).")
    parser.add_argument("--check", action="store_true",
                        help="only check that the configuration is in place")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    try:
        root = test_root()
        config = load_config(config_path(root))
        if args.check:
            check(root, config)
        else:
            apply(root, config)
    except Failure as e:
        (LOG.info if e.status == 0 else LOG.error)("%s: %s", type(e).__name__, e)
        return e.status
    except Exception:  # anything else is a bug or an unusable system: exit 2
        LOG.exception("Unexpected error")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
