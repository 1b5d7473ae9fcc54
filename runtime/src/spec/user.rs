//! The user, group and supplementary groups the container's process runs as.
//!
//! Rules (the kubelet's `verifyRunAsNonRoot` and `determineEffectiveSecurityContext`, and
//! containerd's `WithUser` / `WithUserID` / `WithAdditionalGIDs`):
//! - The container's `securityContext` fields win over the pod's.
//! - `runAsUser` gives the uid; otherwise the image's `User`: `uid`, `uid:gid`, `name`,
//!   `name:group` (or `uid:group`, `name:gid`), names resolved through the root
//!   filesystem's `etc/passwd` and `etc/group`; an empty image user is root.
//! - The gid: `runAsGroup`, else the image user's group part, else the user's primary group
//!   in `etc/passwd`, else 0.
//! - Supplementary groups: the primary gid, the groups of `etc/group` that list the user as
//!   a member (unless `supplementalGroupsPolicy: Strict`), the pod's `fsGroup`, then its
//!   `supplementalGroups`; duplicates removed.
//! - `runAsNonRoot: true` refuses uid 0, and refuses an image user given by name when no
//!   `runAsUser` is set (it cannot be verified before the container starts), with the
//!   kubelet's messages.
//!
//! One difference from the kubelet + containerd pair: an image `User` of `uid:gid` or
//! `name:group` keeps its group when `runAsGroup` is not set (Docker's and the OCI image
//! spec's meaning); the kubelet passes only the user part to containerd, which then takes
//! the group from `etc/passwd`.
//!
//! Only [`resolve_user`] touches the disk (two reads, with symlinks resolved inside the
//! root filesystem); [`resolve_user_from`] does the work on the files' text.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{container_field_path, pod_display, SpecError};

/// How many symbolic links may be followed to reach `etc/passwd` (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// The identity of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids, the primary gid first.
    pub additional_gids: Vec<u32>,
    /// The user's name, when `etc/passwd` knows it.
    pub username: Option<String>,
}

/// One line of `etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// One line of `etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Names of the members.
    pub members: Vec<String>,
}

