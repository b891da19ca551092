//! Docker's `Opts` as given: case-insensitive lookup by documented name,
//! refusal of keys the volume's type does not accept, and the typed
//! getters whose errors take their wording from the option table.

use super::error::SpecError;
use super::table::{self, VolumeType};
use serde_json::{Map, Value};

/// Docker's options as strings, each key kept as given (for errors).
pub(super) struct Given(Vec<(String, String)>);

impl Given {
    /// Refuses keys that differ only in case (which one would win is
    /// otherwise arbitrary) and values that are not scalars.
    pub(super) fn new(opts: Option<&Map<String, Value>>) -> Result<Given, SpecError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (key, value) in opts.into_iter().flatten() {
            if entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                return Err(SpecError::Duplicate(key.clone()));
            }
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err(SpecError::NotAString(key.clone())),
            };
            entries.push((key.clone(), value));
        }
        Ok(Given(entries))
    }

    /// The value of an option, `name` in its documented spelling.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The options of a volume of type `ty`. An option of another type (or
    /// a typo) is refused rather than ignored: a silently ignored
    /// `readonly=true` would be a surprise.
    pub(super) fn of_type(self, ty: VolumeType) -> Result<Opts, SpecError> {
        let accepted: Vec<&str> = table::accepted(ty).iter().map(|o| o.name).collect();
        match self
            .0
            .iter()
            .find(|(k, _)| !accepted.iter().any(|a| a.eq_ignore_ascii_case(k)))
        {
            None => Ok(Opts { ty, given: self }),
            Some((key, _)) => Err(SpecError::UnknownOption {
                key: key.clone(),
                ty: ty.name().to_string(),
                accepted: accepted.join(", "),
            }),
        }
    }
}

/// The options of a volume whose type is known, every key accepted.
pub(super) struct Opts {
    pub(super) ty: VolumeType,
    given: Given,
}

impl Opts {
    /// The row of `name` in the option table; every name the parser reads
    /// is one of its type's options.
    fn row(&self, name: &str) -> &'static table::VolumeOption {
        table::find(self.ty, name).unwrap_or_else(|| {
            panic!(
                "option `{name}` of type={} is not in the option table",
                self.ty.name()
            )
        })
    }

    /// The value of an option, `name` in its documented spelling.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(
            table::find(self.ty, name).is_some(),
            "{name} is not in the table"
        );
        self.given.get(name)
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A required option; empty counts as missing.
    pub(super) fn required(&self, name: &str) -> Result<&str, SpecError> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => {
                let row = self.row(name);
                Err(SpecError::MissingOption {
                    option: row.name,
                    ty: self.ty.name(),
                    example: row.example,
                })
            }
        }
    }

    /// An optional boolean option.
    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, SpecError> {
        let row = self.row(name);
        self.get(name)
            .map(|v| super::values::parse_bool(row.name, v))
            .transpose()
    }

    /// An optional option whose value `parse` checks; the error says what
    /// a good value looks like in the table's words.
    pub(super) fn value<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, SpecError> {
        let row = self.row(name);
        debug_assert!(
            !row.expected.is_empty(),
            "option `{name}` has no `expected`"
        );
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| SpecError::BadValue {
                option: row.name,
                value: v.to_string(),
                expected: row.expected,
            }),
        }
    }
}
