//! Where the config file lives by default (XDG base directory spec).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The directory under the config home that holds termphone's files.
pub const APP_DIR: &str = "termphone";
/// The config file's name inside [`APP_DIR`].
pub const FILE_NAME: &str = "config.toml";

/// The default config path from the values of `XDG_CONFIG_HOME` and `HOME`.
///
/// `$XDG_CONFIG_HOME/termphone/config.toml` when `XDG_CONFIG_HOME` is set, non-empty and
/// absolute (the XDG spec says to ignore a relative one), else `$HOME/.config/termphone/config.toml`
/// when `HOME` is set and non-empty, else `None`.
pub fn default_path_from(xdg_config_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    fn usable(v: Option<&OsStr>) -> Option<&Path> {
        v.filter(|v| !v.is_empty()).map(Path::new)
    }
    let base = match usable(xdg_config_home).filter(|p| p.is_absolute()) {
        Some(xdg) => xdg.to_path_buf(),
        None => usable(home)?.join(".config"),
    };
    Some(base.join(APP_DIR).join(FILE_NAME))
}

/// Where recordings go by default: `$XDG_DATA_HOME/termphone/recordings` (an absolute
/// `XDG_DATA_HOME`), else `$HOME/.local/share/termphone/recordings`, else `None`.
pub fn default_record_dir_from(
    xdg_data_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Option<PathBuf> {
    fn usable(v: Option<&OsStr>) -> Option<&Path> {
        v.filter(|v| !v.is_empty()).map(Path::new)
    }
    let base = match usable(xdg_data_home).filter(|p| p.is_absolute()) {
        Some(xdg) => xdg.to_path_buf(),
        None => usable(home)?.join(".local/share"),
    };
    Some(base.join(APP_DIR).join("recordings"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn record_dir_follows_xdg_data_home() {
        assert_eq!(
            default_record_dir_from(os("/x/data"), os("/home/a")),
            Some(PathBuf::from("/x/data/termphone/recordings"))
        );
        assert_eq!(
            default_record_dir_from(os("rel"), os("/home/a")),
            Some(PathBuf::from("/home/a/.local/share/termphone/recordings"))
        );
        assert_eq!(default_record_dir_from(None, None), None);
    }

    #[test]
    fn xdg_config_home_wins() {
        assert_eq!(
            default_path_from(os("/xdg"), os("/home/a")),
            Some(PathBuf::from("/xdg/termphone/config.toml"))
        );
    }

    #[test]
    fn falls_back_to_home_dot_config() {
        let want = Some(PathBuf::from("/home/a/.config/termphone/config.toml"));
        assert_eq!(default_path_from(None, os("/home/a")), want);
        assert_eq!(default_path_from(os(""), os("/home/a")), want);
        // A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
        assert_eq!(default_path_from(os("rel/dir"), os("/home/a")), want);
    }

    #[test]
    fn nothing_usable_gives_none() {
        assert_eq!(default_path_from(None, None), None);
        assert_eq!(default_path_from(os(""), os("")), None);
        assert_eq!(default_path_from(os("relative"), None), None);
    }
}
