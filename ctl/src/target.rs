//! What the user names on the command line: `TYPE[,TYPE…] [NAME…]`, `TYPE/NAME…` or `all`,
//! resolved against the resources skiff serves.

use skiff_api::resources::{self, ResourceInfo, RESOURCES};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("the server doesn't have a resource type \"{0}\"")]
    UnknownType(String),
    #[error("You must specify the type of resource to {0}. Use \"skiffctl api-resources\" for a complete list of supported resources.")]
    NoType(String),
    #[error("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiffctl get resource/<resource_name>' instead of 'skiffctl get resource resource/<resource_name>'")]
    Mixed,
    #[error("arguments in resource/name form must have a single resource and name")]
    BadSlash(String),
}

/// One resource type and the names asked for (none: all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub resource: &'static ResourceInfo,
    pub names: Vec<String>,
}

/// Resolves `po`, `pods`, `deployments.apps`, `Deployment`.
pub fn resolve_type(name: &str) -> Result<&'static ResourceInfo, TargetError> {
    resources::resolve(name).ok_or_else(|| TargetError::UnknownType(name.to_string()))
}

/// Parses `get`-style arguments. `verb` is used in the message when no type was given.
pub fn parse(args: &[String], verb: &str) -> Result<Vec<Target>, TargetError> {
    let Some(first) = args.first() else {
        return Err(TargetError::NoType(verb.to_string()));
    };
    if first.contains('/') {
        let mut out: Vec<Target> = Vec::new();
        for arg in args {
            let (kind, name) = arg
                .split_once('/')
                .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| {
                    if arg.contains('/') {
                        TargetError::BadSlash(arg.clone())
                    } else {
                        TargetError::Mixed
                    }
                })?;
            let resource = resolve_type(kind)?;
            match out.last_mut() {
                Some(last) if std::ptr::eq(last.resource, resource) => {
                    last.names.push(name.to_string())
                }
                _ => out.push(Target {
                    resource,
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(out);
    }
    if args[1..].iter().any(|a| a.contains('/')) {
        return Err(TargetError::Mixed);
    }
    let names: Vec<String> = args[1..].to_vec();
    let mut out = Vec::new();
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        if kind == "all" {
            for r in RESOURCES.iter().filter(|r| r.in_category_all) {
                out.push(Target {
                    resource: r,
                    names: names.clone(),
                });
            }
            continue;
        }
        out.push(Target {
            resource: resolve_type(kind)?,
            names: names.clone(),
        });
    }
    if out.is_empty() {
        return Err(TargetError::NoType(verb.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn forms() {
        let t = parse(&args(&["po", "a", "b"]), "get").expect("type names");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].resource.plural, "pods");
        assert_eq!(t[0].names, ["a", "b"]);
        let t = parse(&args(&["deploy,svc"]), "get").expect("two types");
        assert_eq!(t[0].resource.plural, "deployments");
        assert_eq!(t[1].resource.plural, "services");
        let t = parse(&args(&["deploy/a", "deploy/b", "svc/a"]), "get").expect("slash");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].names, ["a", "b"]);
        let t = parse(&args(&["all"]), "get").expect("all");
        assert!(t.iter().any(|t| t.resource.plural == "pods"));
        assert!(!t.iter().any(|t| t.resource.plural == "configmaps"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&args(&["gadgets"]), "get")
                .expect_err("unknown")
                .to_string(),
            "the server doesn't have a resource type \"gadgets\""
        );
        assert_eq!(
            parse(&args(&["po/a", "svc"]), "get"),
            Err(TargetError::Mixed)
        );
        assert_eq!(
            parse(&args(&["po", "svc/a"]), "get"),
            Err(TargetError::Mixed)
        );
        assert!(matches!(parse(&[], "get"), Err(TargetError::NoType(_))));
        assert!(matches!(
            parse(&args(&["po/"]), "get"),
            Err(TargetError::BadSlash(_))
        ));
    }
}