/// Parses `etc/passwd` text, skipping comments and malformed lines.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            let _password = fields.next()?;
            let uid = fields.next()?.trim().parse().ok()?;
            let gid = fields.next()?.trim().parse().ok()?;
            (!name.is_empty()).then(|| PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

/// Parses `etc/group` text, skipping comments and malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            let _password = fields.next()?;
            let gid = fields.next()?.trim().parse().ok()?;
            let members = fields
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            (!name.is_empty()).then(|| GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// The process user of `container`, reading `etc/passwd` and `etc/group` from `rootfs`
/// (the container's assembled root filesystem) when they exist.
pub fn resolve_user(
    pod: &Pod,
    container: &Container,
    image_user: &str,
    rootfs: &Path,
) -> Result<ProcessUser, SpecError> {
    let read = |relative: &str| {
        read_in_root(rootfs, Path::new(relative)).map_err(|source| SpecError::Io {
            container: container.name.clone(),
            path: PathBuf::from(relative),
            source,
        })
    };
    let passwd = read("etc/passwd")?;
    let group = read("etc/group")?;
    resolve_user_from(
        pod,
        container,
        image_user,
        passwd.as_deref(),
        group.as_deref(),
    )
}

/// [`resolve_user`] on the text of `etc/passwd` and `etc/group` (`None`: no such file).
pub fn resolve_user_from(
    pod: &Pod,
    container: &Container,
    image_user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ProcessUser, SpecError> {
    let container_path = container_field_path(pod, container);
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let container_security = container.security_context.as_ref();
    // A setting of the container wins over the pod's; each comes with its field path.
    let effective = |of_container: Option<i64>, of_pod: Option<i64>, name: &str| {
        of_container
            .map(|v| (v, format!("{container_path}.securityContext.{name}")))
            .or_else(|| of_pod.map(|v| (v, format!("spec.securityContext.{name}"))))
    };
    let run_as_user = effective(
        container_security.and_then(|s| s.run_as_user),
        pod_security.and_then(|s| s.run_as_user),
        "runAsUser",
    );
    let run_as_group = effective(
        container_security.and_then(|s| s.run_as_group),
        pod_security.and_then(|s| s.run_as_group),
        "runAsGroup",
    );
    let non_root_field = match container_security.and_then(|s| s.run_as_non_root) {
        Some(_) => format!("{container_path}.securityContext.runAsNonRoot"),
        None => "spec.securityContext.runAsNonRoot".to_string(),
    };
    let run_as_non_root = container_security
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_security.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    let image_field = format!("{container_path}.image (config User)");

    let (image_user_part, image_group_part) = match image_user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (image_user, None),
    };
    let image_uid: Option<i64> = if image_user_part.is_empty() {
        Some(0)
    } else {
        image_user_part.parse().ok()
    };

    let config_error = |field: &str, value: &str, reason: String| {
        SpecError::config(container, field, value, reason)
    };

    if run_as_non_root {
        let who = format!(
            "(pod: {:?}, container: {})",
            pod_display(pod),
            container.name
        );
        match (&run_as_user, image_uid) {
            (Some((0, _)), _) => {
                return Err(config_error(
                    &non_root_field,
                    "true",
                    format!("container's runAsUser breaks non-root policy {who}"),
                ));
            }
            (Some(_), _) => {}
            (None, Some(0)) => {
                return Err(config_error(
                    &non_root_field,
                    "true",
                    format!("container has runAsNonRoot and image will run as root {who}"),
                ));
            }
            (None, None) => {
                return Err(config_error(
                    &non_root_field,
                    "true",
                    format!(
                        "container has runAsNonRoot and image has non-numeric user \
                         ({image_user_part}), cannot verify user is non-root {who}"
                    ),
                ));
            }
            (None, Some(_)) => {}
        }
    }

    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let to_id = |value: i64, field: &str| {
        u32::try_from(value).map_err(|_| {
            config_error(
                field,
                &value.to_string(),
                "not a valid user or group id (0 to 4294967295)".to_string(),
            )
        })
    };

    // The user: runAsUser, else the image's user part.
    let (uid, entry) = match &run_as_user {
        Some((value, field)) => {
            let uid = to_id(*value, field)?;
            (uid, users.iter().find(|u| u.uid == uid))
        }
        None => match image_uid {
            Some(value) => {
                let uid = to_id(value, &image_field)?;
                (uid, users.iter().find(|u| u.uid == uid))
            }
            None => {
                let found = users.iter().find(|u| u.name == image_user_part);
                match found {
                    Some(entry) => (entry.uid, Some(entry)),
                    None => {
                        return Err(config_error(
                            &image_field,
                            image_user,
                            format!(
                                "unable to find user {image_user_part}: no matching entries \
                                 in the image's /etc/passwd{}",
                                if passwd.is_none() {
                                    " (the image has no /etc/passwd)"
                                } else {
                                    ""
                                }
                            ),
                        ));
                    }
                }
            }
        },
    };

    // The group: runAsGroup, else the image's group part (only when the image's user is
    // used), else the passwd entry's, else 0.
    let image_group = if run_as_user.is_none() {
        image_group_part.filter(|g| !g.is_empty())
    } else {
        None
    };
    let gid = match (run_as_group, image_group) {
        (Some((value, field)), _) => to_id(value, &field)?,
        (None, Some(group_part)) => match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match groups.iter().find(|g| g.name == group_part) {
                Some(found) => found.gid,
                None => {
                    return Err(config_error(
                        &image_field,
                        image_user,
                        format!(
                            "unable to find group {group_part}: no matching entries in the \
                             image's /etc/group"
                        ),
                    ));
                }
            },
        },
        (None, None) => entry.map_or(0, |e| e.gid),
    };

    let username = entry.map(|e| e.name.clone());
    let strict =
        pod_security.and_then(|s| s.supplemental_groups_policy.as_deref()) == Some("Strict");
    let mut additional_gids = vec![gid];
    let mut push = |gid: u32| {
        if !additional_gids.contains(&gid) {
            additional_gids.push(gid);
        }
    };
    if let (false, Some(name)) = (strict, username.as_deref()) {
        // containerd skips the group named after the user: that is its primary group.
        for group in groups
            .iter()
            .filter(|g| g.name != name && g.members.iter().any(|m| m == name))
        {
            push(group.gid);
        }
    }
    if let Some(fs_group) = pod_security.and_then(|s| s.fs_group) {
        push(to_id(fs_group, "spec.securityContext.fsGroup")?);
    }
    for value in pod_security
        .and_then(|s| s.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        push(to_id(*value, "spec.securityContext.supplementalGroups")?);
    }

    Ok(ProcessUser {
        uid,
        gid,
        additional_gids,
        username,
    })
}

/// Reads `relative` under `root`, following symbolic links as if `root` were `/` so that
/// an image cannot point the daemon at a host file; `None` when it does not exist.
fn read_in_root(root: &Path, relative: &Path) -> io::Result<Option<String>> {
    let Some(path) = resolve_in_root(root, relative)? else {
        return Ok(None);
    };
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `relative` resolved under `root` with symlinks kept inside it; `None` when a component
/// is missing.
fn resolve_in_root(root: &Path, relative: &Path) -> io::Result<Option<PathBuf>> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = components(relative);
    pending.reverse();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |path, c| path.join(c))
            .join(&component);
        let metadata = match fs::symlink_metadata(&candidate) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !metadata.file_type().is_symlink() {
            resolved.push(component);
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(io::Error::other(format!(
                "too many levels of symbolic links at {}",
                candidate.display()
            )));
        }
        let target = fs::read_link(&candidate)?;
        if target.is_absolute() {
            resolved.clear();
        }
        let mut target_components = components(&target);
        target_components.reverse();
        pending.extend(target_components);
    }
    Ok(Some(
        resolved
            .iter()
            .fold(root.to_path_buf(), |path, c| path.join(c)),
    ))
}

