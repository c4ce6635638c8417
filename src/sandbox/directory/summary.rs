//! The directory as an integrator reads it at the sandbox's start: who may originate, in
//! which departments, and each template's fields.

use std::fmt::Write;

use super::Directory;

impl Directory {
    /// Users (userId, unionId, name, departments) and templates (code, name, fields with
    /// `*` marking required ones) as aligned text, each line indented by `indent`.
    pub fn summary(&self, indent: &str) -> String {
        let mut out = String::new();
        let id_width = self
            .users
            .iter()
            .map(|u| u.user_id.chars().count())
            .max()
            .unwrap_or(0);
        let union_width = self
            .users
            .iter()
            .map(|u| u.union_id.chars().count())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "{indent}Users ({}; userId, unionId, name, departments):",
            self.users.len()
        );
        for user in &self.users {
            let departments: Vec<String> = user
                .departments
                .iter()
                .map(|id| match self.department(*id) {
                    Some(d) => format!("{}({id})", d.name),
                    None => id.to_string(),
                })
                .collect();
            let _ = writeln!(
                out,
                "{indent}  {:<id_width$}  {:<union_width$}  {}  {}",
                user.user_id,
                user.union_id,
                user.name,
                departments.join(", ")
            );
        }
        let code_width = self
            .templates
            .iter()
            .map(|t| t.process_code.chars().count())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "{indent}Templates ({}; process code, name: fields, * = required):",
            self.templates.len()
        );
        for template in &self.templates {
            let fields: Vec<String> = template
                .fields
                .iter()
                .map(|f| {
                    let mark = if f.required { "*" } else { "" };
                    format!("{}{mark} ({})", f.label, f.component)
                })
                .collect();
            let _ = writeln!(
                out,
                "{indent}  {:<code_width$}  {}: {}",
                template.process_code,
                template.name,
                fields.join(", ")
            );
        }
        out
    }
}
