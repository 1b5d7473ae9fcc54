//! The process's command line, environment and working directory, from the container and
//! its image's config.
//!
//! Command line (Kubernetes' rule, as containerd's CRI implements it):
//! - neither `command` nor `args`: the image's `ENTRYPOINT` + `CMD`;
//! - `args` only: the image's `ENTRYPOINT` + `args`;
//! - `command` (with or without `args`): `command` + `args`; the image's `CMD` is dropped.
//!
//! `$(VAR)` references in `command` and `args` are expanded against the container's
//! environment (the one [`super::env::container_env`] built, not the image's), before the
//! merge with the image: the image's `ENTRYPOINT`/`CMD` are never expanded.

use k8s_openapi::api::core::v1::Container;

use super::expansion::expand;
use super::SpecError;

/// The `PATH` every process gets unless the image or the container sets one (containerd's
/// and Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process's argv: the container's `command`/`args` (expanded with `env`) merged with the
/// image's `ENTRYPOINT`/`CMD`; an empty result is an error.
pub fn process_args(
    container: &Container,
    image_entrypoint: &[String],
    image_cmd: &[String],
    env: &[(String, String)],
) -> Result<Vec<String>, SpecError> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, lookup))
        .collect();
    let mut args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| expand(a, lookup))
        .collect();

    let mut argv = command;
    if argv.is_empty() {
        if args.is_empty() {
            args = image_cmd.to_vec();
        }
        // An ENTRYPOINT of [""] is how an image says "no entrypoint" (Docker's convention).
        let no_entrypoint = matches!(image_entrypoint, [only] if only.is_empty());
        if !no_entrypoint {
            argv = image_entrypoint.to_vec();
        }
    }
    argv.extend(args);
    if argv.is_empty() {
        return Err(SpecError::create(
            container,
            "command",
            "",
            "no command specified: the container has no command or args and the image has \
             no ENTRYPOINT or CMD",
        ));
    }
    Ok(argv)
}

/// The process's environment as `NAME=value` strings: a default `PATH`, `HOSTNAME`, then
/// the image's `Env`, then the container's variables; a later definition of a name
/// replaces the earlier one in place (containerd's order).
pub fn process_env(
    image_env: &[String],
    container_env: &[(String, String)],
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<String> = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    let mut set = |entry: String| {
        let name = entry.split_once('=').map_or(entry.as_str(), |(n, _)| n);
        let position = env.iter().position(|existing| {
            existing
                .split_once('=')
                .map_or(existing.as_str(), |(n, _)| n)
                == name
        });
        match position {
            Some(index) => env[index] = entry,
            None => env.push(entry),
        }
    };
    for entry in image_env {
        set(entry.clone());
    }
    for (name, value) in container_env {
        set(format!("{name}={value}"));
    }
    env
}

/// The process's working directory: the container's `workingDir`, else the image's
/// `WorkingDir`, else `/`.
pub fn working_dir(container: &Container, image_working_dir: Option<&str>) -> String {
    container
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .or(image_working_dir.filter(|d| !d.is_empty()))
        .unwrap_or("/")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        Container {
            name: "app".to_string(),
            command: command.map(strings),
            args: args.map(strings),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_matrix() {
        let entrypoint = strings(&["/entry"]);
        let cmd = strings(&["--default"]);
        let run = |c: Container| process_args(&c, &entrypoint, &cmd, &[]).expect("argv");

        assert_eq!(
            run(container(None, None)),
            strings(&["/entry", "--default"])
        );
        assert_eq!(
            run(container(None, Some(&["--flag"]))),
            strings(&["/entry", "--flag"])
        );
        assert_eq!(
            run(container(Some(&["/bin/sh"]), None)),
            strings(&["/bin/sh"])
        );
        assert_eq!(
            run(container(Some(&["/bin/sh"]), Some(&["-c", "true"]))),
            strings(&["/bin/sh", "-c", "true"])
        );
        // Empty lists count as absent.
        assert_eq!(
            run(container(Some(&[]), Some(&[]))),
            strings(&["/entry", "--default"])
        );
    }

    #[test]
    fn image_without_entrypoint() {
        let c = container(None, Some(&["echo", "hi"]));
        assert_eq!(
            process_args(&c, &[], &strings(&["sh"]), &[]).expect("argv"),
            strings(&["echo", "hi"])
        );
        // ENTRYPOINT [""] means none.
        assert_eq!(
            process_args(
                &container(None, None),
                &strings(&[""]),
                &strings(&["sh"]),
                &[]
            )
            .expect("argv"),
            strings(&["sh"])
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let err = process_args(&container(None, None), &[], &[], &[]).expect_err("no command");
        assert_eq!(err.reason(), "CreateContainerError");
        assert!(err.to_string().contains("no command specified"), "{err}");
    }

    #[test]
    fn command_and_args_are_expanded_with_the_container_env() {
        let env = vec![
            ("GREETING".to_string(), "hello".to_string()),
            ("NAME".to_string(), "world".to_string()),
        ];
        let c = container(
            Some(&["/bin/echo", "$(GREETING)"]),
            Some(&["$(NAME)", "$$(NAME)", "$(UNSET)"]),
        );
        assert_eq!(
            process_args(&c, &strings(&["$(GREETING)"]), &[], &env).expect("argv"),
            strings(&["/bin/echo", "hello", "world", "$(NAME)", "$(UNSET)"])
        );
        // The image's own ENTRYPOINT/CMD are not expanded.
        let c = container(None, None);
        assert_eq!(
            process_args(&c, &strings(&["$(GREETING)"]), &[], &env).expect("argv"),
            strings(&["$(GREETING)"])
        );
    }

    #[test]
    fn working_dir_precedence() {
        let mut c = container(None, None);
        assert_eq!(working_dir(&c, None), "/");
        assert_eq!(working_dir(&c, Some("")), "/");
        assert_eq!(working_dir(&c, Some("/srv")), "/srv");
        c.working_dir = Some("/work".to_string());
        assert_eq!(working_dir(&c, Some("/srv")), "/work");
    }

    #[test]
    fn env_merges_default_path_image_and_container() {
        let image = strings(&["PATH=/opt/bin:/bin", "LANG=C.UTF-8", "MODE=image"]);
        let container = vec![
            ("MODE".to_string(), "container".to_string()),
            ("EXTRA".to_string(), "a=b".to_string()),
        ];
        assert_eq!(
            process_env(&image, &container, "web-0"),
            strings(&[
                "PATH=/opt/bin:/bin",
                "HOSTNAME=web-0",
                "LANG=C.UTF-8",
                "MODE=container",
                "EXTRA=a=b",
            ])
        );
        assert_eq!(
            process_env(&[], &[], "h"),
            strings(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h"])
        );
    }
}
