//! Environment variables with their sensitivity (`var set --sensitive`): a sensitive
//! variable's value reaches the apps but is never shown again, to anyone.

use rusqlite::params;
use serde::Serialize;

use crate::{Result, State, StateError};

/// What `var ls` may know of a variable's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum VariableValue {
    /// An ordinary variable: contributors and admins read its value.
    Plain(String),
    /// Set with `--sensitive`: the value is only handed to containers.
    Sensitive(String),
}

impl VariableValue {
    /// The value, for the containers of the environment (never for display).
    pub fn for_containers(&self) -> &str {
        match self {
            VariableValue::Plain(v) | VariableValue::Sensitive(v) => v,
        }
    }

    /// Whether it was set with `--sensitive`.
    pub fn is_sensitive(&self) -> bool {
        matches!(self, VariableValue::Sensitive(_))
    }
}

/// One variable of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The name (`KEY`).
    pub name: String,
    /// Its value and sensitivity.
    pub value: VariableValue,
}

impl State {
    /// Set a variable marked sensitive. A variable once sensitive stays so until it is
    /// unset: [`State::set_variable`] on it replaces the value and keeps the mark.
    pub fn set_sensitive_variable(
        &self,
        project: &str,
        env: &str,
        name: &str,
        value: &str,
    ) -> Result<()> {
        self.db().execute(
            "INSERT INTO variables(project, environment, name, value, sensitive) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT(project, environment, name) DO UPDATE SET value = excluded.value, sensitive = 1",
            params![project, env, name, value],
        )?;
        Ok(())
    }

    /// The variables of an environment with their sensitivity, by name.
    pub fn variable_list(&self, project: &str, env: &str) -> Result<Vec<Variable>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT name, value, sensitive FROM variables WHERE project = ?1 AND environment = ?2 ORDER BY name",
        )?;
        let rows = st.query_map(params![project, env], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, value, sensitive) = row?;
            let value = match sensitive {
                0 => VariableValue::Plain(value),
                1 => VariableValue::Sensitive(value),
                other => {
                    return Err(StateError::Conflict(format!(
                        "variable {name} of {project}/{env} has an unknown sensitivity {other}"
                    )))
                }
            };
            out.push(Variable { name, value });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_variables_stay_sensitive_until_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(&dir.path().join("state.db")).expect("open");
        st.add_user_key("ann", "k", true).unwrap();
        st.create_project("demo", "ann").unwrap();
        st.set_variable("demo", "main", "PLAIN", "p").unwrap();
        st.set_sensitive_variable("demo", "main", "TOKEN", "t1")
            .unwrap();
        let list = st.variable_list("demo", "main").unwrap();
        assert_eq!(
            list,
            vec![
                Variable {
                    name: "PLAIN".into(),
                    value: VariableValue::Plain("p".into())
                },
                Variable {
                    name: "TOKEN".into(),
                    value: VariableValue::Sensitive("t1".into())
                },
            ]
        );
        // A plain `var set` of a sensitive variable keeps it sensitive.
        st.set_variable("demo", "main", "TOKEN", "t2").unwrap();
        let token = st.variable_list("demo", "main").unwrap().remove(1);
        assert_eq!(token.value, VariableValue::Sensitive("t2".into()));
        assert_eq!(token.value.for_containers(), "t2");
        // The old reader still gets every value for the containers.
        assert_eq!(
            st.variables("demo", "main").unwrap(),
            vec![("PLAIN".into(), "p".into()), ("TOKEN".into(), "t2".into())]
        );
        assert!(st.unset_variable("demo", "main", "TOKEN").unwrap());
        st.set_variable("demo", "main", "TOKEN", "t3").unwrap();
        assert!(!st.variable_list("demo", "main").unwrap()[1]
            .value
            .is_sensitive());
        // A row that does not decode is an error, never a default.
        st.db()
            .execute_batch("PRAGMA ignore_check_constraints = ON; UPDATE variables SET sensitive = 7 WHERE name = 'PLAIN'")
            .unwrap();
        assert!(st.variable_list("demo", "main").is_err());
    }
}
