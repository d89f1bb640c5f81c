//! `USER` resolution against the image's /etc/passwd and /etc/group, with runc's rules
//! (`libcontainer/user.GetExecUser`), so that `id` prints the same inside as under Docker.

/// The credentials the command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups that list the user by name, unless a group was given.
    pub groups: Vec<u32>,
    /// From /etc/passwd; `/` when the user has no entry. Becomes `$HOME` unless the env sets it.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 6 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

/// `(name, gid, members)` of each /etc/group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) given the contents of the
/// image's /etc/passwd and /etc/group (empty when missing).
pub(super) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, String> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let mut exec = ExecUser { uid: 0, gid: 0, groups: Vec::new(), home: "/".into() };
    let numeric = user_arg.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| Some(e.uid) == numeric || e.name == user_arg);
    let name = match (entry, numeric) {
        (Some(e), _) => {
            exec.uid = e.uid;
            exec.gid = e.gid;
            exec.home = e.home.to_owned();
            Some(e.name)
        }
        (None, Some(uid)) => {
            exec.uid = uid;
            None
        }
        (None, None) => return Err(format!("no user {user_arg:?} in /etc/passwd")),
    };
    match group_arg {
        Some("") => return Err("empty group after ':'".into()),
        Some(g) => {
            exec.gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|(n, _, _)| *n == g)
                    .map(|(_, gid, _)| gid)
                    .ok_or_else(|| format!("no group {g:?} in /etc/group"))?,
            };
        }
        None => {
            if let Some(name) = name {
                exec.groups = group_entries(group)
                    .filter(|(_, _, members)| members.contains(&name))
                    .map(|(_, gid, _)| gid)
                    .collect();
            }
        }
    }
    Ok(exec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          kolla:x:42400:42400::/var/lib/kolla:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:root\nwheel:x:10:root,kolla\nkolla:x:42400:\nextra:x:42401:kolla\n";

    fn ids(u: &ExecUser) -> (u32, u32, Vec<u32>, &str) {
        (u.uid, u.gid, u.groups.clone(), &u.home)
    }

    #[test]
    fn root_by_default_with_its_groups() {
        let u = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!(ids(&u), (0, 0, vec![0, 10], "/root"));
    }

    #[test]
    fn by_name_and_by_uid() {
        let want = (42400, 42400, vec![10, 42401], "/var/lib/kolla");
        assert_eq!(ids(&resolve("kolla", PASSWD, GROUP).unwrap()), want);
        assert_eq!(ids(&resolve("42400", PASSWD, GROUP).unwrap()), want);
    }

    #[test]
    fn explicit_group_drops_supplementary_groups() {
        let u = resolve("kolla:extra", PASSWD, GROUP).unwrap();
        assert_eq!(ids(&u), (42400, 42401, vec![], "/var/lib/kolla"));
        let u = resolve("1234:5678", PASSWD, GROUP).unwrap();
        assert_eq!(ids(&u), (1234, 5678, vec![], "/"));
    }

    #[test]
    fn unknown_numeric_user_is_fine_unknown_names_are_not() {
        assert_eq!(ids(&resolve("777", "", "").unwrap()), (777, 0, vec![], "/"));
        assert!(resolve("nobody-here", PASSWD, GROUP).unwrap_err().contains("nobody-here"));
        assert!(resolve("kolla:nogroup", PASSWD, GROUP).unwrap_err().contains("nogroup"));
        assert!(resolve("kolla:", PASSWD, GROUP).is_err());
    }
}
