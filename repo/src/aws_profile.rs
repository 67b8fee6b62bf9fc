//! S3 settings as the aws command line finds them: the environment
//! variables first, then the profile (AWS_PROFILE, else `default`) in the
//! shared files, AWS_SHARED_CREDENTIALS_FILE (else ~/.aws/credentials) and
//! AWS_CONFIG_FILE (else ~/.aws/config, where sections are `[profile NAME]`
//! and `[default]`). Read by hand: the AWS SDK's loader would bring the whole
//! SDK, and generic INI crates do not know the files' nested `s3 =` sections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a client of an S3-compatible store needs, where found.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

/// One profile's keys; those of a nested section as `s3.endpoint_url`.
type Profile = HashMap<String, String>;

pub(crate) fn settings() -> Result<S3Settings> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let home = env("HOME").map(PathBuf::from).unwrap_or_default();
    let file = |var: &str, name: &str| {
        env(var).map_or_else(|| home.join(".aws").join(name), PathBuf::from)
    };
    let named = env("AWS_PROFILE");
    let name = named.clone().unwrap_or_else(|| "default".into());
    let creds_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = file("AWS_CONFIG_FILE", "config");
    let creds = profile(&creds_file, &name, false)?;
    let config = profile(&config_file, &name, true)?;
    if named.is_some() && creds.is_none() && config.is_none() {
        return Err(Error::Location(format!(
            "AWS_PROFILE={name}: no such profile in {} or {}",
            creds_file.display(),
            config_file.display()
        )));
    }
    let (creds, config) = (creds.unwrap_or_default(), config.unwrap_or_default());
    let from_files = |k: &str| creds.get(k).or_else(|| config.get(k)).cloned();
    let mut s = S3Settings {
        endpoint: env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| config.get("s3.endpoint_url").cloned())
            .or_else(|| config.get("endpoint_url").cloned()),
        region: env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| config.get("region").cloned()),
        ..Default::default()
    };
    // Keys from the environment come as a pair, and then win over the files.
    if env("AWS_ACCESS_KEY_ID").is_none() {
        s.access_key_id = from_files("aws_access_key_id");
        s.secret_access_key = from_files("aws_secret_access_key");
        s.session_token = from_files("aws_session_token");
    }
    Ok(s)
}

/// Profile `name` of the file at `path`; `None` when the file or the
/// profile is absent. In the config file a profile other than `default`
/// is written `[profile NAME]`.
fn profile(path: &Path, name: &str, config: bool) -> Result<Option<Profile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Location(format!("{}: {e}", path.display()))),
    };
    let header = if config && name != "default" {
        format!("profile {name}")
    } else {
        name.to_string()
    };
    Ok(parse(&text).remove(&header))
}

/// Sections of an AWS shared file: `[NAME]`, `key = value`, `#`/`;`
/// comments, and `key =` followed by indented `sub = value` lines.
fn parse(text: &str) -> HashMap<String, Profile> {
    let mut out: HashMap<String, Profile> = HashMap::new();
    let (mut section, mut nested): (Option<String>, Option<String>) = (None, None);
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(h) = t.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let h = h.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(h.clone()).or_default();
            (section, nested) = (Some(h), None);
            continue;
        }
        let (Some(sec), Some((k, v))) = (&section, t.split_once('=')) else {
            continue;
        };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        let indented = line.starts_with([' ', '\t']);
        let key = match &nested {
            Some(n) if indented => format!("{n}.{k}"),
            _ if v.is_empty() => {
                nested = Some(k);
                continue;
            }
            _ => {
                nested = None;
                k
            }
        };
        out.get_mut(sec).expect("section entered").insert(key, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_nested_sections() {
        let text = "# comment\n[default]\nregion = eu-west-1\n\
                    [profile garage]\nregion = garage\n; c\ns3 =\n  endpoint_url = http://h:3900\n\
                    \x20 addressing_style = path\nendpoint_url = http://other\n\
                    [ profile   spaced ]\naws_access_key_id=AK\n";
        let p = parse(text);
        assert_eq!(p["default"]["region"], "eu-west-1");
        let g = &p["profile garage"];
        assert_eq!(g["region"], "garage");
        assert_eq!(g["s3.endpoint_url"], "http://h:3900");
        assert_eq!(g["s3.addressing_style"], "path");
        assert_eq!(g["endpoint_url"], "http://other");
        assert_eq!(p["profile spaced"]["aws_access_key_id"], "AK");
    }

    #[test]
    fn missing_file_is_no_profile() {
        assert!(profile(Path::new("/no/such/aws/config"), "default", true)
            .unwrap()
            .is_none());
    }
}