/// The normal and `..` components of `path` (root and `.` dropped).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
broken line
";

    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,app
audio:x:29:app
app:x:1000:app
nogroup:x:65534:
staff:x:50:
";

    fn pod(container: &Container, pod_security: Option<PodSecurityContext>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".to_string()),
                namespace: Some("shop".to_string()),
                uid: Some("u-1".to_string()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container.clone()],
                security_context: pod_security,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(security: Option<SecurityContext>) -> Container {
        Container {
            name: "app".to_string(),
            security_context: security,
            ..Default::default()
        }
    }

    fn resolve(
        security: Option<SecurityContext>,
        pod_security: Option<PodSecurityContext>,
        image_user: &str,
    ) -> Result<ProcessUser, SpecError> {
        let c = container(security);
        resolve_user_from(
            &pod(&c, pod_security),
            &c,
            image_user,
            Some(PASSWD),
            Some(GROUP),
        )
    }

    #[test]
    fn parses_passwd_and_group() {
        let users = parse_passwd(PASSWD);
        assert_eq!(users.len(), 4);
        assert_eq!(
            users[2],
            PasswdEntry {
                name: "nobody".to_string(),
                uid: 65534,
                gid: 65534
            }
        );
        let groups = parse_group(GROUP);
        assert_eq!(groups[1].name, "wheel");
        assert_eq!(
            groups[1].members,
            vec!["root".to_string(), "app".to_string()]
        );
        assert!(groups[0].members.is_empty());
    }

    #[test]
    fn empty_image_user_is_root() {
        let user = resolve(None, None, "").expect("user");
        assert_eq!((user.uid, user.gid), (0, 0));
        assert_eq!(user.username.as_deref(), Some("root"));
        // root is a member of wheel.
        assert_eq!(user.additional_gids, vec![0, 10]);
    }

    #[test]
    fn image_user_by_name() {
        let user = resolve(None, None, "nobody").expect("user");
        assert_eq!((user.uid, user.gid), (65534, 65534));
        assert_eq!(user.additional_gids, vec![65534]);
        assert_eq!(user.username.as_deref(), Some("nobody"));

        let user = resolve(None, None, "app").expect("user");
        assert_eq!((user.uid, user.gid), (1000, 1000));
        // wheel and audio list app; the group named "app" is its primary.
        assert_eq!(user.additional_gids, vec![1000, 10, 29]);
    }

    #[test]
    fn image_user_forms_with_groups() {
        let user = resolve(None, None, "1000").expect("user");
        assert_eq!((user.uid, user.gid), (1000, 1000));
        let user = resolve(None, None, "4242").expect("user");
        assert_eq!((user.uid, user.gid, user.username), (4242, 0, None));
        let user = resolve(None, None, "4242:4343").expect("user");
        assert_eq!((user.uid, user.gid), (4242, 4343));
        let user = resolve(None, None, "nobody:staff").expect("user");
        assert_eq!((user.uid, user.gid), (65534, 50));
        let user = resolve(None, None, "1000:nogroup").expect("user");
        assert_eq!((user.uid, user.gid), (1000, 65534));
    }

    #[test]
    fn unknown_names_are_config_errors() {
        let err = resolve(None, None, "ghost").expect_err("no such user");
        assert!(
            err.to_string()
                .contains(r#"spec.containers[0].image (config User): "ghost""#),
            "{err}"
        );
        assert_eq!(err.reason(), "CreateContainerConfigError");
        assert!(
            err.to_string().contains("unable to find user ghost"),
            "{err}"
        );
        let err = resolve(None, None, "app:ghosts").expect_err("no such group");
        assert!(
            err.to_string().contains("unable to find group ghosts"),
            "{err}"
        );
        let c = container(None);
        let err = resolve_user_from(&pod(&c, None), &c, "app", None, None).expect_err("no passwd");
        assert!(err.to_string().contains("has no /etc/passwd"), "{err}");
    }

    #[test]
    fn run_as_user_and_group_override_the_image() {
        let pod_sc = PodSecurityContext {
            run_as_user: Some(2000),
            run_as_group: Some(3000),
            ..Default::default()
        };
        let user = resolve(None, Some(pod_sc.clone()), "nobody:staff").expect("user");
        assert_eq!((user.uid, user.gid), (2000, 3000));

        // The container's securityContext wins over the pod's.
        let sc = SecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        };
        let user = resolve(Some(sc), Some(pod_sc), "nobody").expect("user");
        assert_eq!((user.uid, user.gid), (1000, 3000));

        // runAsUser alone: the gid comes from passwd, the image's group part is ignored.
        let sc = SecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        };
        let user = resolve(Some(sc), None, "nobody:staff").expect("user");
        assert_eq!((user.uid, user.gid), (1000, 1000));

        // runAsGroup alone keeps the image's user.
        let sc = SecurityContext {
            run_as_group: Some(7),
            ..Default::default()
        };
        let user = resolve(Some(sc), None, "nobody").expect("user");
        assert_eq!((user.uid, user.gid), (65534, 7));

        let sc = SecurityContext {
            run_as_user: Some(-1),
            ..Default::default()
        };
        assert!(resolve(Some(sc), None, "").is_err());
    }

    #[test]
    fn supplemental_groups_and_fs_group() {
        let pod_sc = PodSecurityContext {
            supplemental_groups: Some(vec![5000, 10]),
            fs_group: Some(4000),
            ..Default::default()
        };
        let user = resolve(None, Some(pod_sc.clone()), "app").expect("user");
        assert_eq!(user.additional_gids, vec![1000, 10, 29, 4000, 5000]);

        let strict = PodSecurityContext {
            supplemental_groups_policy: Some("Strict".to_string()),
            ..pod_sc
        };
        let user = resolve(None, Some(strict), "app").expect("user");
        assert_eq!(user.additional_gids, vec![1000, 4000, 5000, 10]);
    }

    #[test]
    fn run_as_non_root_refusals() {
        let non_root = |user: Option<i64>| SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: user,
            ..Default::default()
        };
        let err = resolve(Some(non_root(None)), None, "").expect_err("root image");
        assert_eq!(err.reason(), "CreateContainerConfigError");
        assert!(
            err.to_string().contains(
                r#"container has runAsNonRoot and image will run as root (pod: "web-0_shop(u-1)", container: app)"#
            ),
            "{err}"
        );
        assert!(resolve(Some(non_root(None)), None, "0:0").is_err());

        let err = resolve(Some(non_root(None)), None, "nobody").expect_err("named user");
        assert!(
            err.to_string().contains(
                "container has runAsNonRoot and image has non-numeric user (nobody), cannot \
                 verify user is non-root"
            ),
            "{err}"
        );

        let err = resolve(Some(non_root(Some(0))), None, "1000").expect_err("runAsUser 0");
        assert!(
            err.to_string()
                .contains("container's runAsUser breaks non-root policy"),
            "{err}"
        );

        // A numeric non-zero user passes, and so does runAsUser with a named image user.
        assert_eq!(
            resolve(Some(non_root(None)), None, "1000").expect("ok").uid,
            1000
        );
        assert_eq!(
            resolve(Some(non_root(Some(5))), None, "nobody")
                .expect("ok")
                .uid,
            5
        );

        // Set on the pod only.
        let pod_sc = PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        };
        let err = resolve(None, Some(pod_sc), "").expect_err("root image");
        assert!(
            err.to_string()
                .starts_with(r#"container "app": spec.securityContext.runAsNonRoot: "true": "#),
            "{err}"
        );
    }

    #[test]
    fn reads_files_from_the_rootfs_through_symlinks_kept_inside() {
        let root = tempfile::tempdir().expect("tempdir");
        let etc = root.path().join("etc");
        fs::create_dir_all(&etc).expect("mkdir");
        fs::create_dir_all(root.path().join("data")).expect("mkdir");
        fs::write(
            root.path().join("data/passwd"),
            "nobody:x:65534:65534::/:/bin/sh\n",
        )
        .expect("write");
        // An absolute link must resolve inside the root, not on the host.
        std::os::unix::fs::symlink("/data/passwd", etc.join("passwd")).expect("symlink");
        fs::write(root.path().join("data/group"), "staff:x:50:nobody\n").expect("write");
        // A relative link climbing above the root stops at the root.
        std::os::unix::fs::symlink("../../../../../data/group", etc.join("group"))
            .expect("symlink");
        let c = container(None);
        let user = resolve_user(&pod(&c, None), &c, "nobody", root.path()).expect("user");
        assert_eq!((user.uid, user.gid), (65534, 65534));
        assert_eq!(user.additional_gids, vec![65534, 50]);
        // A link that points at itself once confined to the root: a loop, reported.
        std::os::unix::fs::symlink("../../../etc/loop", etc.join("loop")).expect("symlink");
        let err = read_in_root(root.path(), Path::new("etc/loop")).expect_err("loop");
        assert!(err.to_string().contains("symbolic links"), "{err}");

        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            read_in_root(empty.path(), Path::new("etc/passwd")).expect("read"),
            None
        );
        let user = resolve_user(&pod(&c, None), &c, "1000:1000", empty.path()).expect("user");
        assert_eq!((user.uid, user.gid), (1000, 1000));
    }
}
