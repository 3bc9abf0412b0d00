//! `sma config list|get|set`: the device's stored settings.

use anyhow::Result;
use sma::settings::{Setting, SettingValue};

use super::Ctx;
use crate::args::ConfigCommand;

impl Ctx<'_> {
    /// `sma config …`: one line per setting (JSON `{"key", "value",
    /// "default"}`).
    pub(crate) fn config(&self, cmd: &ConfigCommand) -> Result<()> {
        let mut dev = self.open()?;
        let values = match cmd {
            ConfigCommand::List => Setting::ALL
                .into_iter()
                .map(|s| dev.setting(s))
                .collect::<sma::Result<Vec<_>>>()?,
            ConfigCommand::Get { key } => vec![dev.setting(Setting::from_key(key)?)?],
            ConfigCommand::Set { key, value } => {
                vec![dev.set_setting(Setting::from_key(key)?, value)?]
            }
        };
        for v in &values {
            self.out.emit(v, || human(v))?;
        }
        Ok(())
    }
}

/// `key = value`, marked `(default)` or `(unset)`.
fn human(v: &SettingValue) -> String {
    match (&v.value, v.default) {
        (Some(value), false) => format!("{} = {value}", v.key),
        (Some(value), true) => format!("{} = {value} (default)", v.key),
        (None, _) => format!("{} (unset)", v.key),
    }
}
